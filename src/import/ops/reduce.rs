//! Reductions and normalisations: means over maps, LayerNorm, and the cumulative sum of
//! RoBERTa's positions.

use super::{float_attr, one, Args, Arity, OpDef, BASE, FOLDED};
use crate::error::Result;
use crate::import::eval::{axis, int_list};
use tch::Tensor;

pub(super) const MAPPED: &[OpDef] = &[
    OpDef {
        name: "ReduceMean",
        doc: "over height and width: adaptive_avg_pool2d to 1×1; with Sub / Pow / Sqrt / Div: layer_norm",
        inputs: Arity::range(1, 2),
        eval: |a| reduce(a, |t, axes, keep| t.f_mean_dim(axes, keep, t.kind())),
        ..BASE
    },
    OpDef {
        name: "LayerNormalization",
        doc: "layer_norm over the last axis; layer_norm2d on channels-last maps (ConvNeXt)",
        inputs: Arity::range(1, 3),
        // Mean and inverse standard deviation may follow the output.
        outputs: Arity::range(1, 3),
        attrs: |n| float_attr(n, "epsilon"),
        eval: |a| {
            let t = a.x(0)?;
            let ax = axis(a.n.int("axis", -1), t.dim())?;
            let shape: Vec<i64> = t.size()[ax as usize..].to_vec();
            one(t.f_layer_norm(shape.as_slice(), a.opt(1), a.opt(2), a.n.float("epsilon", 1e-5) as f64, false)?)
        },
        ..BASE
    },
];

pub(super) const POSITIONS: &[OpDef] = &[OpDef {
    name: "CumSum",
    doc: "with Equal / Not / Cast / Mul / Add on the token ids, read by a Gather of a table and added to the \
          embeddings: token_position_embedding (RoBERTa's padding-aware positions)",
    inputs: Arity::exactly(2),
    attrs: |n| {
        if n.int("exclusive", 0) != 0 || n.int("reverse", 0) != 0 {
            crate::bail!("exclusive / reverse CumSum is not supported");
        }
        Ok(())
    },
    eval: |a| {
        let t = a.x(0)?;
        let Some(&ax) = int_list(a.x(1)?)?.first() else { crate::bail!("{}: the axis input is empty", a.n.describe()) };
        one(t.f_cumsum(axis(ax, t.dim())?, t.kind())?)
    },
    ..BASE
}];

/// Folded only.
pub(super) const FOLDED_REDUCTIONS: &[OpDef] = &[
    OpDef {
        name: "ReduceSum",
        doc: FOLDED,
        inputs: Arity::range(1, 2),
        eval: |a| reduce(a, |t, axes, keep| t.f_sum_dim_intlist(axes, keep, t.kind())),
        ..BASE
    },
    OpDef {
        name: "ReduceMax",
        doc: FOLDED,
        inputs: Arity::range(1, 2),
        eval: |a| reduce(a, |t, axes, keep| t.f_amax(axes, keep)),
        ..BASE
    },
];

/// The axes of a reduction: its attribute, else its second input; None: all axes.
pub(super) fn reduce_axes(a: &Args, rank: usize) -> Result<Option<Vec<i64>>> {
    let raw = match (a.n.ints("axes"), a.opt(1)) {
        (Some(x), _) => x.to_vec(),
        (None, Some(t)) => int_list(t)?,
        (None, None) => {
            return Ok(if a.n.int("noop_with_empty_axes", 0) == 1 { Some(Vec::new()) } else { None });
        }
    };
    Ok(Some(raw.iter().map(|&x| axis(x, rank)).collect::<Result<_>>()?))
}

/// A reduction by `f` over the node's axes (none: the input itself; unspecified: all).
fn reduce(a: &Args, f: fn(&Tensor, &[i64], bool) -> std::result::Result<Tensor, tch::TchError>) -> Result<Vec<Tensor>> {
    let t = a.x(0)?;
    let keep = a.n.int("keepdims", 1) == 1;
    let axes = match reduce_axes(a, t.dim())? {
        Some(x) if x.is_empty() => return one(t.shallow_clone()),
        Some(x) => x,
        None => (0..t.dim() as i64).collect(),
    };
    one(f(t, &axes, keep)?)
}
