//! Selects one token: (B, T, D) → (B, D).

use super::{at_least, check_range, Attr, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use crate::graph::MAX_FIELD;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Which token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectToken {
    pub index: i64,
}

impl OpKind for SelectToken {
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        check_range("index", self.index, -MAX_FIELD, MAX_FIELD)?;
        Ok(at_least(2, inputs[0])? - 1)
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(xs[0].f_select(1, self.index)?)
    }
    fn lrp(&self, _cx: &dyn LrpContext, xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let z = xs[0].f_zeros_like()?;
        z.f_select(1, self.index)?.f_copy_(r)?;
        Ok(vec![Some(z)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let name = cx.fresh("index");
        let i = cx.tensor(&name, &Tensor::from(self.index))?;
        Ok(cx.output("Gather", &[cx.x(0), i], &[("axis", Attr::Int(1))]))
    }
}
