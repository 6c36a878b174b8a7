//! Dropout: the identity at evaluation.

use super::{Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The drop probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    pub p: f64,
}

impl OpKind for Dropout {
    fn describe(&self) -> String {
        format!("p={}", self.p)
    }
    fn check(&self) -> std::result::Result<(), String> {
        if (0.0..=1.0).contains(&self.p) {
            Ok(())
        } else {
            Err(format!("p = {} is not a probability", self.p))
        }
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(if cx.train() { xs[0].f_dropout(self.p, true)? } else { xs[0].shallow_clone() })
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(r.shallow_clone())])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        Ok(cx.output("Identity", &[cx.x(0)], &[]))
    }
}
