//! RMSNorm over the last dimension (LLaMA, Qwen2, Mistral): y = x / √(mean(x²) + ε) · w, the
//! mean of squares taken in float32 or wider, as Hugging Face's `LlamaRMSNorm` does.
//!
//! LRP: the root mean square is a constant (AttnLRP's identity treatment of normalisation, as
//! LXT does it), so the layer is a per-element scaling and relevance passes unchanged.

use super::{at_least, check_non_negative, check_size, ones, Attr, ChannelParams, Ctx, LrpContext, OnnxContext};
use super::{OpKind, ParamSpec, Role};
use crate::error::Result;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// RMSNorm's size and ε.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RmsNorm {
    pub dim: i64,
    pub eps: f64,
}

impl OpKind for RmsNorm {
    fn describe(&self) -> String {
        format!("{}", self.dim)
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::weight(Role::Weight, vec![self.dim])]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("dim", self.dim)?;
        check_non_negative("eps", self.eps)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        at_least(1, inputs[0])
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let x = xs[0];
        let kind = x.kind();
        // Half precision normalises in float32, as transformers does.
        let wide = if kind == Kind::Double { Kind::Double } else { Kind::Float };
        let xw = x.f_to_kind(wide)?;
        let ms = xw.f_square()?.f_mean_dim(-1, true, wide)?;
        let y = xw.f_mul(&ms.f_add_scalar(self.eps)?.f_rsqrt()?)?.f_to_kind(kind)?;
        Ok(y.f_mul(cx.p(Role::Weight)?)?)
    }
    fn init(&self, _role: Role, shape: &[i64], _rng: &mut ChaCha8Rng) -> Tensor {
        ones(shape)
    }
    fn normalizes(&self) -> bool {
        true
    }
    fn channel_block(&self) -> Option<String> {
        Some("an RMSNorm normalises over it".into())
    }
    fn channel_params(&self) -> ChannelParams {
        ChannelParams { output: vec![(Role::Weight, 0)], input: Vec::new() }
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(r.shallow_clone())])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        // Opset 17 has no RMSNormalization: x · 1/√(mean(x²) + ε) · w.
        let x = cx.x(0);
        let w = cx.param(Role::Weight)?;
        let sq = cx.step("Mul", &[&x, &x], &[]);
        let ms = cx.step("ReduceMean", &[&sq], &[("axes", Attr::Ints(&[-1])), ("keepdims", Attr::Int(1))]);
        let eps = cx.scalar("eps", self.eps as f32)?;
        let var = cx.step("Add", &[&ms, &eps], &[]);
        let rms = cx.step("Sqrt", &[&var], &[]);
        let n = cx.step("Div", &[&x, &rms], &[]);
        Ok(cx.output("Mul", &[&n, &w], &[]))
    }
}
