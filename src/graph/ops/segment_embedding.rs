//! Adds row 0 of a (types, dim) segment table (BERT `token_type_embeddings` for single-segment
//! input, where every token type id is 0).

use super::{check_size, Attr, Ctx, LrpContext, OnnxContext, OpKind, ParamSpec, Role};
use crate::error::Result;
use crate::graph::init::normal;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The segment table's size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEmbedding {
    pub types: i64,
    pub dim: i64,
}

impl OpKind for SegmentEmbedding {
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::weight(Role::Weight, vec![self.types, self.dim])]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("size", self.types)?;
        check_size("dim", self.dim)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        Ok(inputs[0].max(1))
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(xs[0].f_add(&cx.p(Role::Weight)?.f_select(0, 0)?)?)
    }
    fn init(&self, _role: Role, shape: &[i64], rng: &mut ChaCha8Rng) -> Tensor {
        normal(rng, shape, 0.02)
    }
    fn channel_block(&self) -> Option<String> {
        Some("a learned segment table is added over it".into())
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(xs[0].f_mul(&r.f_div(&cx.stabilize(out)?)?)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        // The whole table and a lookup of row 0, so the file keeps every parameter (and an
        // import gives back the same table).
        let table = cx.param(Role::Weight)?;
        let name = cx.fresh("row");
        let zero = cx.tensor(&name, &Tensor::from(0i64))?;
        let row = cx.step("Gather", &[&table, &zero], &[("axis", Attr::Int(0))]);
        Ok(cx.output("Add", &[cx.x(0), row], &[]))
    }
}
