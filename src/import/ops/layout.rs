//! Layout operators: they only reshape, transpose or pass on their input, so lowering runs them
//! on the view's index tensor (see [`crate::import::view`]) instead of adding a relprune op.

use super::{one, Args, Arity, OpDef, BASE};
use crate::error::{Error, Result};
use crate::import::eval;
use crate::import::eval::{axis, int_list};
use crate::import::lower::{Bound, Lower};
use tch::Tensor;

pub(super) const OPS: &[OpDef] = &[
    OpDef {
        name: "Reshape",
        doc: "absorbed: tracked as a view (flatten, head split and merge, patches to tokens)",
        inputs: Arity::exactly(2),
        eval: reshape,
        layout: true,
        keeps_values: true,
        lower: Some(|l, i| l.layout_view(i)),
        moves: true,
        ..BASE
    },
    OpDef {
        name: "Transpose",
        doc: "absorbed: tracked as a view (channels-last, (T, B, E) attention layout)",
        eval: |a| {
            let t = a.x(0)?;
            let perm: Vec<i64> = match a.n.ints("perm") {
                Some(p) => p.to_vec(),
                None => (0..t.dim() as i64).rev().collect(),
            };
            one(t.f_permute(perm.as_slice())?)
        },
        layout: true,
        keeps_values: true,
        lower: Some(|l, i| l.layout_view(i)),
        moves: true,
        ..BASE
    },
    OpDef {
        name: "Flatten",
        doc: "absorbed: a flatten node where a linear layer reads a map",
        eval: |a| {
            let t = a.x(0)?;
            let ax = axis(a.n.int("axis", 1), t.dim() + 1)?;
            let lead: i64 = t.size()[..ax as usize].iter().product();
            one(t.f_reshape([lead, -1])?)
        },
        layout: true,
        lower: Some(|l, i| l.layout_view(i)),
        moves: true,
        ..BASE
    },
    OpDef {
        name: "Squeeze",
        doc: "absorbed: tracked as a view",
        inputs: Arity::range(1, 2),
        eval: |a| {
            let t = a.x(0)?;
            let axes = match (a.n.ints("axes"), a.opt(1)) {
                (Some(x), _) => x.to_vec(),
                (None, Some(x)) => int_list(x)?,
                (None, None) => (0..t.dim() as i64).filter(|&d| t.size()[d as usize] == 1).collect(),
            };
            let mut axes: Vec<i64> = axes.iter().map(|&x| axis(x, t.dim())).collect::<Result<_>>()?;
            axes.sort_unstable();
            let mut t = t.shallow_clone();
            for &x in axes.iter().rev() {
                t = t.f_squeeze_dim(x)?;
            }
            one(t)
        },
        layout: true,
        keeps_values: true,
        lower: Some(|l, i| l.layout_view(i)),
        moves: true,
        ..BASE
    },
    OpDef {
        name: "Unsqueeze",
        doc: "absorbed: tracked as a view",
        inputs: Arity::range(1, 2),
        eval: |a| {
            let t = a.x(0)?;
            let axes = match (a.n.ints("axes"), a.opt(1)) {
                (Some(x), _) => x.to_vec(),
                (None, Some(x)) => int_list(x)?,
                _ => crate::bail!("no axes"),
            };
            let out_rank = t.dim() + axes.len();
            let mut axes: Vec<i64> = axes.iter().map(|&x| axis(x, out_rank)).collect::<Result<_>>()?;
            axes.sort_unstable();
            let mut t = t.shallow_clone();
            for &x in &axes {
                t = t.f_unsqueeze(x)?;
            }
            one(t)
        },
        layout: true,
        keeps_values: true,
        lower: Some(|l, i| l.layout_view(i)),
        moves: true,
        ..BASE
    },
    OpDef {
        name: "Identity",
        doc: "dropped",
        eval: |a| one(a.x(0)?.shallow_clone()),
        layout: true,
        keeps_values: true,
        lower: Some(|l, i| l.pass_on(i)),
        moves: true,
        ..BASE
    },
    OpDef {
        name: "Dropout",
        doc: "dropped (inference)",
        // The ratio and training mode; the mask may follow the output.
        inputs: Arity::range(1, 3),
        outputs: Arity::range(1, 2),
        eval: |a| one(a.x(0)?.shallow_clone()),
        layout: true,
        lower: Some(|l, i| l.pass_on(i)),
        ..BASE
    },
];

fn reshape(a: &Args) -> Result<Vec<Tensor>> {
    let t = a.x(0)?;
    let mut shape = int_list(a.x(1)?)?;
    if a.n.int("allowzero", 0) == 0 {
        for (i, d) in shape.iter_mut().enumerate() {
            if *d == 0 {
                *d = *t.size().get(i).ok_or_else(|| Error::invalid("a 0 in the shape past the input's rank"))?;
            }
        }
    }
    one(t.f_reshape(shape.as_slice())?)
}

impl Lower<'_> {
    /// Identity and Dropout: the output is the input.
    fn pass_on(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let out = n.outputs[0].clone();
        let b = self.bound(&n.inputs[0], n)?;
        let (id, v) = (b.id, b.view.as_ref().map(|v| v.shallow_clone()));
        self.env.insert(out, Bound { id, view: v });
        Ok(())
    }

    /// A layout op: run on the view's index tensor, the output is a new view of the same node.
    fn layout_view(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let out = n.outputs[0].clone();
        let b = self.bound(&n.inputs[0], n)?;
        let id = b.id;
        let idx = self.index(b);
        let mut xs: Vec<Option<&Tensor>> = vec![Some(&idx)];
        for v in &n.inputs[1..] {
            xs.push(if v.is_empty() { None } else { Some(&g.values[v]) });
        }
        let moved = eval::run(n, &xs)?.remove(0);
        self.bind(&out, id, Some(moved));
        Ok(())
    }
}
