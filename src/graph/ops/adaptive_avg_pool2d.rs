//! Adaptive average pooling to a fixed output size.

use super::{check_spatial, map_rank, Attr, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The pooled output size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveAvgPool2d {
    pub output: [i64; 2],
}

impl AdaptiveAvgPool2d {
    /// Global average pooling (1×1).
    pub fn global() -> Self {
        AdaptiveAvgPool2d { output: [1, 1] }
    }
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_adaptive_avg_pool2d(self.output)?)
    }
}

impl OpKind for AdaptiveAvgPool2d {
    fn describe(&self) -> String {
        format!("→{}x{}", self.output[0], self.output[1])
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_spatial("output", &self.output, 1)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        map_rank(inputs[0])
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        self.apply(xs[0])
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(cx.norm_rule(xs[0], out, r, &|x| self.apply(x))?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let s = cx.in_shape(0).to_vec();
        let o = self.output;
        if o == [1, 1] {
            Ok(cx.output("GlobalAveragePool", &[cx.x(0)], &[]))
        } else if s[2] % o[0] == 0 && s[3] % o[1] == 0 {
            let k = [s[2] / o[0], s[3] / o[1]];
            Ok(cx.output("AveragePool", &[cx.x(0)], &[("kernel_shape", Attr::Ints(&k)), ("strides", Attr::Ints(&k))]))
        } else {
            Err(cx.unsupported("adaptive pooling to a size that does not divide the input"))
        }
    }
}
