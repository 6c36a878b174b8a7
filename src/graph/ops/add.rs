//! Elementwise sum of all inputs (residual connections).

use super::{Arity, ChannelMap, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Sum of two or more inputs of one shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Add;

impl OpKind for Add {
    fn arity(&self) -> Arity {
        Arity::AtLeast(2)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        Ok(inputs.iter().copied().max().unwrap_or(0))
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let mut acc = xs[0].f_add(xs[1])?;
        for t in &xs[2..] {
            acc = acc.f_add(t)?;
        }
        Ok(acc)
    }
    fn channels(&self) -> ChannelMap {
        ChannelMap::Merge
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // zennit's Norm rule: each summand gets its share of the sum.
        let s = r.f_div(&cx.stabilize(out)?)?;
        xs.iter().map(|x| Ok(Some(x.f_mul(&s)?))).collect()
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let ins: Vec<String> = (0..cx.arity()).map(|i| cx.x(i)).collect();
        Ok(cx.output("Sum", &ins, &[]))
    }
}
