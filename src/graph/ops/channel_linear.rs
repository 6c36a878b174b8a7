//! A linear layer over the channels of a map: (B, C, H, W) → (B, C', H, W), with a (C', C)
//! weight (ConvNeXt's `nn.Linear` between its two permutes; a 1×1 convolution with a linear
//! layer's parameter shapes).

use super::{
    check_range, map_rank, uniform, AffineOp, Attr, ChannelMap, ChannelParams, Ctx, LrpContext, OnnxContext, OpKind,
    ParamSpec, Role, Units,
};
use crate::error::Result;
use crate::graph::MAX_FIELD;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Sizes of a channel-wise linear layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelLinear {
    pub in_channels: i64,
    pub out_channels: i64,
    pub bias: bool,
}

impl AffineOp for ChannelLinear {
    fn affine_forward(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        Ok(x.f_movedim_int(1, -1)?.f_linear(w, b)?.f_movedim_int(-1, 1)?)
    }
    fn affine_transpose(&self, g: &Tensor, w: &Tensor, _x_size: &[i64]) -> Result<Tensor> {
        Ok(g.f_movedim_int(1, -1)?.f_matmul(w)?.f_movedim_int(-1, 1)?)
    }
    /// A linear layer's default (it is one, applied at every position).
    fn default_gamma(&self) -> f64 {
        0.05
    }
}

impl OpKind for ChannelLinear {
    fn describe(&self) -> String {
        format!("{}→{}{}", self.in_channels, self.out_channels, if self.bias { " +bias" } else { "" })
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![ParamSpec::weight(Role::Weight, vec![self.out_channels, self.in_channels])];
        if self.bias {
            v.push(ParamSpec::weight(Role::Bias, vec![self.out_channels]));
        }
        v
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_range("in_channels", self.in_channels, 0, MAX_FIELD)?;
        check_range("out_channels", self.out_channels, 0, MAX_FIELD)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        map_rank(inputs[0])
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let bias = if self.bias { Some(cx.p(Role::Bias)?) } else { None };
        self.affine_forward(xs[0], cx.p(Role::Weight)?, bias)
    }
    fn macs(&self, _inputs: &[Vec<i64>], output: &[i64]) -> i64 {
        output[1..].iter().product::<i64>() * self.in_channels
    }
    fn init(&self, _role: Role, shape: &[i64], rng: &mut ChaCha8Rng) -> Tensor {
        uniform(rng, shape, 1.0 / (self.in_channels.max(1) as f64).sqrt())
    }
    fn channels(&self) -> ChannelMap {
        ChannelMap::New
    }
    fn channel_params(&self) -> ChannelParams {
        ChannelParams::affine(self.bias, Some(1))
    }
    fn resize(&mut self, output: Option<i64>, input: Option<i64>) {
        if let Some(n) = output {
            self.out_channels = n;
        }
        if let Some(n) = input {
            self.in_channels = n;
        }
    }
    fn units(&self) -> Option<Units> {
        Some(Units::Channels(self.out_channels))
    }
    fn takes_rule(&self) -> bool {
        true
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(cx.affine_rule(self, xs[0], out, r)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let t = cx.step("Transpose", &[cx.x(0)], &[("perm", Attr::Ints(&[0, 2, 3, 1]))]);
        let name = format!("{}:T", cx.param_name(Role::Weight));
        let wt = cx.weight(Role::Weight)?.f_transpose(0, 1)?;
        let wt = cx.tensor(&name, &wt)?;
        let mut y = cx.step("MatMul", &[t, wt], &[]);
        if self.bias {
            let b = cx.param(Role::Bias)?;
            y = cx.step("Add", &[y, b], &[]);
        }
        Ok(cx.output("Transpose", &[y], &[("perm", Attr::Ints(&[0, 3, 1, 2]))]))
    }

    fn bias_flag(&self) -> Option<bool> {
        Some(self.bias)
    }
    fn bias_flag_mut(&mut self) -> Option<&mut bool> {
        Some(&mut self.bias)
    }
    fn init_hint(&self) -> Option<super::InitHint> {
        Some(super::InitHint::Linear { in_features: self.in_channels, out_features: self.out_channels })
    }
}
