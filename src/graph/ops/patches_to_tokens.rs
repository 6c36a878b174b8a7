//! (B, C, H, W) → (B, H·W, C): patches as tokens.

use super::{at_least, Attr, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Patches as tokens (no hyperparameters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchesToTokens;

impl OpKind for PatchesToTokens {
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        at_least(3, inputs[0])?;
        Ok(3)
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(xs[0].f_flatten(2, -1)?.f_transpose(1, 2)?)
    }
    fn lrp(&self, _cx: &dyn LrpContext, xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(r.f_transpose(1, 2)?.f_reshape(xs[0].size())?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let c = cx.in_shape(0)[1];
        let shape = cx.ints("shape", &[0, c, -1])?;
        let r = cx.step("Reshape", &[cx.x(0), shape], &[]);
        Ok(cx.output("Transpose", &[&r], &[("perm", Attr::Ints(&[0, 2, 1]))]))
    }
}
