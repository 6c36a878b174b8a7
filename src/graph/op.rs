//! Typed layer kinds. An [`Op`] is plain data (serde), so a whole graph can be written as JSON
//! and read back; the tensors live in the graph's parameter store.

use serde::{Deserialize, Serialize};

/// What a graph input holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Images, shape (B, channels, height, width), float.
    Image { channels: i64, height: i64, width: i64 },
    /// Token ids, shape (B, T) with T ≤ `max_len`, int64.
    TokenIds { max_len: i64 },
    /// Attention mask, shape (B, T): 1 for real tokens, 0 for padding, int64.
    AttentionMask { max_len: i64 },
}

/// One layer kind with its hyperparameters. Parameters are referenced by role (see
/// [`Op::param_specs`]); the node maps each role to a key in the parameter store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    Input(InputKind),
    Conv2d(Conv2d),
    BatchNorm2d {
        features: i64,
        eps: f64,
        momentum: f64,
    },
    Relu,
    MaxPool2d {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
        ceil_mode: bool,
    },
    AvgPool2d {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
    },
    AdaptiveAvgPool2d {
        output: [i64; 2],
    },
    Linear {
        in_features: i64,
        out_features: i64,
        bias: bool,
    },
    Flatten {
        start_dim: i64,
    },
    /// Elementwise sum of all inputs (residual connections).
    Add,
    Dropout {
        p: f64,
    },
    /// LayerNorm over the last dimension.
    LayerNorm {
        dim: i64,
        eps: f64,
    },
    /// GELU; `tanh` selects the tanh approximation.
    Gelu {
        tanh: bool,
    },
    Tanh,
    /// Scaled dot-product attention core: inputs (q, k, v) or one packed (q|k|v) input, plus an
    /// optional attention mask input. Output (B, T, heads·head_dim): the heads' outputs
    /// concatenated, before the output projection. `heads` may differ between layers after
    /// surgery; `head_dim` stays.
    Attention {
        heads: i64,
        head_dim: i64,
        packed: bool,
    },
    /// Token embedding table: ids (B, T) -> (B, T, dim).
    Embedding {
        num: i64,
        dim: i64,
    },
    /// Adds a learned position table to (B, T, dim); positions 0..T are used. The table is
    /// stored as (max_len, dim) (Hugging Face) or, with `leading_one`, as (1, max_len, dim)
    /// (torchvision's ViT `pos_embedding`).
    PositionEmbedding {
        max_len: i64,
        dim: i64,
        leading_one: bool,
    },
    /// Adds row 0 of a (types, dim) segment table (BERT `token_type_embeddings` for
    /// single-segment input, where every token type id is 0).
    SegmentEmbedding {
        types: i64,
        dim: i64,
    },
    /// (B, C, H, W) -> (B, H·W, C): patches as tokens.
    PatchesToTokens,
    /// Prepends a learned class token: (B, T, D) -> (B, T+1, D).
    ClassToken {
        dim: i64,
    },
    /// Selects one token: (B, T, D) -> (B, D).
    SelectToken {
        index: i64,
    },
    /// Mean over real tokens (mask-aware when a mask input is given): (B, T, D) -> (B, D).
    MeanPool,
}

/// A convolution's hyperparameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2d {
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: [i64; 2],
    pub stride: [i64; 2],
    pub padding: [i64; 2],
    pub dilation: [i64; 2],
    pub groups: i64,
    pub bias: bool,
}

impl Conv2d {
    /// A square `k`×`k` convolution with stride 1, no padding, no bias, one group.
    pub fn new(in_channels: i64, out_channels: i64, k: i64) -> Self {
        Conv2d {
            in_channels,
            out_channels,
            kernel: [k, k],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            bias: false,
        }
    }
    pub fn stride(mut self, s: i64) -> Self {
        self.stride = [s, s];
        self
    }
    pub fn padding(mut self, p: i64) -> Self {
        self.padding = [p, p];
        self
    }
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }
    pub fn groups(mut self, g: i64) -> Self {
        self.groups = g;
        self
    }
}

/// Whether a stored tensor is trained or a running statistic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Trainable parameter.
    Weight,
    /// Non-trainable state (BatchNorm running statistics).
    Buffer,
    /// Optional bookkeeping buffer (BatchNorm's `num_batches_tracked`): loaded and saved when
    /// present, never required.
    Optional,
}

/// One tensor an op needs: its role (e.g. `weight`), shape and kind.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub role: &'static str,
    pub shape: Vec<i64>,
    pub kind: ParamKind,
}

fn spec(role: &'static str, shape: Vec<i64>, kind: ParamKind) -> ParamSpec {
    ParamSpec { role, shape, kind }
}

impl Op {
    /// The tensors this op reads, with their expected shapes.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        use ParamKind::*;
        match self {
            Op::Conv2d(c) => {
                let mut v = vec![spec(
                    "weight",
                    vec![c.out_channels, c.in_channels / c.groups.max(1), c.kernel[0], c.kernel[1]],
                    Weight,
                )];
                if c.bias {
                    v.push(spec("bias", vec![c.out_channels], Weight));
                }
                v
            }
            Op::BatchNorm2d { features, .. } => vec![
                spec("weight", vec![*features], Weight),
                spec("bias", vec![*features], Weight),
                spec("running_mean", vec![*features], Buffer),
                spec("running_var", vec![*features], Buffer),
                spec("num_batches_tracked", vec![], Optional),
            ],
            Op::Linear { in_features, out_features, bias } => {
                let mut v = vec![spec("weight", vec![*out_features, *in_features], Weight)];
                if *bias {
                    v.push(spec("bias", vec![*out_features], Weight));
                }
                v
            }
            Op::LayerNorm { dim, .. } => {
                vec![spec("weight", vec![*dim], Weight), spec("bias", vec![*dim], Weight)]
            }
            Op::Embedding { num, dim } => vec![spec("weight", vec![*num, *dim], Weight)],
            Op::PositionEmbedding { max_len, dim, leading_one } => {
                let shape = if *leading_one { vec![1, *max_len, *dim] } else { vec![*max_len, *dim] };
                vec![spec("weight", shape, Weight)]
            }
            Op::SegmentEmbedding { types, dim } => vec![spec("weight", vec![*types, *dim], Weight)],
            Op::ClassToken { dim } => vec![spec("weight", vec![1, 1, *dim], Weight)],
            _ => vec![],
        }
    }

    /// Short lower-case name of the layer kind, as shown to users.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Input(_) => "input",
            Op::Conv2d(_) => "conv2d",
            Op::BatchNorm2d { .. } => "batchnorm2d",
            Op::Relu => "relu",
            Op::MaxPool2d { .. } => "maxpool2d",
            Op::AvgPool2d { .. } => "avgpool2d",
            Op::AdaptiveAvgPool2d { .. } => "adaptive_avgpool2d",
            Op::Linear { .. } => "linear",
            Op::Flatten { .. } => "flatten",
            Op::Add => "add",
            Op::Dropout { .. } => "dropout",
            Op::LayerNorm { .. } => "layernorm",
            Op::Gelu { .. } => "gelu",
            Op::Tanh => "tanh",
            Op::Attention { .. } => "attention",
            Op::Embedding { .. } => "embedding",
            Op::PositionEmbedding { .. } => "position_embedding",
            Op::SegmentEmbedding { .. } => "segment_embedding",
            Op::PatchesToTokens => "patches_to_tokens",
            Op::ClassToken { .. } => "class_token",
            Op::SelectToken { .. } => "select_token",
            Op::MeanPool => "mean_pool",
        }
    }

    /// A one-line description of the hyperparameters, for `relprune info`.
    pub fn describe(&self) -> String {
        match self {
            Op::Input(k) => format!("{k:?}"),
            Op::Conv2d(c) => format!(
                "{}→{} k{}x{} s{} p{}{}{}",
                c.in_channels,
                c.out_channels,
                c.kernel[0],
                c.kernel[1],
                c.stride[0],
                c.padding[0],
                if c.groups > 1 { format!(" g{}", c.groups) } else { String::new() },
                if c.bias { " +bias" } else { "" }
            ),
            Op::BatchNorm2d { features, .. } => format!("{features}"),
            Op::MaxPool2d { kernel, stride, .. } => format!("k{} s{}", kernel[0], stride[0]),
            Op::AvgPool2d { kernel, stride, .. } => format!("k{} s{}", kernel[0], stride[0]),
            Op::AdaptiveAvgPool2d { output } => format!("→{}x{}", output[0], output[1]),
            Op::Linear { in_features, out_features, bias } => {
                format!("{in_features}→{out_features}{}", if *bias { " +bias" } else { "" })
            }
            Op::Attention { heads, head_dim, .. } => format!("{heads} heads × {head_dim}"),
            Op::LayerNorm { dim, .. } => format!("{dim}"),
            Op::Embedding { num, dim } => format!("{num}×{dim}"),
            Op::PositionEmbedding { max_len, dim, .. } => format!("{max_len}×{dim}"),
            Op::Dropout { p } => format!("p={p}"),
            _ => String::new(),
        }
    }
}
