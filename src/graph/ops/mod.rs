//! Layer kinds, one file each. Every op implements [`OpKind`], which carries everything relprune
//! needs of it: parameter roles, arity and shape checks, forward, MACs, initialisation, how it
//! maps channels (for dependency groups, masks and surgery), its LRP rule and its ONNX export.
//!
//! The LRP rule and the ONNX export run in contexts defined here ([`LrpContext`],
//! [`OnnxContext`], in `context.rs`) and implemented by `attribution::lrp` and `export::onnx`,
//! so the graph depends on nothing above it.
//!
//! Dispatch happens here only: [`Op::kind`] is the one `match` over the op enum. Adding an op is
//! a new file plus one line in the `ops!` registration below (see `docs/adding-an-op.md`).

use super::{Graph, Mode, NodeId};
use crate::error::{Error, Result};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

mod activations;
mod adaptive_avg_pool2d;
mod add;
mod attention;
mod avg_pool2d;
mod batchnorm2d;
mod causal_attention;
mod channel_linear;
mod channel_slice;
mod class_token;
mod concat;
mod context;
mod conv2d;
mod dropout;
mod embedding;
mod flatten;
mod group_norm;
mod input;
mod layer_norm;
mod layer_norm2d;
mod linear;
mod map_position_embedding;
mod max_pool2d;
mod mean_pool;
mod mul;
mod pad2d;
mod patches_to_tokens;
mod position_embedding;
mod resize2d;
mod rms_norm;
mod scale;
mod segment_embedding;
mod select_token;
mod stochastic_depth;
mod sub;
mod token_linear;
mod token_position_embedding;
mod token_slice;

pub use activations::{Gelu, Hardsigmoid, Hardswish, Hardtanh, LeakyRelu, Pow, Relu, Sigmoid, Silu, Tanh};
pub use adaptive_avg_pool2d::AdaptiveAvgPool2d;
pub use add::Add;
pub use attention::{Attention, SoftmaxRule};
pub use avg_pool2d::AvgPool2d;
pub use batchnorm2d::BatchNorm2d;
pub use causal_attention::CausalAttention;
pub use channel_linear::ChannelLinear;
pub use channel_slice::ChannelSlice;
pub use class_token::ClassToken;
pub use concat::Concat;
pub use context::{vjp, AffineOp, Attr, LrpContext, OnnxContext, FLOAT, INT64};
pub use conv2d::Conv2d;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use flatten::Flatten;
pub use group_norm::GroupNorm;
pub use input::InputKind;
pub use layer_norm::LayerNorm;
pub use layer_norm2d::LayerNorm2d;
pub use linear::Linear;
pub use map_position_embedding::MapPositionEmbedding;
pub use max_pool2d::MaxPool2d;
pub use mean_pool::MeanPool;
pub use mul::{GateRule, Mul};
pub use pad2d::{Fill, Pad2d};
pub use patches_to_tokens::PatchesToTokens;
pub use position_embedding::PositionEmbedding;
pub use resize2d::{Resize2d, ResizeMode};
pub use rms_norm::RmsNorm;
pub use scale::Scale;
pub use segment_embedding::SegmentEmbedding;
pub use select_token::SelectToken;
pub use stochastic_depth::StochasticDepth;
pub use sub::Sub;
pub use token_linear::TokenLinear;
pub use token_position_embedding::TokenPositionEmbedding;
pub use token_slice::TokenSlice;

/// Registers the op kinds: the enum (its JSON form is `{"type": "<name>", ...fields}`), the list
/// of names, and the single dispatch to [`OpKind`].
macro_rules! ops {
    ($($(#[$doc:meta])* $variant:ident($ty:ty) = $name:literal,)*) => {
        /// One layer kind with its hyperparameters. Parameters are referenced by [`Role`]; the
        /// node maps each role to a key in the parameter store.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum Op {
            $($(#[$doc])* #[serde(rename = $name)] $variant($ty),)*
        }

        /// Every op kind's name, as written in `graph.json`'s `type` field.
        pub const OP_NAMES: &[&str] = &[$($name,)*];

        impl Op {
            /// The op's behaviour. The one place that matches on the op enum.
            pub fn kind(&self) -> &dyn OpKind {
                match self {
                    $(Op::$variant(o) => o,)*
                }
            }
            /// Mutable access, for surgery.
            pub fn kind_mut(&mut self) -> &mut dyn OpKind {
                match self {
                    $(Op::$variant(o) => o,)*
                }
            }
            /// Short lower-case name of the layer kind, as shown to users and in `graph.json`.
            pub fn kind_name(&self) -> &'static str {
                match self {
                    $(Op::$variant(_) => $name,)*
                }
            }
        }
    };
}

ops! {
    /// A graph input.
    Input(InputKind) = "input",
    Conv2d(Conv2d) = "conv2d",
    BatchNorm2d(BatchNorm2d) = "batch_norm2d",
    Relu(Relu) = "relu",
    /// Clamp to [min_val, max_val]; ReLU6 is (0, 6).
    Hardtanh(Hardtanh) = "hardtanh",
    /// max(x, 0) + negative_slope · min(x, 0).
    LeakyRelu(LeakyRelu) = "leaky_relu",
    /// x^exponent, a constant exponent.
    Pow(Pow) = "pow",
    Silu(Silu) = "silu",
    Sigmoid(Sigmoid) = "sigmoid",
    Hardsigmoid(Hardsigmoid) = "hardsigmoid",
    Hardswish(Hardswish) = "hardswish",
    MaxPool2d(MaxPool2d) = "max_pool2d",
    AvgPool2d(AvgPool2d) = "avg_pool2d",
    AdaptiveAvgPool2d(AdaptiveAvgPool2d) = "adaptive_avg_pool2d",
    /// Resizing a map to a fixed size (nearest, bilinear, bicubic).
    Resize2d(Resize2d) = "resize2d",
    /// Constant padding of height and width, possibly asymmetric (TensorFlow's "same").
    Pad2d(Pad2d) = "pad2d",
    Linear(Linear) = "linear",
    /// A linear layer over the token axis (MLP-Mixer's token mixing).
    TokenLinear(TokenLinear) = "token_linear",
    /// A linear layer over the channels of a map (ConvNeXt).
    ChannelLinear(ChannelLinear) = "channel_linear",
    /// A learned factor per channel (layer scale).
    Scale(Scale) = "scale",
    Flatten(Flatten) = "flatten",
    Add(Add) = "add",
    Mul(Mul) = "mul",
    /// x₀ − x₁ (PoolFormer's `pool(x) − x`).
    Sub(Sub) = "sub",
    Concat(Concat) = "concat",
    /// A contiguous range of channels (split / chunk, one node per part).
    ChannelSlice(ChannelSlice) = "channel_slice",
    Dropout(Dropout) = "dropout",
    /// Drops whole residual branches per sample in training; the identity at evaluation.
    StochasticDepth(StochasticDepth) = "stochastic_depth",
    LayerNorm(LayerNorm) = "layer_norm",
    /// LayerNorm over the channels of a map (ConvNeXt's LayerNorm2d).
    LayerNorm2d(LayerNorm2d) = "layer_norm2d",
    /// GroupNorm over a map (InstanceNorm2d with one channel per group).
    GroupNorm(GroupNorm) = "group_norm",
    Gelu(Gelu) = "gelu",
    Tanh(Tanh) = "tanh",
    Attention(Attention) = "attention",
    /// RMSNorm over the last dimension (LLaMA-family decoders).
    RmsNorm(RmsNorm) = "rms_norm",
    /// Causal attention with grouped key/value heads and rotary positions (decoders).
    CausalAttention(CausalAttention) = "causal_attention",
    Embedding(Embedding) = "embedding",
    PositionEmbedding(PositionEmbedding) = "position_embedding",
    /// A learned (1, C, H, W) table added to a map.
    MapPositionEmbedding(MapPositionEmbedding) = "map_position_embedding",
    /// Positions counted from the token ids, padding-aware (RoBERTa).
    TokenPositionEmbedding(TokenPositionEmbedding) = "token_position_embedding",
    SegmentEmbedding(SegmentEmbedding) = "segment_embedding",
    PatchesToTokens(PatchesToTokens) = "patches_to_tokens",
    ClassToken(ClassToken) = "class_token",
    SelectToken(SelectToken) = "select_token",
    /// A contiguous range of tokens.
    TokenSlice(TokenSlice) = "token_slice",
    MeanPool(MeanPool) = "mean_pool",
}

/// A parameter's role within its op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Weight,
    Bias,
    RunningMean,
    RunningVar,
    NumBatchesTracked,
}

impl Role {
    /// The role's name, as in PyTorch's parameter names and `graph.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Weight => "weight",
            Role::Bias => "bias",
            Role::RunningMean => "running_mean",
            Role::RunningVar => "running_var",
            Role::NumBatchesTracked => "num_batches_tracked",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

/// One tensor an op needs: its role, shape and kind.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub role: Role,
    pub shape: Vec<i64>,
    pub kind: ParamKind,
}

impl ParamSpec {
    /// A trainable parameter.
    pub fn weight(role: Role, shape: Vec<i64>) -> Self {
        ParamSpec { role, shape, kind: ParamKind::Weight }
    }
    /// A running statistic.
    pub fn buffer(role: Role, shape: Vec<i64>) -> Self {
        ParamSpec { role, shape, kind: ParamKind::Buffer }
    }
}

/// How many inputs an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exactly(usize),
    /// At least this many.
    AtLeast(usize),
    /// Between the two, inclusive.
    Between(usize, usize),
}

impl Arity {
    /// Whether `n` inputs are accepted.
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
            Arity::Between(a, b) => (a..=b).contains(&n),
        }
    }
}

/// How an op's output channels relate to its inputs' channels. Channels are dimension 1 of a
/// 4-d map and the last dimension otherwise. Dependency analysis follows these maps through
/// the graph ([`crate::prune::dependency`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelMap {
    /// Output channel c is input 0's channel c (activations, normalisation, pooling, depthwise
    /// convolution, token selection). Other inputs (masks) are not channel-aligned.
    Same,
    /// The op's own new channels; it consumes input 0's channels (conv, linear, embedding).
    New,
    /// All inputs and the output are one channel space, index by index (add, gating mul).
    Merge,
    /// The output is the inputs' channels one after another (channel concatenation).
    Concat,
    /// Each input channel becomes a block of consecutive output features (flatten of a map).
    Flatten,
    /// The output is input 0's channels from `start` on (as many as the output has).
    Slice { start: i64 },
}

/// The units an op owns: what can be ranked and pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Units {
    /// Output channels of a conv (filters) or a linear layer (neurons).
    Channels(i64),
    /// Attention heads.
    Heads { heads: i64, head_dim: i64 },
}

/// Parameters indexed by channel: what masks zero and surgery slices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelParams {
    /// (role, dimension) of the tensors indexed by the output channel.
    pub output: Vec<(Role, i64)>,
    /// (role, dimension) of the tensors indexed by input 0's channel.
    pub input: Vec<(Role, i64)>,
}

impl ChannelParams {
    /// An affine layer's: weight rows (and bias) per output channel, weight columns per input
    /// channel (`input_dim`: None for a grouped convolution, whose columns are per group).
    pub fn affine(bias: bool, input_dim: Option<i64>) -> Self {
        let mut output = vec![(Role::Weight, 0)];
        if bias {
            output.push((Role::Bias, 0));
        }
        ChannelParams { output, input: input_dim.map(|d| vec![(Role::Weight, d)]).unwrap_or_default() }
    }
}

/// What the forward pass gives an op: its node's parameters and the mode.
pub struct Ctx<'a> {
    pub graph: &'a Graph,
    pub id: NodeId,
    pub mode: Mode,
}

impl Ctx<'_> {
    /// The parameter bound to `role` (an error naming the node when absent).
    pub fn p(&self, role: Role) -> Result<&Tensor> {
        self.graph.require_param(self.id, role)
    }
    /// The parameter bound to `role`, if any.
    pub fn opt(&self, role: Role) -> Option<&Tensor> {
        self.graph.param(self.id, role)
    }
    /// Whether layers behave as in training.
    pub fn train(&self) -> bool {
        self.mode == Mode::Train
    }
}

/// Everything relprune knows about one layer kind. Defaults fit a parameter-free op with one
/// input whose output has the input's rank and channels.
pub trait OpKind {
    /// A one-line description of the hyperparameters, for `relprune info`.
    fn describe(&self) -> String {
        String::new()
    }
    /// The tensors this op reads, with their expected shapes.
    fn params(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    /// Accepted number of inputs.
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    /// Checks the numbers the op declares (sizes within bounds, valid probabilities).
    fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
    /// Rank of the output given the inputs' ranks (batch included), exactly as the forward
    /// pass produces it; an error where the forward pass could not run.
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        Ok(inputs[0])
    }
    /// The output, from the inputs.
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor>;
    /// Multiply-accumulates for one sample, from the input and output shapes.
    fn macs(&self, _inputs: &[Vec<i64>], _output: &[i64]) -> i64 {
        0
    }
    /// PyTorch's default initialisation of the tensor for `role`.
    fn init(&self, _role: Role, shape: &[i64], _rng: &mut ChaCha8Rng) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, crate::device::HOST))
    }
    /// How output channels relate to input channels.
    fn channels(&self) -> ChannelMap {
        ChannelMap::Same
    }
    /// Why the channels of this op's inputs and output cannot be removed (None: they can).
    fn channel_block(&self) -> Option<String> {
        None
    }
    /// The parameters indexed by channel.
    fn channel_params(&self) -> ChannelParams {
        ChannelParams::default()
    }
    /// Updates the declared sizes after surgery kept `output` output channels and `input`
    /// channels of input 0 (None: unchanged).
    fn resize(&mut self, _output: Option<i64>, _input: Option<i64>) {}
    /// Surgery kept output channels `output` and channels `input` of input 0 (positions; None:
    /// unchanged). By default only the counts matter ([`OpKind::resize`]); an op whose fields
    /// name positions (a channel slice) overrides this.
    fn reindex(&mut self, output: Option<&[i64]>, input: Option<&[i64]>) {
        self.resize(output.map(|k| k.len() as i64), input.map(|k| k.len() as i64));
    }
    /// The prunable units this op owns.
    fn units(&self) -> Option<Units> {
        None
    }
    /// Whether this op carries an LRP rule chosen by depth group (convolutions, linear layers).
    fn takes_rule(&self) -> bool {
        false
    }
    /// Relevance at each input, given the inputs, the output and the relevance at the output
    /// (None for inputs that receive none, such as masks); `cx` gives the configured rules.
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>>;
    /// Writes the op as ONNX nodes through `cx`; returns the name of the output value.
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String>;

    // Capabilities: what callers outside the op files ask of an op, so that none of them needs
    // to test which op it is (tests/op_capabilities.rs keeps it that way).

    /// What the op reads from outside, when it is a graph input (None: it is computed).
    fn input_kind(&self) -> Option<&InputKind> {
        None
    }
    /// Mutable [`OpKind::input_kind`], for the importer (which learns token limits late).
    fn input_kind_mut(&mut self) -> Option<&mut InputKind> {
        None
    }
    /// Whether the op's output starts a path of float activations that gradients flow back to:
    /// graph inputs, and embedding lookups (their integer ids have no gradient).
    fn is_path_root(&self) -> bool {
        self.input_kind().is_some()
    }
    /// Whether the op mixes tokens by attention: a graph with one is a transformer (its own
    /// fine-tuning recipe, softmax rules in the search space).
    fn attends(&self) -> bool {
        false
    }
    /// Whether the op multiplies a tensor by a computed gate (squeeze-and-excitation): a graph
    /// with one has a gate rule to choose.
    fn gates(&self) -> bool {
        false
    }
    /// Whether the op is exactly `x·Wᵀ + b` of its one input, with weight (out, in): an output
    /// layer that head-only training can fit on cached input features.
    fn linear_classifier(&self) -> bool {
        false
    }
    /// Whether the op adds its optional bias (None: it has no such option).
    fn bias_flag(&self) -> Option<bool> {
        None
    }
    /// Mutable [`OpKind::bias_flag`], for the importer (which folds a following addition into it).
    fn bias_flag_mut(&mut self) -> Option<&mut bool> {
        None
    }
    /// The layer kind that model-specific initialisation schemes ([`crate::graph::init`]) treat.
    fn init_hint(&self) -> Option<InitHint> {
        None
    }
    /// ε of a normalisation by running statistics, y = (x − μ)/√(σ² + ε)·γ + β per channel,
    /// which a canonizer folds into the layer before it (None: the op is no such layer).
    fn batch_norm_eps(&self) -> Option<f64> {
        None
    }
    /// Whether the op normalises activations by their statistics (BatchNorm, LayerNorm,
    /// GroupNorm, RMSNorm): a network with none trains stably only at smaller learning rates.
    fn normalizes(&self) -> bool {
        false
    }
    /// The length of a table indexed by token position: the most tokens the op accepts (None
    /// where the op does not index by position, or counts positions otherwise).
    fn max_tokens(&self) -> Option<i64> {
        None
    }
    /// Channel positions at `span` (one of [`OpKind::unit_spans`]) that the units `which` of
    /// `units` need, in order: by default their own blocks ([`UnitSpan::positions`]); an op with
    /// a `shared` span says which shared blocks the kept units still use.
    fn unit_positions(&self, span: &UnitSpan, units: i64, which: &[i64]) -> Vec<i64> {
        span.positions(units, which)
    }
    /// The op's units as consecutive blocks that a uniform selection shrinks alike, by size in
    /// unit order (grouped-query attention: the query heads of each key/value head, so that
    /// equal groups stay equal); empty: one block of every unit.
    fn unit_blocks(&self) -> Vec<usize> {
        Vec::new()
    }
    /// Where each of the op's units lives in the channels around it: every parameter that holds
    /// a unit is found through these spans ([`crate::graph::Graph::unit_holders`]), which is how
    /// masking, surgery and the weight criterion treat filters, neurons and heads alike. By
    /// default a channel unit is one output channel of the op itself.
    fn unit_spans(&self) -> Vec<UnitSpan> {
        match self.units() {
            Some(Units::Channels(_)) => {
                vec![UnitSpan { at: UnitAt::Output, size: 1, parts: 1, silences: true, shared: false }]
            }
            _ => Vec::new(),
        }
    }
}

/// The error for an operation an op does not support: names the op, the node and the operation.
pub fn unsupported(graph: &Graph, id: NodeId, operation: &str, why: &str) -> Error {
    let n = graph.node(id);
    Error::invalid(format!("cannot {operation} `{}` ({}): {why}", n.name, n.op.kind_name()))
}

/// `v` within `lo..=hi`, else a message naming the field.
pub(crate) fn check_range(field: &str, v: i64, lo: i64, hi: i64) -> std::result::Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{field} = {v} is outside {lo}..={hi}"))
    }
}

/// A size field: 1 ..= [`super::MAX_FIELD`].
pub(crate) fn check_size(field: &str, v: i64) -> std::result::Result<(), String> {
    check_range(field, v, 1, super::MAX_FIELD)
}

/// A spatial pair, each within `lo ..= MAX_SPATIAL`.
pub(crate) fn check_spatial(field: &str, v: &[i64; 2], lo: i64) -> std::result::Result<(), String> {
    v.iter().try_for_each(|&x| check_range(field, x, lo, super::MAX_SPATIAL))
}

/// A finite, non-negative float field.
pub(crate) fn check_non_negative(field: &str, v: f64) -> std::result::Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{field} = {v} must be a finite non-negative number"))
    }
}

/// The input rank, when it is at least `min`.
pub(crate) fn at_least(min: usize, r: usize) -> std::result::Result<usize, String> {
    if r >= min {
        Ok(r)
    } else {
        Err(format!("needs an input of at least {min} dimensions, gets {r}"))
    }
}

/// The input rank, when it is 3 or 4 (a map with or without batch).
pub(crate) fn map_rank(r: usize) -> std::result::Result<usize, String> {
    if matches!(r, 3 | 4) {
        Ok(r)
    } else {
        Err(format!("needs an input of 3 or 4 dimensions, gets {r}"))
    }
}

/// Uniform(−bound, bound) samples from the seeded generator.
pub(crate) fn uniform(rng: &mut ChaCha8Rng, shape: &[i64], bound: f64) -> Tensor {
    use rand::RngExt;
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..=bound) as f32).collect();
    Tensor::from_slice(&v).reshape(shape)
}

/// A tensor of ones.
pub(crate) fn ones(shape: &[i64]) -> Tensor {
    Tensor::ones(shape, (Kind::Float, crate::device::HOST))
}

/// What model-specific initialisation schemes need to know of a layer (torchvision's and
/// Hugging Face's schemes name the PyTorch layer they apply to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitHint {
    /// A convolution (`nn.Conv2d`): Kaiming's fan-out is out channels × kernel area.
    Conv { fan_out: i64 },
    /// A fully connected layer (`nn.Linear`) with an (out, in) weight.
    Linear { in_features: i64, out_features: i64 },
    /// A token-id lookup table (`nn.Embedding` of the vocabulary).
    Embedding,
}

/// Which nodes hold a unit's channels, relative to the op that owns the unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitAt {
    /// The op's own output channels (a filter, a neuron; an attention node's context).
    Output,
    /// The output channels of the node feeding input `k` (attention's q, k, v projections).
    Input(usize),
    /// The input channels of every node that reads the op's output (attention's output
    /// projection).
    Readers,
}

/// One place of an op's units: there, the channels form `parts` consecutive parts of
/// `units · size` channels each, and unit u owns channels `u·size .. (u + 1)·size` of every
/// part (a head of a packed q|k|v projection: its rows in each of the 3 parts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitSpan {
    pub at: UnitAt,
    /// Channels per unit in each part.
    pub size: i64,
    /// Number of parts.
    pub parts: i64,
    /// Whether zeroing a unit's parameters here alone removes its contribution (what masking
    /// zeroes): a head's output-projection columns do, its q / k rows do not.
    pub silences: bool,
    /// Whether the channels here are blocks shared by several units (the key/value heads of
    /// grouped-query attention): no unit owns them, and which ones the kept units still need
    /// is the op's to say ([`OpKind::unit_positions`]).
    pub shared: bool,
}

impl UnitSpan {
    /// Whether the holders read the units (per-input-channel parameters) rather than produce
    /// them (per-output-channel parameters).
    pub fn reads(&self) -> bool {
        self.at == UnitAt::Readers
    }
    /// Channel positions of units `which` (in that order within each part) when the op has
    /// `units` units.
    pub fn positions(&self, units: i64, which: &[i64]) -> Vec<i64> {
        let part = units * self.size;
        (0..self.parts)
            .flat_map(|p| which.iter().flat_map(move |&u| (p * part + u * self.size)..(p * part + (u + 1) * self.size)))
            .collect()
    }
}
