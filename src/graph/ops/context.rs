//! The contexts an op's LRP rule and ONNX export run in. They are defined here, at the graph
//! level, so that every op keeps its rule and its export in its own file while the graph
//! depends on nothing above it: `attribution::lrp` implements [`LrpContext`] (configuration,
//! depth-group rules, canonizers) and `export::onnx` implements [`OnnxContext`] (the protobuf
//! builder). Affine layers describe themselves through [`AffineOp`], so the LRP rules of
//! `attribution::lrp::rules` work for any op that is an affine map, without a list of them.

use super::{GateRule, Role, SoftmaxRule};
use crate::error::{Error, Result};
use tch::Tensor;

/// A layer that is an affine map z = W·x + b (convolutions, linear layers): what the LRP rules
/// of affine layers need of it. The rules call these with modified weights (W⁺, W + γW⁺, a
/// BatchNorm folded in), so they take the parameters as arguments.
pub trait AffineOp {
    /// W·x + b with the given parameters.
    fn affine_forward(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor>;
    /// Wᵀ·g: the gradient of W·x with respect to x for the output gradient `g`, shaped like the
    /// input (`x_size`).
    fn affine_transpose(&self, g: &Tensor, w: &Tensor, x_size: &[i64]) -> Result<Tensor>;
    /// The γ of LRP-γ when the rule names none: the paper's defaults are 0.25 for convolutions
    /// and 0.05 for linear layers.
    fn default_gamma(&self) -> f64;
    /// Wᵀ·g for a `g` (…, out) that is zero but at `index` (…, 1), where it holds `values`
    /// (…, 1): relevance starting at one target per row, e.g. the next token over a vocabulary.
    /// None where the op has nothing cheaper than the dense product.
    fn sparse_transpose(&self, _index: &Tensor, _values: &Tensor, _w: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// What an op's LRP rule sees besides its tensors: its node's parameters, the configured
/// stabiliser and rule variants, and the depth group's rule for affine layers.
pub trait LrpContext {
    /// The node's parameter for `role`.
    fn param(&self, role: Role) -> Result<&Tensor>;
    /// The configured stabiliser (of the proportional splits and the softmax rules).
    fn stabilizer(&self) -> f64;
    /// `z` with the configured stabiliser added away from zero.
    fn stabilize(&self, z: &Tensor) -> Result<Tensor>;
    /// How relevance passes multiplicative gates.
    fn gate_rule(&self) -> GateRule;
    /// How relevance passes the attention softmax at this node.
    fn softmax_rule(&self) -> SoftmaxRule;
    /// zennit's `Norm` rule for a parameter-free linear map f (pooling, sums):
    /// R_in = x · fᵀ(R / stab(f(x))), with `z` = f(x).
    fn norm_rule(&self, x: &Tensor, z: &Tensor, r: &Tensor, f: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor>;
    /// The depth group's rule applied to the node, an affine layer `op`: relevance at its input
    /// `x` from the relevance `r` at its output `out` (the forward pass's, reused as z).
    fn affine_rule(&self, op: &dyn AffineOp, x: &Tensor, out: &Tensor, r: &Tensor) -> Result<Tensor>;
}

/// Vector–Jacobian product: the gradient of ⟨f(x), g⟩ with respect to x. Rules that send
/// relevance back along the gradient (max pooling, zennit's `Norm`) use it.
pub fn vjp(x: &Tensor, g: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    tch::with_grad(|| {
        let x = x.detach().set_requires_grad(true);
        let y = f(&x)?;
        let dot = y.f_mul(&g.detach())?.f_sum(y.kind())?;
        let grads = Tensor::f_run_backward(&[&dot], &[&x], false, false)?;
        Ok(grads.into_iter().next().expect("one gradient"))
    })
}

/// ONNX element type of float32 tensors (`TensorProto.FLOAT`).
pub const FLOAT: i64 = 1;
/// ONNX element type of int64 tensors (`TensorProto.INT64`).
pub const INT64: i64 = 7;

/// An ONNX node attribute.
pub enum Attr<'a> {
    Int(i64),
    Ints(&'a [i64]),
    Float(f32),
    Str(&'a str),
}

/// What an op's export sees: its inputs' value names and shapes, its parameters, and the model
/// under construction that its nodes go to. Ops write nodes with `step` and `output`, defined
/// on `dyn OnnxContext` (generic over the input names' type).
pub trait OnnxContext {
    /// Name of input `i`'s value.
    fn x(&self, i: usize) -> String;
    /// Number of inputs the node has.
    fn arity(&self) -> usize;
    /// Shape of input `i` on the example input (batch 1, 8 tokens).
    fn in_shape(&self, i: usize) -> &[i64];
    /// Shape of the output on the example input.
    fn out_shape(&self) -> &[i64];
    /// The initializer name of the node's parameter `role`.
    fn param_name(&self, role: Role) -> String;
    /// The node's parameter tensor for `role`.
    fn weight(&self, role: Role) -> Result<&Tensor>;
    /// Adds the node's parameter `role` as an initializer; returns its name.
    fn param(&mut self, role: Role) -> Result<String>;
    /// Adds a tensor initializer under `name`; returns the name.
    fn tensor(&mut self, name: &str, t: &Tensor) -> Result<String>;
    /// Adds an int64 vector constant; returns its (generated) name.
    fn ints(&mut self, base: &str, v: &[i64]) -> Result<String>;
    /// Adds a float scalar constant; returns its (generated) name.
    fn scalar(&mut self, base: &str, v: f32) -> Result<String>;
    /// A fresh value name.
    fn fresh(&mut self, base: &str) -> String;
    /// Adds an intermediate node; returns its (generated) output name. Ops call `step`.
    fn add_step(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String;
    /// Adds the node that produces the op's output (named after the relprune node); returns its
    /// name. Ops call `output`.
    fn add_output(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String;
    /// Declares this node as a graph input (float, or int64 for token inputs); `dims` are fixed
    /// sizes or symbolic names.
    fn graph_input(&mut self, int64: bool, dims: &[std::result::Result<i64, &str>]) -> Result<String>;
    /// The error for a node this export cannot write (names the op and the node).
    fn unsupported(&self, why: &str) -> Error;
}

// Generic conveniences live on the trait object: a trait with generic methods could not be one.
impl dyn OnnxContext + '_ {
    /// An intermediate node; returns its (generated) output name.
    pub fn step<S: AsRef<str>>(&mut self, op: &str, inputs: &[S], attrs: &[(&str, Attr)]) -> String {
        let inputs: Vec<&str> = inputs.iter().map(AsRef::as_ref).collect();
        self.add_step(op, &inputs, attrs)
    }
    /// The node that produces this op's output (named after the relprune node).
    pub fn output<S: AsRef<str>>(&mut self, op: &str, inputs: &[S], attrs: &[(&str, Attr)]) -> String {
        let inputs: Vec<&str> = inputs.iter().map(AsRef::as_ref).collect();
        self.add_output(op, &inputs, attrs)
    }
}
