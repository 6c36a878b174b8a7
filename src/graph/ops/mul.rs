//! Elementwise product `x · gate` with broadcasting: squeeze-and-excitation gates (a (B, C, 1, 1)
//! gate over a (B, C, H, W) map), and any other multiplicative gating.

use super::{Arity, ChannelMap, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// How relevance passes a multiplicative gate `x · g` (squeeze-and-excitation, layer gates).
///
/// The variants of this op's LRP rule are defined with the op, so the rule and its choices stay
/// in one place and the graph depends on nothing above it; `attribution::lrp` re-exports the
/// type under its old name as part of the LRP configuration, which picks one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateRule {
    /// The gate is a constant: all relevance goes to the gated signal (the usual LRP
    /// treatment of gates).
    #[default]
    Constant,
    /// AttnLRP's uniform rule for products: signal and gate get half each.
    Uniform,
}

/// Product of the gated signal (input 0) and the gate (input 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mul;

/// `t` summed over the dimensions where `shape` broadcast (the reverse of broadcasting).
fn sum_to(t: &Tensor, shape: &[i64]) -> Result<Tensor> {
    let mut t = t.shallow_clone();
    let lead = t.dim() - shape.len();
    if lead > 0 {
        let dims: Vec<i64> = (0..lead as i64).collect();
        t = t.f_sum_dim_intlist(dims.as_slice(), false, t.kind())?;
    }
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 && t.size()[d] != 1 {
            t = t.f_sum_dim_intlist([d as i64].as_slice(), true, t.kind())?;
        }
    }
    Ok(t)
}

impl OpKind for Mul {
    fn arity(&self) -> Arity {
        Arity::Exactly(2)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        Ok(inputs[0].max(inputs[1]))
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(xs[0].f_mul(xs[1])?)
    }
    fn channels(&self) -> ChannelMap {
        ChannelMap::Merge
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        match cx.gate_rule() {
            // The gate is a constant: the product is linear in x, which keeps all relevance.
            GateRule::Constant => Ok(vec![Some(sum_to(r, &xs[0].size())?), None]),
            // AttnLRP's uniform rule for products: each factor gets half.
            GateRule::Uniform => {
                let half = r.f_mul_scalar(0.5)?;
                Ok(vec![Some(sum_to(&half, &xs[0].size())?), Some(sum_to(&half, &xs[1].size())?)])
            }
        }
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        Ok(cx.output("Mul", &[cx.x(0), cx.x(1)], &[]))
    }

    fn gates(&self) -> bool {
        true
    }
}
