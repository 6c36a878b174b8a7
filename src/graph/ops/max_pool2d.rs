//! Max pooling.

use super::{check_spatial, map_rank, vjp, Attr, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Max pooling's geometry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxPool2d {
    pub kernel: [i64; 2],
    pub stride: [i64; 2],
    pub padding: [i64; 2],
    pub ceil_mode: bool,
}

impl MaxPool2d {
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_max_pool2d(self.kernel, self.stride, self.padding, [1, 1], self.ceil_mode)?)
    }
}

impl OpKind for MaxPool2d {
    fn describe(&self) -> String {
        format!("k{} s{}", self.kernel[0], self.stride[0])
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
    fn lrp(&self, _cx: &dyn LrpContext, xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // Winner takes all: relevance goes to the maximum (the gradient).
        Ok(vec![Some(vjp(xs[0], r, |x| self.apply(x))?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let p = self.padding;
        Ok(cx.output(
            "MaxPool",
            &[cx.x(0)],
            &[
                ("kernel_shape", Attr::Ints(&self.kernel)),
                ("strides", Attr::Ints(&self.stride)),
                ("pads", Attr::Ints(&[p[0], p[1], p[0], p[1]])),
                ("ceil_mode", Attr::Int(self.ceil_mode as i64)),
            ],
        ))
    }
}
