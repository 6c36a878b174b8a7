//! Token embedding table: ids (B, T) → (B, T, dim).

use super::{check_size, Attr, ChannelMap, Ctx, LrpContext, OnnxContext, OpKind, ParamSpec, Role};
use crate::error::Result;
use crate::graph::init::normal;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Vocabulary size and embedding width.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Embedding {
    pub num: i64,
    pub dim: i64,
}

impl OpKind for Embedding {
    fn describe(&self) -> String {
        format!("{}×{}", self.num, self.dim)
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::weight(Role::Weight, vec![self.num, self.dim])]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("size", self.num)?;
        check_size("dim", self.dim)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        Ok(inputs[0] + 1)
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let ids = xs[0];
        let (lo, hi) = (ids.f_min()?.int64_value(&[]), ids.f_max()?.int64_value(&[]));
        if lo < 0 || hi >= self.num {
            crate::bail!("token id out of range [{lo}, {hi}] for a vocabulary of {}", self.num);
        }
        Ok(Tensor::f_embedding(cx.p(Role::Weight)?, ids, -1, false, false)?)
    }
    fn init(&self, _role: Role, shape: &[i64], rng: &mut ChaCha8Rng) -> Tensor {
        normal(rng, shape, 1.0)
    }
    fn channels(&self) -> ChannelMap {
        ChannelMap::New
    }
    fn channel_block(&self) -> Option<String> {
        Some("an embedding table writes it".into())
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, _r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // Token ids are not differentiable: relevance stops at the embedding output.
        Ok(vec![None])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let w = cx.param(Role::Weight)?;
        Ok(cx.output("Gather", &[w, cx.x(0)], &[("axis", Attr::Int(0))]))
    }

    fn is_path_root(&self) -> bool {
        true
    }
    fn init_hint(&self) -> Option<super::InitHint> {
        Some(super::InitHint::Embedding)
    }
}
