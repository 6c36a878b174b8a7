//! Indexing: Gather (embeddings, token selection, re-indexing), Slice and Split (channel
//! slices) and Concat (channels, class tokens). All of them also fold shape arithmetic.

use super::{one, Args, Arity, OpDef, BASE};
use crate::error::Result;
use crate::import::eval::{axis, int_list};
use tch::{Kind, Tensor};

pub(super) const OPS: &[OpDef] = &[
    OpDef {
        name: "Concat",
        doc: "concat of maps' channels (DenseNet); a class token before the tokens (ViT); constant shape \
              arithmetic is folded",
        inputs: Arity::at_least(1),
        eval: |a| {
            let ts = a.given();
            let Some(first) = ts.first() else { crate::bail!("{}: no inputs to concatenate", a.n.describe()) };
            let ax = axis(a.n.int("axis", 0), first.dim())?;
            let k = if ts.iter().all(|t| t.kind() == first.kind()) { first.kind() } else { Kind::Float };
            let ts: Vec<Tensor> = ts.iter().map(|t| t.f_to_kind(k)).collect::<std::result::Result<_, _>>()?;
            one(Tensor::f_cat(&ts, ax)?)
        },
        ..BASE
    },
    OpDef {
        name: "Split",
        doc: "channel_slice per output (channel splits)",
        inputs: Arity::range(1, 2),
        outputs: Arity::at_least(1),
        eval: split,
        ..BASE
    },
    OpDef {
        name: "Slice",
        doc: "channel_slice of a contiguous channel range; constant shape arithmetic is folded",
        inputs: Arity::range(3, 5),
        eval: slice,
        ..BASE
    },
    OpDef {
        name: "Gather",
        doc: "embedding (token ids); select_token (x[:, i]); re-indexing; constant shape arithmetic is folded",
        inputs: Arity::exactly(2),
        eval: gather,
        ..BASE
    },
];

/// The size of axis `a` of `t`, the axis normalised (a scalar has none).
fn dim_of(a: &Args, t: &Tensor, ax: i64) -> Result<(i64, i64)> {
    if t.dim() == 0 {
        crate::bail!("{}: the input is a scalar; it has no axis {ax}", a.n.describe());
    }
    let ax = axis(ax, t.dim())?;
    Ok((ax, t.size()[ax as usize]))
}

fn gather(a: &Args) -> Result<Vec<Tensor>> {
    let (t, idx) = (a.x(0)?, a.x(1)?);
    let (ax, dim) = dim_of(a, t, a.n.int("axis", 0))?;
    // Negative indices count from the end.
    let idx = idx.f_to_kind(Kind::Int64)?;
    let idx = idx.f_add(&idx.f_lt(0)?.f_to_kind(Kind::Int64)?.f_mul_scalar(dim)?)?;
    let picked = t.f_index_select(ax, &idx.f_flatten(0, -1)?)?;
    let mut shape = t.size()[..ax as usize].to_vec();
    shape.extend(idx.size());
    shape.extend(&t.size()[ax as usize + 1..]);
    one(picked.f_reshape(shape.as_slice())?)
}

fn slice(a: &Args) -> Result<Vec<Tensor>> {
    let t = a.x(0)?;
    let starts = int_list(a.x(1)?)?;
    let ends = int_list(a.x(2)?)?;
    let axes = match a.opt(3) {
        Some(x) => int_list(x)?,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match a.opt(4) {
        Some(s) => int_list(s)?,
        None => vec![1; starts.len()],
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        crate::bail!(
            "{}: {} starts, {} ends, {} axes and {} steps; Slice needs as many of each",
            a.n.describe(),
            starts.len(),
            ends.len(),
            axes.len(),
            steps.len()
        );
    }
    let mut t = t.shallow_clone();
    for i in 0..starts.len() {
        let (ax, dim) = dim_of(a, &t, axes[i])?;
        let step = steps[i];
        if step <= 0 {
            crate::bail!("{}: only positive Slice steps are supported", a.n.describe());
        }
        let norm = |v: i64| if v < 0 { (v + dim).max(0) } else { v.min(dim) };
        let (s, e) = (norm(starts[i]), norm(ends[i]));
        t = t.f_slice(ax, s, e.max(s), step)?;
    }
    one(t)
}

fn split(a: &Args) -> Result<Vec<Tensor>> {
    let (n, t) = (a.n, a.x(0)?);
    let (ax, dim) = dim_of(a, t, n.int("axis", 0))?;
    let sizes = match (a.opt(1), n.ints("split")) {
        (Some(s), _) => int_list(s)?,
        (None, Some(s)) => s.to_vec(),
        (None, None) => {
            let parts = n.int("num_outputs", n.outputs.len() as i64).max(1);
            let each = (dim + parts - 1) / parts;
            (0..parts).map(|i| each.min(dim - i * each)).collect()
        }
    };
    Ok(t.f_split_with_sizes(sizes.as_slice(), ax)?)
}
