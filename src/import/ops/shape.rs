//! Constants and the shape arithmetic exporters emit: folded into constants, never lowered.

use super::{bounded, one, Args, Arity, OpDef, BASE, FOLDED};
use crate::error::Result;
use crate::import::eval::{float_scalar, int_list, is_int, kind_of};
use crate::import::proto::{AttrValue, ONode};
use tch::{Kind, Tensor};

pub(super) const OPS: &[OpDef] = &[
    OpDef {
        name: "Shape",
        doc: FOLDED,
        eval: |a| {
            let s = a.x(0)?.size();
            let r = s.len() as i64;
            let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
            let (b, e) = (clamp(a.n.int("start", 0)), clamp(a.n.int("end", r)));
            one(Tensor::from_slice(&s[b as usize..e.max(b) as usize]))
        },
        shape_only: true,
        ..BASE
    },
    OpDef { name: "Size", doc: FOLDED, eval: |a| one(Tensor::from(a.x(0)?.numel() as i64)), shape_only: true, ..BASE },
    OpDef { name: "Constant", doc: FOLDED, inputs: Arity::exactly(0), attrs: constant_form, eval: constant, ..BASE },
    OpDef {
        name: "ConstantOfShape",
        doc: FOLDED,
        eval: |a| {
            let shape = int_list(a.x(0)?)?;
            bounded("ConstantOfShape's output", &shape)?;
            one(match a.n.attrs.get("value") {
                Some(AttrValue::Tensor(v)) => v.f_reshape([1])?.f_expand(shape.as_slice(), false)?.f_contiguous()?,
                _ => Tensor::f_zeros(shape.as_slice(), (Kind::Float, crate::device::HOST))?,
            })
        },
        ..BASE
    },
    OpDef { name: "Range", doc: FOLDED, inputs: Arity::exactly(3), eval: range, ..BASE },
    OpDef {
        name: "Cast",
        doc: "folded into constants; on float32 data to float32, nothing",
        attrs: |n| kind_of(n.int("to", 1)).map(|_| ()),
        eval: |a| one(a.x(0)?.f_to_kind(kind_of(a.n.int("to", 1))?)?),
        // Data cast to float32 (a dtype guard around an interpolation) is the value itself.
        lower: Some(|l, i| {
            let n = &l.g.model.nodes[i];
            let float = |v: &str| l.g.values[v].kind() == Kind::Float;
            if !(float(&n.inputs[0]) && float(&n.outputs[0])) {
                return Err(l.unsupported(n, "a cast of data to another type than float32"));
            }
            let b = l.bound(&n.inputs[0], n)?;
            let (id, v) = (b.id, b.view.as_ref().map(|t| t.shallow_clone()));
            l.env.insert(n.outputs[0].clone(), crate::import::lower::Bound { id, view: v });
            Ok(())
        }),
        keeps_values: true,
        ..BASE
    },
    OpDef {
        name: "CastLike",
        doc: FOLDED,
        inputs: Arity::exactly(2),
        eval: |a| one(a.x(0)?.f_to_kind(a.x(1)?.kind())?),
        ..BASE
    },
    OpDef {
        name: "Tile",
        doc: FOLDED,
        inputs: Arity::exactly(2),
        eval: |a| {
            let (t, reps) = (a.x(0)?, int_list(a.x(1)?)?);
            if reps.len() != t.dim() || reps.iter().any(|&r| r < 0) {
                crate::bail!("Tile repeats {reps:?} for a tensor of rank {}", t.dim());
            }
            let shape: Vec<i64> = t.size().iter().zip(&reps).map(|(d, r)| d.saturating_mul(*r)).collect();
            bounded("Tile's output", &shape)?;
            one(t.f_repeat(reps.as_slice())?)
        },
        ..BASE
    },
    OpDef {
        name: "Expand",
        doc: FOLDED,
        inputs: Arity::exactly(2),
        eval: |a| {
            let t = a.x(0)?;
            let shape = int_list(a.x(1)?)?;
            bounded("Expand's shape", &shape)?;
            // Bidirectional broadcast: the result has the broadcast of both shapes.
            let full = crate::import::eval::broadcast_shape(&t.size(), &shape)?;
            bounded("Expand's output", &full)?;
            one(t.f_expand(full.as_slice(), false)?.f_contiguous()?)
        },
        keeps_values: true,
        ..BASE
    },
];

/// A Constant holds one value attribute of a form relprune reads.
fn constant_form(n: &ONode) -> Result<()> {
    match n.attrs.iter().next() {
        Some((_, AttrValue::Tensor(_))) if n.attrs.len() == 1 => Ok(()),
        Some((k, AttrValue::Float(_) | AttrValue::Int(_) | AttrValue::Ints(_) | AttrValue::Floats(_)))
            if n.attrs.len() == 1
                && ["value_float", "value_int", "value_ints", "value_floats"].contains(&k.as_str()) =>
        {
            Ok(())
        }
        _ => crate::bail!("unsupported Constant form"),
    }
}

fn constant(a: &Args) -> Result<Vec<Tensor>> {
    one(match a.n.attrs.iter().next() {
        Some((_, AttrValue::Tensor(t))) => t.shallow_clone(),
        Some((_, AttrValue::Float(v))) => Tensor::from(*v),
        Some((_, AttrValue::Int(v))) => Tensor::from(*v),
        Some((_, AttrValue::Ints(v))) => Tensor::from_slice(v),
        Some((_, AttrValue::Floats(v))) => Tensor::from_slice(v),
        _ => crate::bail!("unsupported Constant form"),
    })
}

/// `start, start + delta, …` below `limit`; its length is bounded before anything is allocated.
fn range(a: &Args) -> Result<Vec<Tensor>> {
    let (s, l, d) = (a.x(0)?, a.x(1)?, a.x(2)?);
    let scalar = |t: &Tensor, what: &str| -> Result<f64> {
        if t.numel() != 1 {
            crate::bail!("Range's {what} has {} values, not one", t.numel());
        }
        float_scalar(t)
    };
    let (start, limit, delta) = (scalar(s, "start")?, scalar(l, "limit")?, scalar(d, "delta")?);
    if delta == 0.0 || !delta.is_finite() || !start.is_finite() || !limit.is_finite() {
        crate::bail!("Range from {start} to {limit} by {delta} has no finite length");
    }
    let count = ((limit - start) / delta).ceil().max(0.0);
    if count > super::MAX_ELEMENTS as f64 {
        crate::bail!(
            "Range from {start} to {limit} by {delta} has {count} values, more than the {} the importer evaluates",
            super::MAX_ELEMENTS
        );
    }
    if is_int(s) {
        let (s, l, d) = (int_list(s)?[0], int_list(l)?[0], int_list(d)?[0]);
        one(Tensor::f_arange_start_step(s, l, d, (Kind::Int64, crate::device::HOST))?)
    } else {
        one(Tensor::f_arange_start_step(start, limit, delta, (s.kind(), crate::device::HOST))?)
    }
}
