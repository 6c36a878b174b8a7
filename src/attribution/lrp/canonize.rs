//! Canonizers as pure functions: the parameters a layer would have after zennit's
//! temporary rewrites, computed without touching the graph.

use crate::error::Result;
use crate::graph::{Graph, NodeId, Op};
use tch::Tensor;

/// The BatchNorm that directly and solely follows conv `id`, if any.
pub fn following_batchnorm(graph: &Graph, id: NodeId, consumers: &[Vec<NodeId>]) -> Option<NodeId> {
    match consumers[id].as_slice() {
        [bn] if matches!(graph.node(*bn).op, Op::BatchNorm2d { .. }) => Some(*bn),
        _ => None,
    }
}

/// Weight and bias of conv `conv` with BatchNorm `bn` folded in (zennit `MergeBatchNorm`):
/// w' = w·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β.
pub fn merge_batchnorm(graph: &Graph, conv: NodeId, bn: NodeId) -> Result<(Tensor, Option<Tensor>)> {
    let Op::BatchNorm2d { eps, .. } = graph.node(bn).op else { unreachable!("checked by caller") };
    let w = graph.require_param(conv, "weight")?;
    let scale = graph
        .require_param(bn, "weight")?
        .f_div(&graph.require_param(bn, "running_var")?.f_add_scalar(eps)?.f_sqrt()?)?;
    let mean = graph.require_param(bn, "running_mean")?;
    let beta = graph.require_param(bn, "bias")?;
    let b0 = match graph.param(conv, "bias") {
        Some(b) => b.shallow_clone(),
        None => mean.zeros_like(),
    };
    let w2 = w.f_mul(&scale.f_reshape([-1, 1, 1, 1])?)?;
    let b2 = b0.f_sub(mean)?.f_mul(&scale)?.f_add(beta)?;
    Ok((w2, Some(b2)))
}
