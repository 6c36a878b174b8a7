//! Resizing a map to a fixed height and width: nearest-neighbour, bilinear or bicubic (PyTorch's
//! `F.interpolate`). HRNet's fusion of branches, GhostNetV2's attention map, EfficientFormerV2's
//! upsampling, CrossViT's resized input.
//!
//! LRP: every mode is linear in x, so zennit's Norm rule applies: R_x = x ⊙ fᵀ(R / f(x)).

use super::{check_spatial, map_rank, Attr, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// How values between input positions are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// The input position below (PyTorch's `nearest`).
    Nearest,
    Bilinear,
    /// Cubic convolution with a = −0.75 (PyTorch's `bicubic`).
    Bicubic,
}

/// The output size, the mode, and whether corner pixels are aligned (bilinear, bicubic).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resize2d {
    pub output: [i64; 2],
    pub mode: ResizeMode,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub align_corners: bool,
}

impl Resize2d {
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.mode {
            ResizeMode::Nearest => x.f_upsample_nearest2d(self.output, None, None)?,
            ResizeMode::Bilinear => x.f_upsample_bilinear2d(self.output, self.align_corners, None, None)?,
            ResizeMode::Bicubic => x.f_upsample_bicubic2d(self.output, self.align_corners, None, None)?,
        })
    }
}

impl OpKind for Resize2d {
    fn describe(&self) -> String {
        format!("{:?} to {}×{}", self.mode, self.output[0], self.output[1]).to_lowercase()
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_spatial("output", &self.output, 1)?;
        if self.align_corners && self.mode == ResizeMode::Nearest {
            return Err("align_corners applies to bilinear and bicubic resizing only".into());
        }
        Ok(())
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        map_rank(inputs[0]).and_then(|r| if r == 4 { Ok(r) } else { Err("needs a batch of maps (N, C, H, W)".into()) })
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        self.apply(xs[0])
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(cx.norm_rule(xs[0], out, r, &|x| self.apply(x))?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        // sizes = the input's (N, C) then the fixed (H, W).
        let x = cx.x(0);
        let shape = cx.step("Shape", &[&x], &[]);
        let (start, end) = (cx.ints("start", &[0])?, cx.ints("end", &[2])?);
        let nc = cx.step("Slice", &[&shape, &start, &end], &[]);
        let hw = cx.ints("size", &self.output)?;
        let sizes = cx.step("Concat", &[&nc, &hw], &[("axis", Attr::Int(0))]);
        let (mode, transform) = match (self.mode, self.align_corners) {
            (ResizeMode::Nearest, _) => ("nearest", "asymmetric"),
            (ResizeMode::Bilinear, false) => ("linear", "pytorch_half_pixel"),
            (ResizeMode::Bicubic, false) => ("cubic", "pytorch_half_pixel"),
            (_, true) => (if self.mode == ResizeMode::Bilinear { "linear" } else { "cubic" }, "align_corners"),
        };
        Ok(cx.output(
            "Resize",
            &[x.as_str(), "", "", sizes.as_str()],
            &[
                ("mode", Attr::Str(mode)),
                ("coordinate_transformation_mode", Attr::Str(transform)),
                ("nearest_mode", Attr::Str("floor")),
                ("cubic_coeff_a", Attr::Float(-0.75)),
            ],
        ))
    }
}
