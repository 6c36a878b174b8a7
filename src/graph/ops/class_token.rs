//! Prepends learned tokens: (B, T, D) → (B, T + k, D). One class token (ViT), or several: a
//! distillation token (DeiT), register tokens (DINOv2 with registers), one op per parameter.

use super::{check_size, Attr, Ctx, LrpContext, OnnxContext, OpKind, ParamSpec, Role};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The tokens' width and count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassToken {
    pub dim: i64,
    /// How many tokens are prepended (one class token by default).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub tokens: i64,
}

fn one() -> i64 {
    1
}

fn is_one(v: &i64) -> bool {
    *v == 1
}

impl ClassToken {
    /// One class token of width `dim`.
    pub fn new(dim: i64) -> Self {
        ClassToken { dim, tokens: 1 }
    }
}

impl OpKind for ClassToken {
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::weight(Role::Weight, vec![1, self.tokens, self.dim])]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("dim", self.dim)?;
        check_size("tokens", self.tokens)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        match inputs[0] {
            3 => Ok(3),
            r => Err(format!("needs an input of 3 dimensions (B, T, D), gets {r}")),
        }
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let x = xs[0];
        let tok = cx.p(Role::Weight)?.f_expand([x.size()[0], self.tokens, self.dim], false)?;
        Ok(Tensor::f_cat(&[&tok, x], 1)?)
    }
    fn channel_block(&self) -> Option<String> {
        Some("learned tokens are prepended to it".into())
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // The learned tokens keep their own relevance; the patches get theirs.
        Ok(vec![Some(r.f_narrow(1, self.tokens, r.size()[1] - self.tokens)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let x = cx.x(0);
        let tok = cx.param(Role::Weight)?;
        let shape = cx.step("Shape", &[&x], &[]);
        let zero = cx.ints("zero", &[0])?;
        let batch = cx.step("Gather", &[&shape, &zero], &[("axis", Attr::Int(0))]);
        let rest = cx.ints("rest", &[self.tokens, self.dim])?;
        let target = cx.step("Concat", &[&batch, &rest], &[("axis", Attr::Int(0))]);
        let e = cx.step("Expand", &[&tok, &target], &[]);
        Ok(cx.output("Concat", &[&e, &x], &[("axis", Attr::Int(1))]))
    }
}
