//! Adds a learned position table to a map: (B, C, H, W) + (1, C, H, W) (Visformer's and other
//! hybrid CNN-transformers' position embedding on feature maps).
//!
//! Channels: the table has a plane per channel, sliced with the channels it is added to, so they
//! stay prunable. LRP: the table acts as a bias and keeps its share (as [`super::PositionEmbedding`]).

use super::{check_size, map_rank, ChannelParams, Ctx, LrpContext, OnnxContext, OpKind, ParamSpec, Role};
use crate::error::Result;
use crate::graph::init::normal;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The table's channels, height and width.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapPositionEmbedding {
    pub channels: i64,
    pub height: i64,
    pub width: i64,
}

impl OpKind for MapPositionEmbedding {
    fn describe(&self) -> String {
        format!("{}×{}×{}", self.channels, self.height, self.width)
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::weight(Role::Weight, vec![1, self.channels, self.height, self.width])]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("channels", self.channels)?;
        check_size("height", self.height)?;
        check_size("width", self.width)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        map_rank(inputs[0]).and_then(|r| if r == 4 { Ok(r) } else { Err("needs a batch of maps (N, C, H, W)".into()) })
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let s = xs[0].size();
        if s[1..] != [self.channels, self.height, self.width] {
            crate::bail!("a {}×{}×{} table added to a map of {:?}", self.channels, self.height, self.width, &s[1..]);
        }
        Ok(xs[0].f_add(cx.p(Role::Weight)?)?)
    }
    fn init(&self, _role: Role, shape: &[i64], rng: &mut ChaCha8Rng) -> Tensor {
        normal(rng, shape, 0.02)
    }
    fn channel_params(&self) -> ChannelParams {
        ChannelParams { output: vec![(Role::Weight, 1)], input: Vec::new() }
    }
    fn resize(&mut self, output: Option<i64>, input: Option<i64>) {
        if let Some(n) = output.or(input) {
            self.channels = n;
        }
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(xs[0].f_mul(&r.f_div(&cx.stabilize(out)?)?)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let w = cx.param(Role::Weight)?;
        Ok(cx.output("Add", &[cx.x(0), w], &[]))
    }
}
