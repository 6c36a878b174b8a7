//! LayerNorm over the last dimension.
//!
//! LRP: the standard deviation is a constant (AttnLRP's identity treatment), so the layer is
//! linear in x and relevance follows the ε-rule through it: R_x = x ⊙ Jᵀ(R / y).

use super::{
    at_least, check_non_negative, check_size, ones, Attr, ChannelParams, Ctx, LrpContext, OnnxContext, OpKind,
    ParamSpec, Role,
};
use crate::error::Result;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// LayerNorm's size and eps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNorm {
    pub dim: i64,
    pub eps: f64,
}

impl OpKind for LayerNorm {
    fn describe(&self) -> String {
        format!("{}", self.dim)
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::weight(Role::Weight, vec![self.dim]), ParamSpec::weight(Role::Bias, vec![self.dim])]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("dim", self.dim)?;
        check_non_negative("eps", self.eps)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        at_least(1, inputs[0])
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(xs[0].f_layer_norm([self.dim], Some(cx.p(Role::Weight)?), Some(cx.p(Role::Bias)?), self.eps, false)?)
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
        Some("a LayerNorm normalises over it".into())
    }
    fn channel_params(&self) -> ChannelParams {
        ChannelParams { output: vec![(Role::Weight, 0), (Role::Bias, 0)], input: Vec::new() }
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(lrp_constant_std(cx, xs[0], out, r, cx.param(Role::Weight)?, self.eps, -1)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let (w, b) = (cx.param(Role::Weight)?, cx.param(Role::Bias)?);
        Ok(cx.output(
            "LayerNormalization",
            &[cx.x(0), w, b],
            &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(self.eps as f32))],
        ))
    }
}

/// LRP through a LayerNorm over dimension `dim` with its standard deviation held constant: the
/// layer is then linear in x and relevance follows the ε-rule, R_x = x ⊙ Jᵀ(R / y). `weight`
/// is shaped to broadcast along `dim`.
pub(super) fn lrp_constant_std(
    cx: &dyn LrpContext,
    x: &Tensor,
    out: &Tensor,
    r: &Tensor,
    weight: &Tensor,
    eps: f64,
    dim: i64,
) -> Result<Tensor> {
    let k = x.kind();
    let mean = x.f_mean_dim(dim, true, k)?;
    let var = x.f_sub(&mean)?.f_square()?.f_mean_dim(dim, true, k)?;
    let sigma = var.f_add_scalar(eps)?.f_sqrt()?;
    let u = r.f_div(&cx.stabilize(out)?)?.f_mul(weight)?.f_div(&sigma)?;
    let centred = u.f_sub(&u.f_mean_dim(dim, true, k)?)?;
    Ok(x.f_mul(&centred)?)
}
