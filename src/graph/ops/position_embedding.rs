//! Adds a learned position table to (B, T, dim); positions 0..T are used.

use super::{at_least, check_size, Attr, Ctx, LrpContext, OnnxContext, OpKind, ParamSpec, Role};
use crate::error::Result;
use crate::graph::init::normal;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The table is stored as (max_len, dim) (Hugging Face) or, with `leading_one`, as
/// (1, max_len, dim) (torchvision's ViT `pos_embedding`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionEmbedding {
    pub max_len: i64,
    pub dim: i64,
    pub leading_one: bool,
}

impl OpKind for PositionEmbedding {
    fn describe(&self) -> String {
        format!("{}×{}", self.max_len, self.dim)
    }
    fn params(&self) -> Vec<ParamSpec> {
        let shape = if self.leading_one { vec![1, self.max_len, self.dim] } else { vec![self.max_len, self.dim] };
        vec![ParamSpec::weight(Role::Weight, shape)]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("max_len", self.max_len)?;
        check_size("dim", self.dim)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        Ok(at_least(2, inputs[0])?.max(3))
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let x = xs[0];
        let t = x.size()[1];
        if t > self.max_len {
            crate::bail!(
                "sequence of {t} tokens is longer than the position table ({}); truncate the input",
                self.max_len
            );
        }
        let w = cx.p(Role::Weight)?;
        let table = if self.leading_one { w.f_narrow(1, 0, t)? } else { w.f_narrow(0, 0, t)?.f_unsqueeze(0)? };
        Ok(x.f_add(&table)?)
    }
    fn init(&self, _role: Role, shape: &[i64], rng: &mut ChaCha8Rng) -> Tensor {
        normal(rng, shape, 0.02)
    }
    fn channel_block(&self) -> Option<String> {
        Some("a learned position table is added over it".into())
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // The table acts as a bias and keeps its share.
        Ok(vec![Some(xs[0].f_mul(&r.f_div(&cx.stabilize(out)?)?)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let x = cx.x(0);
        let w = cx.param(Role::Weight)?;
        let s = if self.leading_one {
            let t = cx.out_shape()[1];
            let starts = cx.ints("zero", &[0])?;
            let ends = cx.ints("t", &[t])?;
            let axes = cx.ints("axis1", &[1])?;
            cx.step("Slice", &[&w, &starts, &ends, &axes], &[])
        } else {
            let shape = cx.step("Shape", &[&x], &[]);
            let one = cx.ints("one", &[1])?;
            let t = cx.step("Gather", &[&shape, &one], &[("axis", Attr::Int(0))]);
            let zero = cx.ints("zero", &[0])?;
            cx.step("Slice", &[&w, &zero, &t, &zero], &[])
        };
        Ok(cx.output("Add", &[&x, &s], &[]))
    }

    fn max_tokens(&self) -> Option<i64> {
        Some(self.max_len)
    }
}
