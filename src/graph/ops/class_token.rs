//! Prepends a learned class token: (B, T, D) → (B, T+1, D).

use super::{check_size, Attr, Ctx, LrpContext, OnnxContext, OpKind, ParamSpec, Role};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The token's width.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassToken {
    pub dim: i64,
}

impl OpKind for ClassToken {
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::weight(Role::Weight, vec![1, 1, self.dim])]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("dim", self.dim)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        match inputs[0] {
            3 => Ok(3),
            r => Err(format!("needs an input of 3 dimensions (B, T, D), gets {r}")),
        }
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let x = xs[0];
        let tok = cx.p(Role::Weight)?.f_expand([x.size()[0], 1, self.dim], false)?;
        Ok(Tensor::f_cat(&[&tok, x], 1)?)
    }
    fn channel_block(&self) -> Option<String> {
        Some("a learned class token is prepended to it".into())
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // The class token keeps its own relevance; the patches get theirs.
        Ok(vec![Some(r.f_narrow(1, 1, r.size()[1] - 1)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let x = cx.x(0);
        let tok = cx.param(Role::Weight)?;
        let shape = cx.step("Shape", &[&x], &[]);
        let zero = cx.ints("zero", &[0])?;
        let batch = cx.step("Gather", &[&shape, &zero], &[("axis", Attr::Int(0))]);
        let rest = cx.ints("rest", &[1, self.dim])?;
        let target = cx.step("Concat", &[&batch, &rest], &[("axis", Attr::Int(0))]);
        let e = cx.step("Expand", &[&tok, &target], &[]);
        Ok(cx.output("Concat", &[&e, &x], &[("axis", Attr::Int(1))]))
    }
}
