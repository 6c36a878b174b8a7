//! GroupNorm over a map: each sample's channels in `groups` consecutive groups, each group
//! normalised over its channels and positions, then a per-channel scale and shift (PyTorch's
//! `nn.GroupNorm`; PoolFormer's and MobileViTv2's norm is `GroupNorm(1, C)`, `InstanceNorm2d` is
//! `GroupNorm(C, C)`).
//!
//! Channels: with one channel per group (instance norm) every channel is normalised on its own,
//! so channels can be removed; with wider groups removing a channel changes its group's
//! statistics, so they are blocked (as a LayerNorm's).
//!
//! LRP: as [`super::LayerNorm`], the standard deviation is a constant, the layer is then linear
//! in x, and relevance follows the ε-rule (the shift absorbs its share).

use super::{
    check_non_negative, check_size, map_rank, ones, Attr, ChannelParams, Ctx, LrpContext, OnnxContext, OpKind,
    ParamSpec, Role,
};
use crate::error::Result;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Groups, channels and eps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupNorm {
    pub groups: i64,
    pub channels: i64,
    pub eps: f64,
}

impl GroupNorm {
    /// x seen as (N, groups, channels per group · positions).
    fn grouped(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_reshape([x.size()[0], self.groups, -1])?)
    }
}

impl OpKind for GroupNorm {
    fn describe(&self) -> String {
        format!("{} in {} groups", self.channels, self.groups)
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::weight(Role::Weight, vec![self.channels]), ParamSpec::weight(Role::Bias, vec![self.channels])]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("channels", self.channels)?;
        check_size("groups", self.groups)?;
        if self.channels % self.groups != 0 {
            return Err(format!("{} channels do not split into {} groups", self.channels, self.groups));
        }
        check_non_negative("eps", self.eps)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        map_rank(inputs[0]).and_then(|r| if r == 4 { Ok(r) } else { Err("needs a batch of maps (N, C, H, W)".into()) })
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let (w, b) = (cx.p(Role::Weight)?, cx.p(Role::Bias)?);
        Ok(xs[0].f_group_norm(self.groups, Some(w), Some(b), self.eps, false)?)
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
        (self.groups != self.channels).then(|| "a GroupNorm normalises over the channels of each group".into())
    }
    fn channel_params(&self) -> ChannelParams {
        ChannelParams { output: vec![(Role::Weight, 0), (Role::Bias, 0)], input: Vec::new() }
    }
    fn resize(&mut self, output: Option<i64>, input: Option<i64>) {
        // Only an instance norm's channels can be removed (channel_block): one group each.
        if let Some(n) = output.or(input) {
            self.channels = n;
            self.groups = n;
        }
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let x = self.grouped(xs[0])?;
        let k = x.kind();
        let mean = x.f_mean_dim(-1, true, k)?;
        let sigma = x.f_sub(&mean)?.f_square()?.f_mean_dim(-1, true, k)?.f_add_scalar(self.eps)?.f_sqrt()?;
        let w = cx.param(Role::Weight)?.f_reshape([-1, 1, 1])?;
        let u = self.grouped(&r.f_div(&cx.stabilize(out)?)?.f_mul(&w)?)?.f_div(&sigma)?;
        let centred = u.f_sub(&u.f_mean_dim(-1, true, k)?)?;
        Ok(vec![Some(x.f_mul(&centred)?.f_reshape(xs[0].size())?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        // Opset 17 has no GroupNormalization: PyTorch's own spelling, an instance norm of the
        // groups, then the per-channel affine map.
        let x = cx.x(0);
        let grouped = cx.ints("grouped", &[0, self.groups, -1])?;
        let r = cx.step("Reshape", &[&x, &grouped], &[]);
        let (scale, shift) = (cx.fresh("group_scale"), cx.fresh("group_shift"));
        let ones = cx.tensor(&scale, &Tensor::ones([self.groups], (Kind::Float, tch::Device::Cpu)))?;
        let zeros = cx.tensor(&shift, &Tensor::zeros([self.groups], (Kind::Float, tch::Device::Cpu)))?;
        let n = cx.step("InstanceNormalization", &[r, ones, zeros], &[("epsilon", Attr::Float(self.eps as f32))]);
        let shape = cx.step("Shape", &[&x], &[]);
        let back = cx.step("Reshape", &[n, shape], &[]);
        let axes = cx.ints("axes", &[1, 2])?;
        let (w, b) = (cx.param(Role::Weight)?, cx.param(Role::Bias)?);
        let w = cx.step("Unsqueeze", &[w, axes.clone()], &[]);
        let b = cx.step("Unsqueeze", &[b, axes], &[]);
        let scaled = cx.step("Mul", &[back, w], &[]);
        Ok(cx.output("Add", &[scaled, b], &[]))
    }
}
