//! Indexing: Gather (embeddings, token selection, re-indexing), Slice and Split (channel
//! slices) and Concat (channels, class tokens). All of them also fold shape arithmetic.

use super::{one, Args, Arity, OpDef, BASE};
use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{InputKind, NodeId, Op, Role};
use crate::import::eval;
use crate::import::eval::{axis, int_list};
use crate::import::lower::{strip_role, Bound, Lower};
use crate::import::view;
use tch::{Kind, Tensor};

pub(super) const OPS: &[OpDef] = &[
    OpDef {
        name: "Concat",
        doc: "concat of maps' channels (DenseNet) or of features; learned tokens before the tokens (ViT's class token, DeiT's \
              distillation token, register tokens): class_token; constant shape arithmetic is folded",
        inputs: Arity::at_least(1),
        eval: |a| {
            let ts = a.given();
            let Some(first) = ts.first() else { crate::bail!("no inputs to concatenate") };
            let ax = axis(a.n.int("axis", 0), first.dim())?;
            let k = if ts.iter().all(|t| t.kind() == first.kind()) { first.kind() } else { Kind::Float };
            let ts: Vec<Tensor> = ts.iter().map(|t| t.f_to_kind(k)).collect::<std::result::Result<_, _>>()?;
            one(Tensor::f_cat(&ts, ax)?)
        },
        lower: Some(|l, i| l.concat(i)),
        ..BASE
    },
    OpDef {
        name: "Split",
        doc: "channel_slice per output (channel splits)",
        inputs: Arity::range(1, 2),
        outputs: Arity::at_least(1),
        eval: split,
        lower: Some(|l, i| l.channel_slices(i, false)),
        moves: true,
        ..BASE
    },
    OpDef {
        name: "Slice",
        doc: "channel_slice of a contiguous channel range; constant shape arithmetic is folded",
        inputs: Arity::range(3, 5),
        eval: slice,
        lower: Some(|l, i| l.channel_slices(i, true)),
        moves: true,
        ..BASE
    },
    OpDef {
        name: "Gather",
        doc: "embedding (token ids); select_token (x[:, i]); re-indexing; constant shape arithmetic is folded",
        inputs: Arity::exactly(2),
        eval: gather,
        lower: Some(|l, i| l.gather(i)),
        moves: true,
        ..BASE
    },
];

/// The size of axis `a` of `t`, the axis normalised (a scalar has none).
fn dim_of(t: &Tensor, ax: i64) -> Result<(i64, i64)> {
    if t.dim() == 0 {
        crate::bail!("the input is a scalar; it has no axis {ax}");
    }
    let ax = axis(ax, t.dim())?;
    Ok((ax, t.size()[ax as usize]))
}

fn gather(a: &Args) -> Result<Vec<Tensor>> {
    let (t, idx) = (a.x(0)?, a.x(1)?);
    let (ax, dim) = dim_of(t, a.n.int("axis", 0))?;
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
            "{} starts, {} ends, {} axes and {} steps; Slice needs as many of each",
            starts.len(),
            ends.len(),
            axes.len(),
            steps.len()
        );
    }
    let mut t = t.shallow_clone();
    for i in 0..starts.len() {
        let (ax, dim) = dim_of(&t, axes[i])?;
        let step = steps[i];
        if step == 0 {
            crate::bail!("a Slice step of 0");
        }
        if step > 0 {
            let norm = |v: i64| if v < 0 { (v + dim).max(0) } else { v.min(dim) };
            let (s, e) = (norm(starts[i]), norm(ends[i]));
            t = t.f_slice(ax, s, e.max(s), step)?;
        } else {
            // ONNX: a negative step walks down from start (clamped to 0 ..= dim − 1) to just
            // above end (clamped to −1 ..= dim − 1); exporters reverse pad lists so.
            let from_end = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            let (s, e) = (from_end(starts[i]).clamp(0, (dim - 1).max(0)), from_end(ends[i]).clamp(-1, dim - 1));
            let picked: Vec<i64> =
                if dim == 0 { Vec::new() } else { (e + 1..=s).rev().step_by(step.unsigned_abs() as usize).collect() };
            t = t.f_index_select(ax, &Tensor::from_slice(&picked))?;
        }
    }
    one(t)
}

fn split(a: &Args) -> Result<Vec<Tensor>> {
    let (n, t) = (a.n, a.x(0)?);
    let (ax, dim) = dim_of(t, n.int("axis", 0))?;
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

impl Lower<'_> {
    /// A table indexed by the token ids (an embedding, or positions computed from them, left
    /// for the sum that adds them), one token selected, or a constant re-indexing of the view.
    fn gather(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let out = &n.outputs[0];
        let (t, idx) = (&n.inputs[0], &n.inputs[1]);
        let from = n.name.clone();
        if g.is_const(t) && !g.is_const(idx) && !self.env.contains_key(idx.as_str()) {
            // Positions computed from the token ids: the sum with the embeddings maps it.
            let sources = g.input_sources(idx);
            let from_ids = sources.len() == 1
                && self.env.get(&sources[0]).is_some_and(|b| {
                    matches!(self.nodes[b.id].op.kind().input_kind(), Some(InputKind::TokenIds { .. }))
                });
            if from_ids {
                self.deferred.insert(out.clone(), (t.clone(), idx.clone()));
                return Ok(());
            }
        }
        if g.is_const(t) && !g.is_const(idx) {
            let ids = self.canonical(idx, n, "an embedding lookup")?;
            if !matches!(self.nodes[ids].op.kind().input_kind(), Some(InputKind::TokenIds { .. })) {
                return Err(self.unsupported(n, "an embedding lookup of something other than the token ids"));
            }
            let table = &g.values[t];
            let origin = g.const_origin(t);
            let base = origin.as_deref().map(strip_role).unwrap_or_else(|| g.module_name(n));
            if table.dim() != 2 {
                return Err(self.unsupported(n, "an embedding lookup in a table that is not a matrix"));
            }
            let op = Op::Embedding(Embedding { num: table.size()[0], dim: table.size()[1] });
            let id = self.add(
                &base,
                op,
                &[ids],
                vec![(Role::Weight, origin, table.shallow_clone())],
                g.values[out].size(),
                &from,
            );
            self.bind(out, id, None);
            return Ok(());
        }
        let k = &g.values[idx];
        let plain = self.env.get(t.as_str()).is_some_and(|b| b.view.is_none());
        if plain
            && self.canon[self.env[t.as_str()].id].len() == 3
            && eval::axis(n.int("axis", 0), 3)? == 1
            && k.numel() == 1
            && k.dim() == 0
        {
            let x = self.env[t.as_str()].id;
            let index = k.int64_value(&[]);
            let index = if index < 0 { index + self.canon[x][1] } else { index };
            let canon = vec![self.canon[x][0], self.canon[x][2]];
            let id =
                self.add(&g.module_name(n), Op::SelectToken(SelectToken { index }), &[x], Vec::new(), canon, &from);
            self.bind(out, id, None);
            return Ok(());
        }
        // Otherwise a re-indexing (e.g. an identity gather): only the view changes.
        if g.is_const(idx) {
            let b = self.bound(t, n)?;
            let id = b.id;
            let moved = eval::run(n, &[Some(&self.index(b)), Some(k)])?.remove(0);
            self.bind(out, id, Some(moved));
            return Ok(());
        }
        Err(self.unsupported(n, "a Gather other than an embedding lookup, a token selection or a re-indexing"))
    }

    /// Maps' channels concatenated, or a class token put before the tokens.
    fn concat(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let out = &n.outputs[0];
        let from = n.name.clone();
        let base = g.module_name(n);
        let rank = g.values[out].dim();
        let ax = eval::axis(n.int("axis", 0), rank)?;
        if n.inputs.len() == 1 {
            // `cat([x])` is x.
            let b = self.bound(&n.inputs[0], n)?;
            let (id, v) = (b.id, b.view.as_ref().map(|t| t.shallow_clone()));
            self.env.insert(out.clone(), Bound { id, view: v });
            return Ok(());
        }
        let consts: Vec<&String> = n.inputs.iter().filter(|v| g.is_const(v)).collect();
        if consts.is_empty() && (rank == 4 || rank == 2) && ax == 1 {
            let ids: Vec<NodeId> =
                n.inputs.iter().map(|v| self.canonical(v, n, "a channel concatenation")).collect::<Result<_>>()?;
            let id = self.add(&base, Op::Concat(Concat { dim: 1 }), &ids, Vec::new(), g.values[out].size(), &from);
            self.bind(out, id, None);
            return Ok(());
        }
        // Learned tokens before the tokens: constants first, then the data (a class token; a
        // distillation token or register tokens after it). One class_token per constant, the
        // last prepended first.
        let (last, prefix) = n.inputs.split_last().expect("a Concat has inputs");
        if rank == 3 && ax == 1 && !prefix.is_empty() && prefix.iter().all(|v| g.is_const(v)) && !g.is_const(last) {
            let mut x = self.canonical(last, n, "learned tokens")?;
            let dim = self.canon[x][2];
            let mut made = Vec::new();
            for v in prefix.iter().rev() {
                let tok = &g.values[v];
                let row = tok.f_narrow(0, 0, 1)?;
                let same = tok.f_sub(&row)?.f_abs()?.f_max()?.double_value(&[]) == 0.0;
                if tok.dim() != 3 || tok.size()[2] != dim || !same {
                    made.clear();
                    break;
                }
                let origin = g.const_origin(v);
                let base = origin.as_deref().map(strip_role).unwrap_or_else(|| base.clone());
                let op = Op::ClassToken(ClassToken { dim, tokens: tok.size()[1] });
                let mut canon = self.canon[x].clone();
                canon[1] += tok.size()[1];
                x = self.add(&base, op, &[x], vec![(Role::Weight, origin, row.f_contiguous()?)], canon, &from);
                made.push(x);
            }
            if let Some(&id) = made.last() {
                self.bind(out, id, None);
                return Ok(());
            }
        }
        Err(self.unsupported(n, "a concatenation other than of maps' channels or learned tokens before the tokens"))
    }

    /// A Split (`slice` false) or Slice of a map's channels: one channel_slice per output.
    fn channel_slices(&mut self, i: usize, slice: bool) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let x = self.canonical(&n.inputs[0], n, "a channel split")?;
        let canon = self.canon[x].clone();
        let from = n.name.clone();
        let base = g.module_name(n);
        let xv = &g.values[&n.inputs[0]];
        let axis_of = |o: &Tensor| -> Option<usize> { (0..xv.dim()).find(|&d| xv.size()[d] != o.size()[d]) };
        // A range of tokens (the patch tokens after a class token).
        if slice && canon.len() == 3 && axis_of(&g.values[&n.outputs[0]]) == Some(1) {
            let ov = &g.values[&n.outputs[0]];
            let starts = eval::int_list(&g.values[&n.inputs[1]])?;
            let steps = n.inputs.get(4).filter(|v| !v.is_empty()).map(|v| eval::int_list(&g.values[v])).transpose()?;
            let Some(&first) = starts.first().filter(|_| steps.is_none_or(|s| s.iter().all(|&s| s == 1))) else {
                return Err(self.unsupported(n, "a strided slice of tokens"));
            };
            let start = if first < 0 { (first + canon[1]).max(0) } else { first.min(canon[1]) };
            let length = ov.size()[1];
            if length < 1 || !xv.f_narrow(1, start, length)?.equal(ov) {
                return Err(self.unsupported(n, "a slice of tokens that is not a contiguous range"));
            }
            let c = vec![canon[0], length, canon[2]];
            let id = self.add(&base, Op::TokenSlice(TokenSlice { start, length }), &[x], Vec::new(), c, &from);
            self.bind(&n.outputs[0], id, None);
            return Ok(());
        }
        // Channels: dimension 1 of a map, the last of tokens or features (gMLP's gate split).
        let cd = view::channel_dim(&canon);
        let mut start = 0;
        for (k, o) in n.outputs.iter().enumerate() {
            let ov = &g.values[o];
            let ax = axis_of(ov);
            if canon.len() < 2 || !(ax == Some(cd) || ax.is_none()) {
                return Err(self.unsupported(n, "a slice of something other than the channels"));
            }
            let len = ov.size()[cd];
            if slice {
                let starts = eval::int_list(&g.values[&n.inputs[1]])?;
                let steps =
                    n.inputs.get(4).filter(|v| !v.is_empty()).map(|v| eval::int_list(&g.values[v])).transpose()?;
                if steps.is_some_and(|s| s.iter().any(|&s| s != 1)) {
                    return Err(self.unsupported(n, "a strided slice"));
                }
                let Some(&first) = starts.first() else {
                    return Err(self.unsupported(n, "a slice without starts"));
                };
                start = if first < 0 { (first + canon[cd]).max(0) } else { first.min(canon[cd]) };
            }
            // The slice must be exactly those channels.
            if !xv.f_narrow(cd as i64, start, len)?.equal(ov) {
                return Err(self.unsupported(n, "a slice that is not a contiguous channel range"));
            }
            let name = if n.outputs.len() > 1 { format!("{base}.{k}") } else { base.clone() };
            let mut c = canon.clone();
            c[cd] = len;
            let id = self.add(&name, Op::ChannelSlice(ChannelSlice { start, length: len }), &[x], Vec::new(), c, &from);
            self.bind(o, id, None);
            start += len;
        }
        Ok(())
    }
}
