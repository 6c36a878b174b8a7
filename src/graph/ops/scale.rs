//! Multiplies each channel by a learned factor, and optionally adds a learned shift: layer scale
//! (ConvNeXt's (C, 1, 1) parameter on maps, ViT-family `gamma` on tokens), ResMLP's affine
//! norm, HGNetV2's learnable affine block.

use super::{check_size, ones, ChannelParams, Ctx, LrpContext, OnnxContext, OpKind, ParamSpec, Role};
use crate::error::Result;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::ops::Not;
use tch::{Kind, Tensor};

/// The number of channels scaled; where they are; whether a shift follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub channels: i64,
    /// The channels are the last dimension (tokens, features; parameters of shape (C)), not
    /// dimension 1 of a map (parameters of shape (C, 1, 1)).
    #[serde(default, skip_serializing_if = "Not::not")]
    pub last: bool,
    /// A shift per channel is added after the scale.
    #[serde(default, skip_serializing_if = "Not::not")]
    pub bias: bool,
}

impl Scale {
    /// A layer scale over a map's channels, without shift.
    pub fn map(channels: i64) -> Self {
        Scale { channels, last: false, bias: false }
    }
    fn shape(&self) -> Vec<i64> {
        if self.last {
            vec![self.channels]
        } else {
            vec![self.channels, 1, 1]
        }
    }
}

impl OpKind for Scale {
    fn describe(&self) -> String {
        format!("{}{}", self.channels, if self.bias { " with shift" } else { "" })
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut p = vec![ParamSpec::weight(Role::Weight, self.shape())];
        if self.bias {
            p.push(ParamSpec::weight(Role::Bias, self.shape()));
        }
        p
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("channels", self.channels)
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let y = xs[0].f_mul(cx.p(Role::Weight)?)?;
        Ok(match cx.opt(Role::Bias).filter(|_| self.bias) {
            Some(b) => y.f_add(b)?,
            None => y,
        })
    }
    fn init(&self, role: Role, shape: &[i64], _rng: &mut ChaCha8Rng) -> Tensor {
        match role {
            Role::Weight => ones(shape),
            _ => Tensor::zeros(shape, (Kind::Float, crate::device::HOST)),
        }
    }
    fn channel_params(&self) -> ChannelParams {
        let mut output = vec![(Role::Weight, 0)];
        if self.bias {
            output.push((Role::Bias, 0));
        }
        ChannelParams { output, input: Vec::new() }
    }
    fn resize(&mut self, output: Option<i64>, input: Option<i64>) {
        if let Some(n) = output.or(input) {
            self.channels = n;
        }
    }
    fn bias_flag(&self) -> Option<bool> {
        Some(self.bias)
    }
    fn bias_flag_mut(&mut self) -> Option<&mut bool> {
        Some(&mut self.bias)
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        if !self.bias {
            // A diagonal linear map without bias: the ε-rule passes relevance unchanged.
            return Ok(vec![Some(r.shallow_clone())]);
        }
        // The ε-rule of a diagonal affine map: the shift keeps its share.
        let z = xs[0].f_mul(cx.param(Role::Weight)?)?;
        Ok(vec![Some(z.f_mul(&r.f_div(&cx.stabilize(out)?)?)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let w = cx.param(Role::Weight)?;
        if !self.bias {
            return Ok(cx.output("Mul", &[cx.x(0), w], &[]));
        }
        let b = cx.param(Role::Bias)?;
        let y = cx.step("Mul", &[cx.x(0), w], &[]);
        Ok(cx.output("Add", &[y, b], &[]))
    }
}
