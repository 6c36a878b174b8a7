//! Multiplies each channel by a learned factor (ConvNeXt's layer scale, a (C, 1, 1) parameter).

use super::{check_size, ones, ChannelParams, Ctx, LrpContext, OnnxContext, OpKind, ParamSpec, Role};
use crate::error::Result;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The number of channels scaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub channels: i64,
}

impl OpKind for Scale {
    fn describe(&self) -> String {
        format!("{}", self.channels)
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::weight(Role::Weight, vec![self.channels, 1, 1])]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("channels", self.channels)
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(xs[0].f_mul(cx.p(Role::Weight)?)?)
    }
    fn init(&self, _role: Role, shape: &[i64], _rng: &mut ChaCha8Rng) -> Tensor {
        ones(shape)
    }
    fn channel_params(&self) -> ChannelParams {
        ChannelParams { output: vec![(Role::Weight, 0)], input: Vec::new() }
    }
    fn resize(&mut self, output: Option<i64>, input: Option<i64>) {
        if let Some(n) = output.or(input) {
            self.channels = n;
        }
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // A diagonal linear map without bias: the ε-rule passes relevance unchanged.
        Ok(vec![Some(r.shallow_clone())])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let w = cx.param(Role::Weight)?;
        Ok(cx.output("Mul", &[cx.x(0), w], &[]))
    }
}
