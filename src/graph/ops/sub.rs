//! Elementwise difference of two inputs (PoolFormer's token mixer, `pool(x) − x`).
//!
//! LRP: zennit's Norm rule for a sum, with the subtrahend's contribution negated: each input
//! gets its signed share of the output, R₀ = x₀·R/y and R₁ = −x₁·R/y, which together conserve R.

use super::{Arity, ChannelMap, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// x₀ − x₁, inputs of one shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sub;

impl OpKind for Sub {
    fn arity(&self) -> Arity {
        Arity::Exactly(2)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        Ok(inputs.iter().copied().max().unwrap_or(0))
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(xs[0].f_sub(xs[1])?)
    }
    fn channels(&self) -> ChannelMap {
        ChannelMap::Merge
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let s = r.f_div(&cx.stabilize(out)?)?;
        Ok(vec![Some(xs[0].f_mul(&s)?), Some(xs[1].f_mul(&s)?.f_neg()?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        Ok(cx.output("Sub", &[cx.x(0), cx.x(1)], &[]))
    }
}
