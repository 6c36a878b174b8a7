//! Concatenation along one dimension (DenseNet's channel concatenation, Inception branches).

use super::{check_range, Arity, Attr, ChannelMap, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The dimension along which inputs are joined (1: channels of a map).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concat {
    pub dim: i64,
}

impl OpKind for Concat {
    fn describe(&self) -> String {
        format!("dim {}", self.dim)
    }
    fn arity(&self) -> Arity {
        Arity::AtLeast(1)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        let r = inputs[0];
        if inputs.iter().any(|&i| i != r) {
            return Err(format!("inputs of {inputs:?} dimensions cannot be concatenated"));
        }
        check_range("dim", self.dim, -(r as i64), r as i64 - 1)?;
        Ok(r)
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(Tensor::f_cat(xs, self.dim)?)
    }
    fn channels(&self) -> ChannelMap {
        // Along the channel dimension the channels follow one another; along another dimension
        // (tokens, space) every input carries the same channels, which the dependency analysis
        // recognises from the shapes.
        ChannelMap::Concat
    }
    fn lrp(&self, _cx: &dyn LrpContext, xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // Relevance is routed back to the input each slice came from.
        let mut start = 0;
        xs.iter()
            .map(|x| {
                let n = x.size()[self.dim.rem_euclid(x.dim() as i64) as usize];
                let part = r.f_narrow(self.dim, start, n)?;
                start += n;
                Ok(Some(part))
            })
            .collect()
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let ins: Vec<String> = (0..cx.arity()).map(|i| cx.x(i)).collect();
        Ok(cx.output("Concat", &ins, &[("axis", Attr::Int(self.dim))]))
    }
}
