//! Reductions and normalisations: means over maps, LayerNorm, and the cumulative sum of
//! RoBERTa's positions.

use super::{float_attr, one, Args, Arity, OpDef, BASE, FOLDED};
use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::Op;
use crate::import::eval::{axis, int_list};
use crate::import::lower::{weight_base, Lower};
use crate::import::{eval, view};
use tch::{Kind, Tensor};

pub(super) const MAPPED: &[OpDef] = &[
    OpDef {
        name: "ReduceMean",
        doc: "over height and width: adaptive_avg_pool2d to 1×1; over the tokens: mean_pool; with Sub / Pow / Sqrt / \
              Div: layer_norm",
        inputs: Arity::range(1, 2),
        eval: |a| reduce(a, |t, axes, keep| t.f_mean_dim(axes, keep, t.kind())),
        lower: Some(|l, i| l.reduce_mean(i)),
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
        lower: Some(|l, i| l.layer_normalization(i)),
        ..BASE
    },
    OpDef {
        name: "InstanceNormalization",
        doc: "with the Reshapes, Mul and Add around it: group_norm (PyTorch's GroupNorm; InstanceNorm2d alone)",
        inputs: Arity::exactly(3),
        attrs: |n| float_attr(n, "epsilon"),
        eval: |a| {
            let (t, s, b) = (a.x(0)?, a.x(1)?, a.x(2)?);
            if t.dim() < 3 || s.numel() as i64 != t.size()[1] || b.numel() as i64 != t.size()[1] {
                crate::bail!(
                    "needs (N, C, …) with C scales and shifts, gets {:?}, {:?}, {:?}",
                    t.size(),
                    s.size(),
                    b.size()
                );
            }
            let eps = a.n.float("epsilon", 1e-5) as f64;
            one(t.f_instance_norm(Some(s), Some(b), None::<&Tensor>, None::<&Tensor>, true, 0.0, eps, false)?)
        },
        lower: Some(|l, i| {
            let n = &l.g.model.nodes[i];
            Err(l.unsupported(n, "an instance norm that is not PyTorch's GroupNorm or InstanceNorm2d over a map"))
        }),
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
        let Some(&ax) = int_list(a.x(1)?)?.first() else { crate::bail!("the axis input is empty") };
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

impl Lower<'_> {
    /// A mean over a map's height and width: adaptive_avg_pool2d.
    fn reduce_mean(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let base = g.module_name(n);
        let from = n.name.clone();
        let out = n.outputs[0].clone();
        let x = self.canonical(&n.inputs[0], n, "a mean")?;
        let xs: Vec<Option<&Tensor>> =
            n.inputs.iter().map(|v| if v.is_empty() { None } else { g.values.get(v) }).collect();
        let rank = self.canon[x].len();
        let axes = match (n.ints("axes"), xs.get(1).copied().flatten()) {
            (Some(a), _) => a.to_vec(),
            (None, Some(t)) => eval::int_list(t)?,
            _ => Vec::new(),
        };
        let mut axes: Vec<i64> = axes.iter().map(|&a| eval::axis(a, rank)).collect::<Result<_>>()?;
        axes.sort_unstable();
        if rank == 3 && axes == [1] {
            // The mean of the tokens (a pooled classifier: MLP-Mixer, ResMLP, BEiT).
            let pooled = vec![self.canon[x][0], self.canon[x][2]];
            let id = self.add(&base, Op::MeanPool(MeanPool), &[x], Vec::new(), pooled.clone(), &from);
            let v = view::identity(&pooled).reshape(g.values[&out].size().as_slice());
            self.bind(&out, id, Some(v));
            return Ok(());
        }
        if rank != 4 || axes != [2, 3] {
            return Err(self.unsupported(n, "a mean over axes other than a map's height and width or the tokens"));
        }
        let canon = vec![self.canon[x][0], self.canon[x][1], 1, 1];
        let id = self.add(
            &base,
            Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [1, 1] }),
            &[x],
            Vec::new(),
            canon.clone(),
            &from,
        );
        let v = view::identity(&canon).reshape(g.values[&out].size().as_slice());
        self.bind(&out, id, Some(v));
        Ok(())
    }

    /// LayerNormalization over the last axis.
    fn layer_normalization(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let base = g.module_name(n);
        let from = n.name.clone();
        let out = n.outputs[0].clone();
        let x = &n.inputs[0];
        let rank = g.values[x].dim();
        if eval::axis(n.int("axis", -1), rank)? != rank as i64 - 1 {
            return Err(self.unsupported(n, "LayerNormalization over more than the last axis"));
        }
        let c = *g.values[x].size().last().unwrap_or(&0);
        let gamma = match self.cval(n, 1) {
            Some(t) => (g.const_origin(&n.inputs[1]), t.f_flatten(0, -1)?),
            None => (None, Tensor::f_ones([c], (Kind::Float, crate::device::HOST))?),
        };
        let beta = match self.cval(n, 2) {
            Some(t) => (g.const_origin(&n.inputs[2]), t.f_flatten(0, -1)?),
            None => (None, Tensor::f_zeros([c], (Kind::Float, crate::device::HOST))?),
        };
        let base = weight_base(g, n, 1).unwrap_or(base);
        self.layer_norm(&out, &base, x, n.float("epsilon", 1e-5) as f64, gamma, beta, n, &from)?;
        Ok(())
    }
}
