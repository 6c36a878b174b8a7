//! A fully connected layer over the token axis of (B, T, C): every channel's T values are mixed
//! into `out_tokens` (MLP-Mixer's and ResMLP's token mixing). Channels pass through unchanged,
//! so channel pruning sees through it; its token units are not components.
//!
//! LRP: the layer is affine in x, so it takes its depth group's rule like a linear layer, along
//! the token axis.

use super::{
    check_range, uniform, AffineOp, Attr, ChannelMap, ChannelParams, Ctx, LrpContext, OnnxContext, OpKind, ParamSpec,
    Role,
};
use crate::error::Result;
use crate::graph::MAX_FIELD;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The token counts in and out, and whether a bias per output token is added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLinear {
    pub in_tokens: i64,
    pub out_tokens: i64,
    pub bias: bool,
}

impl AffineOp for TokenLinear {
    fn affine_forward(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        Ok(x.f_transpose(1, 2)?.f_linear(w, b)?.f_transpose(1, 2)?)
    }
    fn affine_transpose(&self, g: &Tensor, w: &Tensor, _x_size: &[i64]) -> Result<Tensor> {
        Ok(g.f_transpose(1, 2)?.f_matmul(w)?.f_transpose(1, 2)?)
    }
    fn default_gamma(&self) -> f64 {
        0.05
    }
}

impl OpKind for TokenLinear {
    fn describe(&self) -> String {
        format!("{}→{} tokens{}", self.in_tokens, self.out_tokens, if self.bias { " +bias" } else { "" })
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![ParamSpec::weight(Role::Weight, vec![self.out_tokens, self.in_tokens])];
        if self.bias {
            v.push(ParamSpec::weight(Role::Bias, vec![self.out_tokens]));
        }
        v
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_range("in_tokens", self.in_tokens, 1, MAX_FIELD)?;
        check_range("out_tokens", self.out_tokens, 1, MAX_FIELD)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        match inputs[0] {
            3 => Ok(3),
            r => Err(format!("needs tokens (B, T, C), gets {r} dimensions")),
        }
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        if xs[0].size()[1] != self.in_tokens {
            crate::bail!("mixes {} tokens, gets {}", self.in_tokens, xs[0].size()[1]);
        }
        let bias = if self.bias { Some(cx.p(Role::Bias)?) } else { None };
        self.affine_forward(xs[0], cx.p(Role::Weight)?, bias)
    }
    fn macs(&self, inputs: &[Vec<i64>], _output: &[i64]) -> i64 {
        inputs[0].last().copied().unwrap_or(0) * self.in_tokens * self.out_tokens
    }
    fn init(&self, _role: Role, shape: &[i64], rng: &mut ChaCha8Rng) -> Tensor {
        uniform(rng, shape, 1.0 / (self.in_tokens as f64).sqrt())
    }
    fn channels(&self) -> ChannelMap {
        ChannelMap::Same
    }
    fn channel_params(&self) -> ChannelParams {
        ChannelParams::default()
    }
    fn takes_rule(&self) -> bool {
        true
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(cx.affine_rule(self, xs[0], out, r)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let name = format!("{}:T", cx.param_name(Role::Weight));
        let wt = cx.weight(Role::Weight)?.f_transpose(0, 1)?;
        let wt = cx.tensor(&name, &wt)?;
        let t = cx.step("Transpose", &[cx.x(0)], &[("perm", Attr::Ints(&[0, 2, 1]))]);
        let mut m = cx.step("MatMul", &[t, wt], &[]);
        if self.bias {
            let b = cx.param(Role::Bias)?;
            m = cx.step("Add", &[m, b], &[]);
        }
        Ok(cx.output("Transpose", &[m], &[("perm", Attr::Ints(&[0, 2, 1]))]))
    }
    fn bias_flag(&self) -> Option<bool> {
        Some(self.bias)
    }
    fn bias_flag_mut(&mut self) -> Option<&mut bool> {
        Some(&mut self.bias)
    }
}
