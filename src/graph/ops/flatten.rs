//! Flattens every dimension from `start_dim` on.

use super::{Attr, ChannelMap, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Where flattening starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flatten {
    pub start_dim: i64,
}

impl OpKind for Flatten {
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        let first = inputs[0];
        if !(0..first as i64).contains(&self.start_dim) {
            return Err(format!("start_dim = {} is outside 0..{first} (the input's dimensions)", self.start_dim));
        }
        Ok(self.start_dim as usize + 1)
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(xs[0].f_flatten(self.start_dim, -1)?)
    }
    fn channels(&self) -> ChannelMap {
        ChannelMap::Flatten
    }
    fn lrp(&self, _cx: &dyn LrpContext, xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(r.f_reshape(xs[0].size())?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        Ok(cx.output("Flatten", &[cx.x(0)], &[("axis", Attr::Int(self.start_dim))]))
    }
}
