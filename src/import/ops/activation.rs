//! Activations (elementwise, one relprune op each), Erf (read by the GELU fusion) and Softmax
//! (read by the attention fusion).

use super::{float_attr, one, Arity, OpDef, BASE};
use crate::import::eval::{axis, float_scalar};
use crate::import::proto::AttrValue;

pub(super) const OPS: &[OpDef] = &[
    OpDef { name: "Relu", doc: "relu", eval: |a| one(a.x(0)?.f_relu()?), ..BASE },
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
        ..BASE
    },
    OpDef { name: "Sigmoid", doc: "sigmoid", eval: |a| one(a.x(0)?.f_sigmoid()?), ..BASE },
    OpDef {
        name: "HardSigmoid",
        doc: "hardsigmoid (alpha 1/6, beta 0.5, as PyTorch)",
        attrs: |n| float_attr(n, "alpha").and_then(|_| float_attr(n, "beta")),
        eval: |a| {
            let (al, be) = (a.n.float("alpha", 0.2) as f64, a.n.float("beta", 0.5) as f64);
            one(a.x(0)?.f_mul_scalar(al)?.f_add_scalar(be)?.f_clamp(0.0, 1.0)?)
        },
        ..BASE
    },
    OpDef { name: "HardSwish", doc: "hardswish", eval: |a| one(a.x(0)?.f_hardswish()?), ..BASE },
    OpDef { name: "Tanh", doc: "tanh", eval: |a| one(a.x(0)?.f_tanh()?), ..BASE },
    OpDef {
        name: "Gelu",
        doc: "gelu (exact or tanh)",
        eval: |a| one(a.x(0)?.f_gelu(if a.n.str("approximate") == Some("tanh") { "tanh" } else { "none" })?),
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
pub fn is_pytorch_hardsigmoid(n: &crate::import::proto::ONode) -> bool {
    (n.float("alpha", 0.2) - 1.0 / 6.0).abs() < 1e-6 && (n.float("beta", 0.5) - 0.5).abs() < 1e-6
}
