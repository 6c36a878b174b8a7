//! Activations (elementwise, one relprune op each), Erf (read by the GELU fusion) and Softmax
//! (read by the attention fusion).

use super::{float_attr, one, Arity, OpDef, BASE};
use crate::error::Result;
use crate::graph::ops::{Gelu, Hardsigmoid, Hardswish, Hardtanh, LeakyRelu, Pow, Relu, Sigmoid, Tanh};
use crate::graph::Op;
use crate::import::eval::{axis, float_scalar};
use crate::import::lower::Lower;
use crate::import::proto::{AttrValue, ONode};

pub(super) const OPS: &[OpDef] = &[
    OpDef {
        name: "Relu",
        lower: Some(|l, i| l.activation(i, |_, _| Ok(Op::Relu(Relu)))),
        doc: "relu",
        eval: |a| one(a.x(0)?.f_relu()?),
        ..BASE
    },
    OpDef {
        name: "LeakyRelu",
        doc: "leaky_relu",
        attrs: |n| float_attr(n, "alpha"),
        eval: |a| {
            let (x, slope) = (a.x(0)?, a.n.float("alpha", 0.01) as f64);
            one(x.f_where_self(&x.f_ge(0.0)?, &x.f_mul_scalar(slope)?)?)
        },
        lower: Some(|l, i| {
            l.activation(i, |_, n| Ok(Op::LeakyRelu(LeakyRelu { negative_slope: n.float("alpha", 0.01) as f64 })))
        }),
        ..BASE
    },
    OpDef {
        name: "Pow",
        doc: "pow (a data base raised to a constant scalar exponent: StarReLU's square); folded on constants",
        inputs: Arity::exactly(2),
        // The exponent keeps its own type; the result has the base's.
        eval: |a| one(a.x(0)?.f_pow(a.x(1)?)?.f_to_kind(a.x(0)?.kind())?),
        lower: Some(|l, i| l.activation(i, power)),
        ..BASE
    },
    OpDef {
        name: "Clip",
        doc: "hardtanh (ReLU6 is Clip(0, 6)); relu when only the lower bound 0 is given",
        inputs: Arity::range(1, 3),
        attrs: |n| float_attr(n, "min").and_then(|_| float_attr(n, "max")),
        eval: |a| {
            let mut t = a.x(0)?.shallow_clone();
            if let Some(lo) = a.opt(1) {
                t = t.f_clamp_min(float_scalar(lo)?)?;
            } else if let Some(AttrValue::Float(lo)) = a.n.attrs.get("min") {
                t = t.f_clamp_min(*lo as f64)?;
            }
            if let Some(hi) = a.opt(2) {
                t = t.f_clamp_max(float_scalar(hi)?)?;
            } else if let Some(AttrValue::Float(hi)) = a.n.attrs.get("max") {
                t = t.f_clamp_max(*hi as f64)?;
            }
            one(t)
        },
        lower: Some(|l, i| l.activation(i, clip)),
        ..BASE
    },
    OpDef {
        name: "Sigmoid",
        lower: Some(|l, i| l.activation(i, |_, _| Ok(Op::Sigmoid(Sigmoid)))),
        doc: "sigmoid",
        eval: |a| one(a.x(0)?.f_sigmoid()?),
        ..BASE
    },
    OpDef {
        name: "HardSigmoid",
        doc: "hardsigmoid (alpha 1/6, beta 0.5, as PyTorch)",
        attrs: |n| float_attr(n, "alpha").and_then(|_| float_attr(n, "beta")),
        eval: |a| {
            let (al, be) = (a.n.float("alpha", 0.2) as f64, a.n.float("beta", 0.5) as f64);
            one(a.x(0)?.f_mul_scalar(al)?.f_add_scalar(be)?.f_clamp(0.0, 1.0)?)
        },
        lower: Some(|l, i| l.activation(i, hardsigmoid)),
        ..BASE
    },
    OpDef {
        name: "HardSwish",
        lower: Some(|l, i| l.activation(i, |_, _| Ok(Op::Hardswish(Hardswish)))),
        doc: "hardswish",
        eval: |a| one(a.x(0)?.f_hardswish()?),
        ..BASE
    },
    OpDef {
        name: "Tanh",
        lower: Some(|l, i| l.activation(i, |_, _| Ok(Op::Tanh(Tanh)))),
        doc: "tanh",
        eval: |a| one(a.x(0)?.f_tanh()?),
        ..BASE
    },
    OpDef {
        name: "Gelu",
        doc: "gelu (exact or tanh)",
        eval: |a| one(a.x(0)?.f_gelu(if a.n.str("approximate") == Some("tanh") { "tanh" } else { "none" })?),
        lower: Some(|l, i| l.activation(i, |_, n| Ok(Op::Gelu(Gelu { tanh: n.str("approximate") == Some("tanh") })))),
        ..BASE
    },
    OpDef { name: "Erf", doc: "with Div / Add / Mul: gelu", eval: |a| one(a.x(0)?.f_erf()?), ..BASE },
    OpDef {
        name: "Softmax",
        doc: "with the surrounding MatMuls, reshapes and mask: attention (its heads become prunable components)",
        eval: |a| {
            let t = a.x(0)?;
            one(t.f_softmax(axis(a.n.int("axis", -1), t.dim())?, t.kind())?)
        },
        ..BASE
    },
];

/// Whether a HardSigmoid is PyTorch's (alpha 1/6, beta 0.5), the gate of hardswish.
pub fn is_pytorch_hardsigmoid(n: &ONode) -> bool {
    (n.float("alpha", 0.2) - 1.0 / 6.0).abs() < 1e-6 && (n.float("beta", 0.5) - 0.5).abs() < 1e-6
}

/// PyTorch's hardsigmoid only.
fn hardsigmoid(l: &Lower, n: &ONode) -> Result<Op> {
    if !is_pytorch_hardsigmoid(n) {
        let (a, b) = (n.float("alpha", 0.2), n.float("beta", 0.5));
        return Err(l.unsupported(n, &format!("HardSigmoid with alpha {a}, beta {b} (PyTorch's is 1/6, 0.5)")));
    }
    Ok(Op::Hardsigmoid(Hardsigmoid))
}

/// A constant scalar exponent: pow.
fn power(l: &Lower, n: &ONode) -> Result<Op> {
    let exponent = l
        .cval(n, 1)
        .filter(|t| t.numel() == 1)
        .and_then(|t| float_scalar(t).ok())
        .ok_or_else(|| l.unsupported(n, "a power whose exponent is data or not one number"))?;
    Ok(Op::Pow(Pow { exponent }))
}

/// Both bounds: hardtanh; only the lower bound 0: relu.
fn clip(l: &Lower, n: &ONode) -> Result<Op> {
    let scalar = |k: usize, attr: &str| -> Option<f64> {
        l.cval(n, k).and_then(|t| float_scalar(t).ok()).or_else(|| n.attrs.get(attr).map(|_| n.float(attr, 0.0) as f64))
    };
    match (scalar(1, "min"), scalar(2, "max")) {
        (Some(0.0), None) => Ok(Op::Relu(Relu)),
        (Some(lo), Some(hi)) => Ok(Op::Hardtanh(Hardtanh { min_val: lo, max_val: hi })),
        _ => Err(l.unsupported(n, "Clip without both bounds")),
    }
}

impl Lower<'_> {
    /// An elementwise activation: one relprune op (made by `op`) on the input, seen as it is.
    fn activation(&mut self, i: usize, op: fn(&Lower, &ONode) -> Result<Op>) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let op = op(self, n)?;
        let b = self.bound(&n.inputs[0], n)?;
        let (id, v) = (b.id, b.view.as_ref().map(|v| v.shallow_clone()));
        self.elementwise(&n.outputs[0], &g.module_name(n), op, id, v, &n.name);
        Ok(())
    }
}
