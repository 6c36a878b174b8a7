//! Matrix products: linear layers (and, inside attention, the score and value products).

use super::{float_attr, one, Arity, OpDef, BASE};
use crate::import::eval::promote;

pub(super) const OPS: &[OpDef] = &[
    OpDef {
        name: "Gemm",
        doc: "linear (transB either way, alpha = beta = 1); channel_linear on channels-last maps",
        inputs: Arity::range(2, 3),
        attrs: |n| float_attr(n, "alpha").and_then(|_| float_attr(n, "beta")),
        eval: |a| {
            let n = a.n;
            let (mut x, mut w) = (a.x(0)?.shallow_clone(), a.x(1)?.shallow_clone());
            if n.int("transA", 0) == 1 {
                x = x.f_tr()?;
            }
            if n.int("transB", 0) == 1 {
                w = w.f_tr()?;
            }
            let mut y = x.f_matmul(&w)?.f_mul_scalar(n.float("alpha", 1.0) as f64)?;
            if let Some(c) = a.opt(2) {
                y = y.f_add(&c.f_mul_scalar(n.float("beta", 1.0) as f64)?)?;
            }
            one(y)
        },
        ..BASE
    },
    OpDef {
        name: "MatMul",
        doc: "linear with a constant weight (+ the following Add as its bias); inside attention: the score and \
              value products",
        inputs: Arity::exactly(2),
        eval: |a| {
            let (x, y) = promote(a.x(0)?, a.x(1)?)?;
            one(x.f_matmul(&y)?)
        },
        ..BASE
    },
];
