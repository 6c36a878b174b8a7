//! Average pooling: by default padding counted and floor mode, as PyTorch's defaults; ceil mode
//! and padding left out of the average as options (the ResNet-D shortcut's
//! `AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)`).

use super::{check_spatial, map_rank, Attr, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Average pooling's geometry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvgPool2d {
    pub kernel: [i64; 2],
    pub stride: [i64; 2],
    pub padding: [i64; 2],
    /// Output size rounded up: a last window that starts inside the input is kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ceil_mode: bool,
    /// Padded positions count in the average's denominator.
    #[serde(default = "counted", skip_serializing_if = "Clone::clone")]
    pub count_include_pad: bool,
}

fn counted() -> bool {
    true
}

impl AvgPool2d {
    /// PyTorch's default pooling: padding counted, floor mode.
    pub fn new(kernel: [i64; 2], stride: [i64; 2], padding: [i64; 2]) -> Self {
        AvgPool2d { kernel, stride, padding, ceil_mode: false, count_include_pad: true }
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_avg_pool2d(self.kernel, self.stride, self.padding, self.ceil_mode, self.count_include_pad, None)?)
    }
}

impl OpKind for AvgPool2d {
    fn describe(&self) -> String {
        let ceil = if self.ceil_mode { " ceil" } else { "" };
        let pad = if self.count_include_pad { "" } else { " pad excluded" };
        format!("k{} s{}{ceil}{pad}", self.kernel[0], self.stride[0])
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_spatial("kernel", &self.kernel, 1)?;
        check_spatial("stride", &self.stride, 1)?;
        check_spatial("padding", &self.padding, 0)
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
        let p = self.padding;
        Ok(cx.output(
            "AveragePool",
            &[cx.x(0)],
            &[
                ("kernel_shape", Attr::Ints(&self.kernel)),
                ("strides", Attr::Ints(&self.stride)),
                ("pads", Attr::Ints(&[p[0], p[1], p[0], p[1]])),
                ("count_include_pad", Attr::Int(self.count_include_pad as i64)),
                ("ceil_mode", Attr::Int(self.ceil_mode as i64)),
            ],
        ))
    }
}
