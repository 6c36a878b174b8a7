//! Hugging Face folders for pruned decoders: the folder `transformers` loads with
//! `from_pretrained`, next to relprune's own `graph.json`.
//!
//! The weights keep transformers' parameter names (`model.safetensors` of the graph folder is
//! that file). Where every layer kept the same widths, `config.json` is the source's with the
//! new sizes, and the folder needs no code. Where layers differ (a global ranking gives each its
//! own MLP width and head count), `config.json` lists the widths per layer and names a small
//! modeling file written next to it (`auto_map`), loaded with `trust_remote_code=True`: the
//! stock model class, each layer rebuilt at its own width.

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::models::llama::{layer_widths, LayerWidths, LlamaConfig};
use std::path::Path;

/// The modeling file's template (`{Family}`, `{module}` filled per family).
const MODELING: &str = include_str!("hf_modeling.py");
/// Its name in the folder.
pub const MODELING_FILE: &str = "modeling_relprune.py";
/// Files of the source folder that describe the tokenizer and generation, copied as they are.
const COPIED: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "generation_config.json",
    "chat_template.jinja",
];
/// Largest such file copied (a tokenizer.json is a few MB).
const MAX_COPIED_BYTES: u64 = 1 << 28;

/// What [`write_decoder_folder`] wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HfFolder {
    pub widths: LayerWidths,
    /// Whether loading needs `trust_remote_code=True` (per-layer widths).
    pub remote_code: bool,
}

/// The family's class-name stem and module name in transformers.
fn names(family: &str) -> (&'static str, &'static str) {
    match family {
        "qwen2" => ("Qwen2", "qwen2"),
        "mistral" => ("Mistral", "mistral"),
        _ => ("Llama", "llama"),
    }
}

/// Writes `config.json`, the tokenizer files of `source` and, for per-layer widths, the modeling
/// file into `dir`, which holds the graph's `model.safetensors` already.
pub fn write_decoder_folder(graph: &Graph, source: &Path, dir: &Path) -> Result<HfFolder> {
    let cfg = LlamaConfig::from_hf_folder(source)?;
    let widths = layer_widths(&cfg, graph)?;
    let mut config: serde_json::Value = crate::util::read_json(&source.join("config.json"))?;
    let obj = config
        .as_object_mut()
        .ok_or_else(|| Error::invalid(format!("{}: config.json is not a JSON object", source.display())))?;
    // The head width stays while head counts change: say it, since the default derives it.
    obj.insert("head_dim".into(), cfg.head_dim.into());
    let remote_code = !widths.uniform();
    if remote_code {
        let (family, module) = names(&cfg.family);
        obj.insert("model_type".into(), format!("relprune_{module}").into());
        obj.insert("architectures".into(), serde_json::json!([format!("Relprune{family}ForCausalLM")]));
        let stem = MODELING_FILE.trim_end_matches(".py");
        obj.insert(
            "auto_map".into(),
            serde_json::json!({
                "AutoConfig": format!("{stem}.Relprune{family}Config"),
                "AutoModelForCausalLM": format!("{stem}.Relprune{family}ForCausalLM"),
            }),
        );
        obj.insert("intermediate_sizes".into(), serde_json::json!(widths.intermediate));
        obj.insert("attention_heads".into(), serde_json::json!(widths.heads));
        obj.insert("key_value_heads".into(), serde_json::json!(widths.kv_heads));
        obj.insert("query_groups".into(), serde_json::json!(widths.groups));
        let code = MODELING.replace("{Family}", family).replace("{module}", module);
        crate::util::write_atomic(&dir.join(MODELING_FILE), code.as_bytes())?;
    } else {
        obj.insert("intermediate_size".into(), widths.intermediate[0].into());
        obj.insert("num_attention_heads".into(), widths.heads[0].into());
        obj.insert("num_key_value_heads".into(), widths.kv_heads[0].into());
    }
    crate::util::write_json_atomic(&dir.join("config.json"), &config)?;
    for name in COPIED {
        let from = source.join(name);
        if !from.exists() {
            continue;
        }
        let bytes = crate::util::read_at_most(&from, MAX_COPIED_BYTES, "a tokenizer file is far smaller")?;
        crate::util::write_atomic(&dir.join(name), &bytes)?;
    }
    Ok(HfFolder { widths, remote_code })
}
