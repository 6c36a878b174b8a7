//! A model's layers, parameters and MACs (`relprune info`).

use crate::error::Result;
use crate::graph::{stats, Mode, ParamKind};
use crate::models::LoadedModel;
use serde::Serialize;

/// One node as `info` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct LayerRow {
    pub name: String,
    pub kind: String,
    pub detail: String,
    /// On an example input of one sample.
    pub output_shape: Vec<i64>,
    /// Trainable parameters of the node.
    pub parameters: i64,
}

/// A model's summary.
#[derive(Debug, Serialize)]
pub struct ModelInfo {
    pub model: String,
    pub origin: String,
    pub parameters: i64,
    /// Per sample, at `seq_len` tokens for token models.
    pub macs: i64,
    pub seq_len: i64,
    pub layers: Vec<LayerRow>,
    /// What an ONNX import recognised (ONNX files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<crate::import::ImportReport>,
}

/// Runs an example input through `m` and lists its nodes with their output shapes. `seq_len`:
/// tokens per sample for token models (default 128, or the model's positions when fewer).
pub fn model_info(m: LoadedModel, seq_len: Option<i64>) -> Result<ModelInfo> {
    let g = &m.graph;
    let seq_len = seq_len.unwrap_or_else(|| stats::max_tokens(g).unwrap_or(128).min(128));
    stats::check_seq_len(g, seq_len)?;
    let inputs = stats::example_inputs(g, seq_len);
    let values = tch::no_grad(|| g.forward_all(&inputs, Mode::Eval))?;
    let layers: Vec<LayerRow> = g
        .nodes()
        .iter()
        .enumerate()
        .map(|(id, n)| LayerRow {
            name: n.name.clone(),
            kind: n.op.kind_name().into(),
            detail: n.op.kind().describe(),
            output_shape: values[id].size(),
            parameters: n
                .op
                .kind()
                .params()
                .iter()
                .filter(|p| p.kind == ParamKind::Weight)
                .map(|p| p.shape.iter().product::<i64>())
                .sum(),
        })
        .collect();
    let (parameters, macs) = (g.num_parameters(), stats::macs(g, seq_len)?);
    Ok(ModelInfo { model: m.name, origin: m.origin, parameters, macs, seq_len, layers, import: m.import })
}
