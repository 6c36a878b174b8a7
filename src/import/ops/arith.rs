//! Elementwise arithmetic and logic. Add, Sum and Mul carry data (sums, biases, position
//! tables, gates, scales); the others only fold shape arithmetic and masks into constants.

use super::{one, Args, Arity, OpDef, BASE, FOLDED};
use crate::error::Result;
use crate::import::eval::{is_int, promote};
use tch::{Kind, Tensor};

/// Two operands with ONNX's type rule (see [`promote`]) combined by `f`.
fn binary(a: &Args, f: fn(&Tensor, &Tensor) -> std::result::Result<Tensor, tch::TchError>) -> Result<Vec<Tensor>> {
    let (x, y) = promote(a.x(0)?, a.x(1)?)?;
    one(f(&x, &y)?)
}

/// A two-operand entry.
const fn two(name: &'static str, doc: &'static str, eval: super::Eval) -> OpDef {
    OpDef { name, doc, inputs: Arity::exactly(2), eval, ..BASE }
}

/// A one-operand entry.
const fn unary(name: &'static str, eval: super::Eval) -> OpDef {
    OpDef { name, doc: FOLDED, eval, ..BASE }
}

pub(super) const MAPPED: &[OpDef] = &[
    OpDef {
        name: "Sum",
        doc: "add (relprune's own export writes residual sums so)",
        inputs: Arity::at_least(1),
        eval: |a| {
            let ts = a.given();
            let mut acc = ts[0].shallow_clone();
            for t in &ts[1..] {
                acc = acc.f_add(t)?;
            }
            one(acc)
        },
        ..BASE
    },
    two(
        "Add",
        "add of two tensors; the bias of the preceding MatMul / Conv; position / segment tables (BERT, ViT)",
        |a| binary(a, Tensor::f_add),
    ),
    two(
        "Mul",
        "mul (gating, squeeze-excitation); scale by a per-channel constant (layer scale); x·Sigmoid(x) → silu; \
         x·HardSigmoid(x) → hardswish",
        |a| binary(a, Tensor::f_mul),
    ),
    // `Where(condition, a, b)`.
    OpDef {
        name: "Where",
        doc: "inside attention: the masked_fill of the scores (DistilBERT)",
        inputs: Arity::exactly(3),
        eval: |a| {
            let (c, x, y) = (a.x(0)?, a.x(1)?, a.x(2)?);
            let (x, y) = promote(x, y)?;
            one(x.f_where_self(&c.f_to_kind(Kind::Bool)?, &y)?)
        },
        ..BASE
    },
];

/// Folded only: shape arithmetic and masks.
pub(super) const SHAPE_ARITHMETIC: &[OpDef] = &[
    two("Equal", FOLDED, |a| binary(a, Tensor::f_eq_tensor)),
    two("Less", FOLDED, |a| binary(a, Tensor::f_lt_tensor)),
    two("Greater", FOLDED, |a| binary(a, Tensor::f_gt_tensor)),
    two("And", FOLDED, |a| binary(a, Tensor::f_logical_and)),
    two("Or", FOLDED, |a| binary(a, Tensor::f_logical_or)),
    unary("Not", |a| one(a.x(0)?.f_logical_not()?)),
    unary("Neg", |a| one(a.x(0)?.f_neg()?)),
    unary("Abs", |a| one(a.x(0)?.f_abs()?)),
    two("Sub", FOLDED, |a| binary(a, Tensor::f_sub)),
    two("Div", FOLDED, |a| binary(a, |x, y| if is_int(x) { x.f_div_tensor_mode(y, "trunc") } else { x.f_div(y) })),
    // The exponent keeps its own type; the result has the base's.
    two("Pow", FOLDED, |a| one(a.x(0)?.f_pow(a.x(1)?)?.f_to_kind(a.x(0)?.kind())?)),
    unary("Sqrt", |a| one(a.x(0)?.f_sqrt()?)),
    unary("Reciprocal", |a| one(a.x(0)?.f_reciprocal()?)),
    unary("Exp", |a| one(a.x(0)?.f_exp()?)),
    unary("Log", |a| one(a.x(0)?.f_log()?)),
    // Two operands only (ONNX allows more; exporters' shape arithmetic uses two).
    two("Max", FOLDED, |a| binary(a, Tensor::f_maximum)),
    two("Min", FOLDED, |a| binary(a, Tensor::f_minimum)),
    two("Mod", FOLDED, |a| binary(a, Tensor::f_remainder_tensor)),
];
