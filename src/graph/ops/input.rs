//! Graph inputs: images, token ids, attention masks.

use super::{check_range, check_size, Arity, ChannelMap, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use crate::graph::{MAX_INPUT_ELEMENTS, MAX_SPATIAL};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// What a graph input holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum InputKind {
    /// Images, shape (B, channels, height, width), float.
    Image { channels: i64, height: i64, width: i64 },
    /// Token ids, shape (B, T) with T ≤ `max_len`, int64.
    TokenIds { max_len: i64 },
    /// Attention mask, shape (B, T): 1 for real tokens, 0 for padding, int64.
    AttentionMask { max_len: i64 },
}

impl InputKind {
    /// Whether `t` fits this input.
    pub fn accepts(&self, t: &Tensor) -> bool {
        let size = t.size();
        match self {
            InputKind::Image { channels, height, width } => {
                size.len() == 4 && size[1..] == [*channels, *height, *width] && t.is_floating_point()
            }
            InputKind::TokenIds { max_len } | InputKind::AttentionMask { max_len } => {
                size.len() == 2 && size[1] <= *max_len && t.kind() == Kind::Int64
            }
        }
    }
    /// What this input expects, for error messages.
    pub fn expectation(&self) -> String {
        match self {
            InputKind::Image { channels, height, width } => {
                format!("float images of shape (B, {channels}, {height}, {width})")
            }
            InputKind::TokenIds { max_len } => format!("int64 token ids of shape (B, T ≤ {max_len})"),
            InputKind::AttentionMask { max_len } => format!("an int64 mask of shape (B, T ≤ {max_len})"),
        }
    }
}

impl OpKind for InputKind {
    fn describe(&self) -> String {
        format!("{self:?}")
    }
    fn arity(&self) -> Arity {
        Arity::Exactly(0)
    }
    fn check(&self) -> std::result::Result<(), String> {
        match self {
            InputKind::Image { channels, height, width } => {
                check_size("channels", *channels)?;
                check_range("height", *height, 1, MAX_SPATIAL)?;
                check_range("width", *width, 1, MAX_SPATIAL)?;
                super::super::checked_elements("an input sample", &[*channels, *height, *width], MAX_INPUT_ELEMENTS)
                    .map(|_| ())
            }
            InputKind::TokenIds { max_len } | InputKind::AttentionMask { max_len } => check_size("max_len", *max_len),
        }
    }
    fn rank(&self, _inputs: &[usize]) -> std::result::Result<usize, String> {
        Ok(match self {
            InputKind::Image { .. } => 4,
            _ => 2,
        })
    }
    fn forward(&self, _cx: &Ctx, _xs: &[&Tensor]) -> Result<Tensor> {
        crate::bail!("an input node is bound to a tensor, not computed")
    }
    fn channels(&self) -> ChannelMap {
        ChannelMap::New
    }
    fn channel_block(&self) -> Option<String> {
        Some("it is the graph input".into())
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, _r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(Vec::new())
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        match self {
            InputKind::Image { channels, height, width } => {
                cx.graph_input(false, &[Err("batch"), Ok(*channels), Ok(*height), Ok(*width)])
            }
            InputKind::TokenIds { .. } | InputKind::AttentionMask { .. } => {
                cx.graph_input(true, &[Err("batch"), Err("sequence")])
            }
        }
    }

    fn input_kind(&self) -> Option<&InputKind> {
        Some(self)
    }
    fn input_kind_mut(&mut self) -> Option<&mut InputKind> {
        Some(self)
    }
}
