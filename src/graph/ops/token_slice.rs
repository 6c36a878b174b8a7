//! A contiguous range of tokens: (B, T, D) → (B, length, D) (the patch tokens without the class
//! token, which BEiT and DINOv2 average for their classifiers).

use super::{check_range, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use crate::graph::MAX_FIELD;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Tokens `start .. start + length`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSlice {
    pub start: i64,
    pub length: i64,
}

impl OpKind for TokenSlice {
    fn describe(&self) -> String {
        format!("tokens [{}, {})", self.start, self.start + self.length)
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_range("start", self.start, 0, MAX_FIELD)?;
        check_range("length", self.length, 1, MAX_FIELD)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        match inputs[0] {
            3 => Ok(3),
            r => Err(format!("needs tokens (B, T, D), gets {r} dimensions")),
        }
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let t = xs[0].size()[1];
        if self.start + self.length > t {
            crate::bail!("tokens {}..{} of a sequence of {t}", self.start, self.start + self.length);
        }
        Ok(xs[0].f_narrow(1, self.start, self.length)?)
    }
    fn lrp(&self, _cx: &dyn LrpContext, xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // The tokens left out receive no relevance from here.
        let z = xs[0].f_zeros_like()?;
        z.f_narrow(1, self.start, self.length)?.f_copy_(r)?;
        Ok(vec![Some(z)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let starts = cx.ints("starts", &[self.start])?;
        let ends = cx.ints("ends", &[self.start + self.length])?;
        let axes = cx.ints("axes", &[1])?;
        Ok(cx.output("Slice", &[cx.x(0), starts, ends, axes], &[]))
    }
}
