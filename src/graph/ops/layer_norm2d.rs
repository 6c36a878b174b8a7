//! LayerNorm over the channels of a map (ConvNeXt's `LayerNorm2d`: permute to channels-last,
//! normalise the last dimension, permute back).
//!
//! LRP: as [`super::LayerNorm`], the standard deviation is a constant and relevance follows the
//! ε-rule through the then linear layer.

use super::{
    check_non_negative, check_size, map_rank, ones, Attr, ChannelParams, Ctx, LrpContext, OnnxContext, OpKind,
    ParamSpec, Role,
};
use crate::error::Result;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Channels and eps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNorm2d {
    pub channels: i64,
    pub eps: f64,
}

impl OpKind for LayerNorm2d {
    fn describe(&self) -> String {
        format!("{}", self.channels)
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::weight(Role::Weight, vec![self.channels]), ParamSpec::weight(Role::Bias, vec![self.channels])]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("channels", self.channels)?;
        check_non_negative("eps", self.eps)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        map_rank(inputs[0])
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let x = xs[0].f_movedim_int(-3, -1)?;
        let y = x.f_layer_norm([self.channels], Some(cx.p(Role::Weight)?), Some(cx.p(Role::Bias)?), self.eps, false)?;
        Ok(y.f_movedim_int(-1, -3)?)
    }
    fn init(&self, role: Role, shape: &[i64], _rng: &mut ChaCha8Rng) -> Tensor {
        match role {
            Role::Weight => ones(shape),
            _ => Tensor::zeros(shape, (Kind::Float, crate::device::HOST)),
        }
    }
    fn normalizes(&self) -> bool {
        true
    }
    fn channel_block(&self) -> Option<String> {
        Some("a LayerNorm normalises over its channels".into())
    }
    fn channel_params(&self) -> ChannelParams {
        ChannelParams { output: vec![(Role::Weight, 0), (Role::Bias, 0)], input: Vec::new() }
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let w = cx.param(Role::Weight)?.f_reshape([-1, 1, 1])?;
        Ok(vec![Some(super::layer_norm::lrp_constant_std(cx, xs[0], out, r, &w, self.eps, -3)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let (w, b) = (cx.param(Role::Weight)?, cx.param(Role::Bias)?);
        let t = cx.step("Transpose", &[cx.x(0)], &[("perm", Attr::Ints(&[0, 2, 3, 1]))]);
        let n = cx.step(
            "LayerNormalization",
            &[t, w, b],
            &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(self.eps as f32))],
        );
        Ok(cx.output("Transpose", &[n], &[("perm", Attr::Ints(&[0, 3, 1, 2]))]))
    }
}
