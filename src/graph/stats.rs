//! Size and cost figures of a graph: parameters and multiply-accumulates (MACs).
//!
//! MACs count convolutions, linear layers and the two matmuls inside attention, for one
//! sample; normalisation, activations, pooling and additions are not counted (the common
//! convention of thop / fvcore / Torch-Pruning's `count_ops_and_params` for conv and linear).

use super::{Graph, InputKind, Mode};
use crate::error::Result;
use tch::{Kind, Tensor};

/// One example input of batch size 1 for every graph input (zeros; ones for masks). Token
/// inputs use `seq_len` tokens (capped at the input's maximum).
pub fn example_inputs(graph: &Graph, seq_len: i64) -> Vec<Tensor> {
    let opts = |k| (k, crate::device::HOST);
    // Images in the parameters' precision (float64 graphs are compared with oracles).
    let float = graph.params().iter().find(|(_, t)| t.is_floating_point()).map_or(Kind::Float, |(_, t)| t.kind());
    graph
        .input_kinds()
        .into_iter()
        .map(|k| match k {
            InputKind::Image { channels, height, width } => Tensor::zeros([1, *channels, *height, *width], opts(float)),
            InputKind::TokenIds { max_len } => Tensor::zeros([1, seq_len.min(*max_len)], opts(Kind::Int64)),
            InputKind::AttentionMask { max_len } => Tensor::ones([1, seq_len.min(*max_len)], opts(Kind::Int64)),
        })
        .collect()
}

/// Checks a token count for [`example_inputs`]: at least 1, at most what every token input of
/// the graph takes (image models ignore it).
pub fn check_seq_len(graph: &Graph, seq_len: i64) -> Result<()> {
    if let Some(max_len) = max_tokens(graph) {
        if seq_len > max_len {
            crate::bail!("--seq-len {seq_len} is beyond the model's {max_len} positions: it takes 1 to {max_len} tokens per sample");
        }
        if seq_len < 1 {
            crate::bail!("--seq-len {seq_len}: this model takes 1 to {max_len} tokens per sample");
        }
    }
    Ok(())
}

/// The most tokens the model's token inputs take (None for image models).
pub fn max_tokens(graph: &Graph) -> Option<i64> {
    graph
        .input_kinds()
        .iter()
        .filter_map(|k| match k {
            InputKind::TokenIds { max_len } | InputKind::AttentionMask { max_len } => Some(*max_len),
            InputKind::Image { .. } => None,
        })
        .min()
}

/// MACs of one forward pass on one sample (token models: `seq_len` tokens).
pub fn macs(graph: &Graph, seq_len: i64) -> Result<i64> {
    let inputs = example_inputs(graph, seq_len);
    let outs = tch::no_grad(|| graph.forward_all(&inputs, Mode::Eval))?;
    let mut total = 0i64;
    for (id, node) in graph.nodes().iter().enumerate() {
        let ins: Vec<Vec<i64>> = node.inputs.iter().map(|&i| outs[i].size()).collect();
        total += node.op.kind().macs(&ins, &outs[id].size());
    }
    Ok(total)
}
