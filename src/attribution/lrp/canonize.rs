//! Canonizers as pure functions: the parameters a layer would have after zennit's
//! temporary rewrites, computed without touching the graph.

use crate::error::Result;
use crate::graph::{Graph, NodeId, Role};
use tch::Tensor;

/// Weight and bias of conv `conv` with BatchNorm `bn` folded in (zennit `MergeBatchNorm`):
/// w' = w·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β.
pub fn merge_batchnorm(graph: &Graph, conv: NodeId, bn: NodeId) -> Result<(Tensor, Option<Tensor>)> {
    let Some(eps) = graph.node(bn).op.kind().batch_norm_eps() else {
        crate::bail!("`{}` is not a normalisation by running statistics", graph.node(bn).name)
    };
    let w = graph.require_param(conv, Role::Weight)?;
    let scale = graph
        .require_param(bn, Role::Weight)?
        .f_div(&graph.require_param(bn, Role::RunningVar)?.f_add_scalar(eps)?.f_sqrt()?)?;
    let mean = graph.require_param(bn, Role::RunningMean)?;
    let beta = graph.require_param(bn, Role::Bias)?;
    let b0 = match graph.param(conv, Role::Bias) {
        Some(b) => b.shallow_clone(),
        None => mean.zeros_like(),
    };
    let mut shape = vec![1i64; w.dim()];
    shape[0] = -1;
    let w2 = w.f_mul(&scale.f_reshape(shape.as_slice())?)?;
    let b2 = b0.f_sub(mean)?.f_mul(&scale)?.f_add(beta)?;
    Ok((w2, Some(b2)))
}
