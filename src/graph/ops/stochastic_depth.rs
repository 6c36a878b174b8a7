//! Stochastic depth (torchvision's `StochasticDepth`, "row" mode): in training, each sample's
//! residual branch is dropped with probability `p` and the kept ones scaled by 1/(1−p); the
//! identity at evaluation.

use super::{Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The drop probability of a residual branch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StochasticDepth {
    pub p: f64,
}

impl OpKind for StochasticDepth {
    fn describe(&self) -> String {
        format!("p={}", self.p)
    }
    fn check(&self) -> std::result::Result<(), String> {
        if (0.0..1.0).contains(&self.p) {
            Ok(())
        } else {
            Err(format!("p = {} must be in [0, 1)", self.p))
        }
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let x = xs[0];
        if !cx.train() || self.p == 0.0 {
            return Ok(x.shallow_clone());
        }
        let mut shape = vec![1i64; x.dim()];
        shape[0] = x.size()[0];
        let keep = Tensor::f_empty(shape.as_slice(), (x.kind(), x.device()))?.f_bernoulli_float_(1.0 - self.p)?;
        Ok(x.f_mul(&keep.f_div_scalar(1.0 - self.p)?)?)
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(r.shallow_clone())])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        Ok(cx.output("Identity", &[cx.x(0)], &[]))
    }
}
