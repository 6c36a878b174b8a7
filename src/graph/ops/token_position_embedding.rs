//! Adds a learned position table with positions counted from the token ids (RoBERTa): real
//! tokens get `padding_idx + 1, + 2, …` in order, padding tokens get `padding_idx`. Inputs: the
//! (B, T, dim) embeddings and the (B, T) token ids they came from.

use super::{at_least, check_range, check_size, Arity, Attr, Ctx, LrpContext, OnnxContext, OpKind, ParamSpec, Role};
use crate::error::Result;
use crate::graph::init::normal;
use crate::graph::MAX_FIELD;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The table (max_len, dim) and the id of the padding token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPositionEmbedding {
    pub max_len: i64,
    pub dim: i64,
    pub padding_idx: i64,
}

impl TokenPositionEmbedding {
    /// The position of every token (int64, (B, T)).
    pub fn positions(&self, ids: &Tensor) -> Result<Tensor> {
        let real = ids.f_ne(self.padding_idx)?.f_to_kind(Kind::Int64)?;
        Ok(real.f_cumsum(1, Kind::Int64)?.f_mul(&real)?.f_add_scalar(self.padding_idx)?)
    }
}

impl OpKind for TokenPositionEmbedding {
    fn describe(&self) -> String {
        format!("{}×{}, padding {}", self.max_len, self.dim, self.padding_idx)
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::weight(Role::Weight, vec![self.max_len, self.dim])]
    }
    fn arity(&self) -> Arity {
        Arity::Exactly(2)
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("max_len", self.max_len)?;
        check_size("dim", self.dim)?;
        check_range("padding_idx", self.padding_idx, 0, (self.max_len - 1).min(MAX_FIELD))
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        at_least(3, inputs[0])
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let pos = self.positions(xs[1])?;
        let last = pos.f_max()?.int64_value(&[]);
        if last >= self.max_len {
            crate::bail!("position {last} is past the position table ({} rows); truncate the input", self.max_len);
        }
        Ok(xs[0].f_add(&Tensor::f_embedding(cx.p(Role::Weight)?, &pos, -1, false, false)?)?)
    }
    fn init(&self, _role: Role, shape: &[i64], rng: &mut ChaCha8Rng) -> Tensor {
        normal(rng, shape, 0.02)
    }
    fn channel_block(&self) -> Option<String> {
        Some("a learned position table is added over it".into())
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // The table acts as a bias and keeps its share; token ids receive none.
        Ok(vec![Some(xs[0].f_mul(&r.f_div(&cx.stabilize(out)?)?)?), None])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let (x, ids) = (cx.x(0), cx.x(1));
        let w = cx.param(Role::Weight)?;
        let name = cx.fresh("padding_idx");
        let pad = cx.tensor(&name, &Tensor::from(self.padding_idx))?;
        let is_pad = cx.step("Equal", &[&ids, &pad], &[]);
        let real = cx.step("Not", &[&is_pad], &[]);
        let real = cx.step("Cast", &[&real], &[("to", Attr::Int(7))]);
        let name = cx.fresh("axis");
        let axis = cx.tensor(&name, &Tensor::from(1i64))?;
        let count = cx.step("CumSum", &[&real, &axis], &[]);
        let count = cx.step("Mul", &[&count, &real], &[]);
        let pos = cx.step("Add", &[&count, &pad], &[]);
        let table = cx.step("Gather", &[&w, &pos], &[("axis", Attr::Int(0))]);
        Ok(cx.output("Add", &[&x, &table], &[]))
    }
}
