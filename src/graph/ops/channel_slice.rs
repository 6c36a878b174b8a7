//! A contiguous range of channels (`torch.split` / `chunk` along channels, as in ShuffleNet,
//! GhostNet or CSP blocks: one node per part).

use super::{check_range, ChannelMap, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use crate::graph::MAX_FIELD;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Channels `start .. start + length` (dimension 1 of a map, the last dimension otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSlice {
    pub start: i64,
    pub length: i64,
}

/// The channel dimension of a tensor of rank `rank`.
fn channel_dim(rank: usize) -> i64 {
    if rank == 4 {
        1
    } else {
        rank as i64 - 1
    }
}

impl OpKind for ChannelSlice {
    fn describe(&self) -> String {
        format!("[{}, {})", self.start, self.start + self.length)
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_range("start", self.start, 0, MAX_FIELD)?;
        // Surgery may remove every channel of a part.
        check_range("length", self.length, 0, MAX_FIELD)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        super::at_least(2, inputs[0])
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let x = xs[0];
        let d = channel_dim(x.dim());
        let c = x.size()[d as usize];
        if self.start + self.length > c {
            crate::bail!("channels {}..{} of a tensor with {c}", self.start, self.start + self.length);
        }
        Ok(x.f_narrow(d, self.start, self.length)?)
    }
    fn channels(&self) -> ChannelMap {
        ChannelMap::Slice { start: self.start }
    }
    fn reindex(&mut self, output: Option<&[i64]>, input: Option<&[i64]>) {
        if let Some(kept) = input {
            self.start = kept.iter().filter(|&&p| p < self.start).count() as i64;
        }
        if let Some(kept) = output {
            self.length = kept.len() as i64;
        }
    }
    fn lrp(&self, _cx: &dyn LrpContext, xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // Relevance goes back to the channels the slice took; the others get none from here.
        let z = xs[0].f_zeros_like()?;
        z.f_narrow(channel_dim(z.dim()), self.start, self.length)?.f_copy_(r)?;
        Ok(vec![Some(z)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let d = channel_dim(cx.in_shape(0).len());
        let s = cx.ints("start", &[self.start])?;
        let e = cx.ints("end", &[self.start + self.length])?;
        let a = cx.ints("axis", &[d])?;
        Ok(cx.output("Slice", &[cx.x(0), s, e, a], &[]))
    }
}
