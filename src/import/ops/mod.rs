//! The registry of the ONNX operators the importer reads: one [`OpDef`] per operator, in one
//! small file per operator family. An entry holds everything the importer knows about its
//! operator: how many inputs and outputs it takes, the checks of its attributes, its reference
//! evaluation (what [`super::eval::run`] runs), its lowering onto relprune's ops (what
//! [`super::lower::Lower::node`] runs) and its line in `docs/import-onnx.md`'s table.
//!
//! Arity and attributes are checked before evaluation ([`check`]), so a hostile or broken file
//! gives an error naming the node, never a panic; value-dependent limits (ranks, lengths of
//! constant inputs, sizes to allocate) are checked by each evaluation.

mod activation;
mod arith;
mod conv;
mod index;
mod layout;
mod linear;
mod reduce;
mod shape;

use super::lower::Lower;
use super::proto::{AttrValue, ONode};
use crate::error::{Error, Result};
use tch::Tensor;

pub use activation::is_pytorch_hardsigmoid;

/// How many inputs (or outputs) an operator takes. The first `min` inputs are required (named,
/// not `""`); the others are optional.
#[derive(Clone, Copy, Debug)]
pub struct Arity {
    /// Required count.
    pub min: usize,
    /// Largest count (None: variadic).
    pub max: Option<usize>,
}

impl Arity {
    /// Exactly `n`.
    pub const fn exactly(n: usize) -> Self {
        Arity { min: n, max: Some(n) }
    }
    /// `min` required, up to `max` in all.
    pub const fn range(min: usize, max: usize) -> Self {
        Arity { min, max: Some(max) }
    }
    /// `min` or more.
    pub const fn at_least(min: usize) -> Self {
        Arity { min, max: None }
    }

    /// "2 inputs", "1 to 3 inputs", "at least 1 input".
    fn describe(&self, what: &str) -> String {
        let plural = |k: usize| if k == 1 { what.to_string() } else { format!("{what}s") };
        match self.max {
            Some(m) if m == self.min => format!("{m} {}", plural(m)),
            Some(m) => format!("{} to {m} {}", self.min, plural(m)),
            None => format!("at least {} {}", self.min, plural(self.min)),
        }
    }

    fn admits(&self, k: usize) -> bool {
        k >= self.min && self.max.is_none_or(|m| k <= m)
    }
}

/// The inputs of a node being evaluated: `xs[i]` is None for an omitted optional input.
pub struct Args<'a> {
    /// The node.
    pub n: &'a ONode,
    xs: &'a [Option<&'a Tensor>],
}

impl<'a> Args<'a> {
    /// Node `n`'s inputs `xs`.
    pub fn new(n: &'a ONode, xs: &'a [Option<&'a Tensor>]) -> Self {
        Args { n, xs }
    }
    /// Input `i`, which the node must have.
    pub fn x(&self, i: usize) -> Result<&'a Tensor> {
        self.opt(i).ok_or_else(|| Error::invalid(format!("input {i} is missing")))
    }
    /// Input `i` if given.
    pub fn opt(&self, i: usize) -> Option<&'a Tensor> {
        self.xs.get(i).copied().flatten()
    }
    /// Every given input, in order.
    pub fn given(&self) -> Vec<&'a Tensor> {
        self.xs.iter().flatten().copied().collect()
    }
}

/// One output.
fn one(t: Tensor) -> Result<Vec<Tensor>> {
    Ok(vec![t])
}

/// A reference evaluation: the node's outputs from its inputs.
pub type Eval = fn(&Args) -> Result<Vec<Tensor>>;
/// A lowering: maps ONNX node `i` onto relprune's ops.
pub type Lowering = fn(&mut Lower, usize) -> Result<()>;

/// Everything the importer knows about one ONNX operator.
pub struct OpDef {
    /// The ONNX `op_type`.
    pub name: &'static str,
    /// What it becomes: its line in `docs/import-onnx.md` (operators with the same line share a row).
    pub doc: &'static str,
    /// Inputs it takes.
    pub inputs: Arity,
    /// Outputs it gives.
    pub outputs: Arity,
    /// Checks of its attributes, before evaluation; the message says what is wrong.
    pub attrs: fn(&ONode) -> Result<()>,
    /// Its reference evaluation.
    pub eval: Eval,
    /// Its lowering; None: it is only ever folded into constants (or read by a fusion).
    pub lower: Option<Lowering>,
    /// Only reshapes, transposes or passes its input on: absorbed into a view when lowered.
    pub layout: bool,
    /// Its output depends on its input's shape only (`Shape`, `Size`): constant even on data.
    pub shape_only: bool,
    /// Its output holds its first input's values, cast, reshaped or broadcast: a constant is
    /// traced back through it to the initializer it comes from.
    pub keeps_values: bool,
    /// It only moves or selects its first input's elements (reshape, transpose, gather, slice):
    /// the attention fusion follows q, k and v through it to their projections.
    pub moves: bool,
}

/// The doc line of the operators that are only folded into constants.
const FOLDED: &str =
    "folded into constants when they compute shapes or constants (the exporters' shape arithmetic, attention masks)";

/// Defaults for an entry: one input and output, no attribute checks, no lowering.
const BASE: OpDef = OpDef {
    name: "",
    doc: "",
    inputs: Arity::exactly(1),
    outputs: Arity::exactly(1),
    attrs: no_attrs,
    eval: |_| Err(Error::invalid("no evaluation")),
    lower: None,
    layout: false,
    shape_only: false,
    keeps_values: false,
    moves: false,
};

fn no_attrs(_: &ONode) -> Result<()> {
    Ok(())
}

/// Every operator, family by family, in the order of the docs' table.
const FAMILIES: &[&[OpDef]] = &[
    conv::OPS,
    linear::OPS,
    arith::MAPPED,
    activation::OPS,
    conv::POOLING,
    reduce::MAPPED,
    index::OPS,
    layout::OPS,
    reduce::POSITIONS,
    shape::OPS,
    arith::SHAPE_ARITHMETIC,
    reduce::FOLDED_REDUCTIONS,
];

/// Every registered operator.
pub fn all() -> impl Iterator<Item = &'static OpDef> {
    FAMILIES.iter().flat_map(|f| f.iter())
}

/// The entry of `op`, if relprune reads it.
pub fn lookup(op: &str) -> Option<&'static OpDef> {
    all().find(|d| d.name == op)
}

/// The entry of node `n`'s operator, or an error naming the operators relprune reads.
pub fn def(n: &ONode) -> Result<&'static OpDef> {
    lookup(&n.op).ok_or_else(|| {
        let known: Vec<&str> = all().map(|d| d.name).collect();
        match hint(&n.op) {
            // The construct first, in the user's terms; the list after.
            Some(why) => Error::invalid(format!(
                "{why} ({} is not an operator relprune reads; it reads {})",
                n.op,
                known.join(", ")
            )),
            None => {
                Error::invalid(format!("{} is not an operator relprune can read (it reads {})", n.op, known.join(", ")))
            }
        }
    })
}

/// The rows of the supported-operator table: operators sharing a doc line share a row, in
/// registry order. `docs/import-onnx.md`'s table is this (tests/onnx_import.rs checks it).
pub fn rows() -> Vec<(String, &'static str)> {
    let mut rows: Vec<(Vec<&str>, &str)> = Vec::new();
    for d in all() {
        match rows.iter_mut().find(|(_, doc)| *doc == d.doc) {
            Some((ops, _)) => ops.push(d.name),
            None => rows.push((vec![d.name], d.doc)),
        }
    }
    rows.into_iter().map(|(ops, doc)| (ops.join(", "), doc)).collect()
}

/// Operators relprune knows and refuses, with the reason; any other unknown operator gets the
/// last line.
const REFUSED: &[(&[&str], &str)] = &[
    (&["Upsample"], "Upsample (opsets before 10) is not supported: export at opset 11 or later, which writes Resize"),
    (&["LSTM", "GRU", "RNN", "Loop", "If", "Scan"], "recurrent and control-flow graphs are not supported"),
    (&["ConvTranspose"], "transposed convolutions are not supported"),
    (
        &["ReduceL2", "LpNormalization"],
        "L2 norms of activations (ConvNeXt-V2's global response normalisation, cosine attention in Swin-V2, \
         cross-covariance attention in XCiT and EdgeNeXt) are not supported",
    ),
    (
        &["QuantizeLinear", "DequantizeLinear", "QLinearConv"],
        "quantized models are not supported; export the float model",
    ),
    (
        &["GatherND"],
        "GatherND (the dynamo exporter's advanced indexing, or a decoder-only language model's last-token pooling \
         as in GPT-2) is not supported",
    ),
];

/// Why `op` is refused, in the user's terms, where relprune knows; no hint otherwise (a generic
/// "try another opset or exporter" fixed none of the models it was shown for).
pub fn hint(op: &str) -> Option<&'static str> {
    REFUSED.iter().find(|(ops, _)| ops.contains(&op)).map(|(_, why)| *why)
}

/// Checks node `n` against its operator's entry before it is evaluated: its arity (required
/// inputs named), then its attributes. The error names the node and what is wrong.
pub fn check(def: &OpDef, n: &ONode) -> Result<()> {
    let wrong = |why: String| Error::invalid(format!("{}: {why}", n.describe()));
    if !def.inputs.admits(n.inputs.len()) {
        return Err(wrong(format!("takes {}, has {}", def.inputs.describe("input"), n.inputs.len())));
    }
    if let Some(k) = n.inputs.iter().take(def.inputs.min).position(String::is_empty) {
        return Err(wrong(format!("input {k} is required but left empty")));
    }
    if !def.outputs.admits(n.outputs.len()) {
        return Err(wrong(format!("gives {}, has {}", def.outputs.describe("output"), n.outputs.len())));
    }
    if n.outputs.first().is_some_and(String::is_empty) {
        return Err(wrong("its first output is unnamed".into()));
    }
    (def.attrs)(n).map_err(|e| wrong(e.to_string()))
}

/// Runs node `n` by its entry (arity and attributes checked first); errors name the node.
pub fn evaluate(n: &ONode, xs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    let def = def(n).map_err(|e| Error::invalid(format!("{}: {e}", n.describe())))?;
    check(def, n)?;
    (def.eval)(&Args::new(n, xs)).map_err(|e| Error::invalid(format!("{}: {e}", n.describe())))
}

/// An integer-list attribute, if present, checked to have `len` entries, each at least `least`.
fn ints_attr<'n>(n: &'n ONode, name: &str, len: usize, least: i64) -> Result<Option<&'n [i64]>> {
    let Some(v) = n.ints(name) else { return Ok(None) };
    if v.len() != len {
        crate::bail!("`{name}` {v:?} has {} entries; a 2-d {} needs {len}", v.len(), n.op);
    }
    if let Some(bad) = v.iter().find(|&&x| x < least) {
        crate::bail!("`{name}` {v:?} holds {bad}; each must be at least {least}");
    }
    Ok(Some(v))
}

/// A float attribute given as a float (or absent).
fn float_attr(n: &ONode, name: &str) -> Result<()> {
    match n.attrs.get(name) {
        None | Some(AttrValue::Float(_)) | Some(AttrValue::Int(_)) => Ok(()),
        Some(_) => crate::bail!("attribute `{name}` is not a number"),
    }
}

/// Tensors bigger than this are never evaluated: a shape computation that asks for more is a
/// broken or hostile file, and allocating it would exhaust memory first.
pub const MAX_ELEMENTS: i64 = 1 << 26;

/// Checks that a tensor of `shape` may be allocated.
fn bounded(what: &str, shape: &[i64]) -> Result<()> {
    if let Some(d) = shape.iter().find(|&&d| d < 0) {
        crate::bail!("{what} of shape {shape:?} has a negative dimension {d}");
    }
    let numel = shape.iter().try_fold(1i64, |a, &d| a.checked_mul(d));
    match numel {
        Some(k) if k <= MAX_ELEMENTS => Ok(()),
        _ => crate::bail!("{what} of shape {shape:?} is larger than the {MAX_ELEMENTS} values the importer evaluates"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_unique_documented_and_in_the_table_once() {
        let names: Vec<&str> = all().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "an operator is registered twice");
        for d in all() {
            assert!(!d.doc.is_empty(), "{} has no doc line", d.name);
            assert!(d.inputs.max.is_none_or(|m| m >= d.inputs.min), "{}: arity", d.name);
            assert!(d.outputs.min >= 1, "{}: outputs", d.name);
        }
        let listed: Vec<String> =
            rows().iter().flat_map(|(ops, _)| ops.split(", ").map(String::from).collect::<Vec<_>>()).collect();
        assert_eq!(listed.len(), names.len());
        assert!(names.iter().all(|n| listed.iter().any(|l| l == n)));
    }

    #[test]
    fn arity_reads_as_english() {
        assert_eq!(Arity::exactly(1).describe("input"), "1 input");
        assert_eq!(Arity::range(2, 3).describe("input"), "2 to 3 inputs");
        assert_eq!(Arity::at_least(1).describe("input"), "at least 1 input");
    }
}
