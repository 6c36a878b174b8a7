//! Elementwise arithmetic and logic. Add, Sum and Mul carry data (sums, biases, position
//! tables, gates, scales); the others only fold shape arithmetic and masks into constants.

use super::{one, Args, Arity, OpDef, BASE, FOLDED};
use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{NodeId, Op, Role};
use crate::import::eval::{is_int, promote};
use crate::import::lower::{meaningful, strip_role, user_name, Lower};
use crate::import::proto::ONode;
use crate::import::view;
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
        lower: Some(|l, i| if l.g.model.nodes[i].inputs.len() == 2 { l.add_op(i) } else { l.sum(i) }),
        ..BASE
    },
    OpDef {
        name: "Add",
        doc: "add of two tensors; the bias of the preceding MatMul / Conv; position / segment tables (BERT, ViT)",
        inputs: Arity::exactly(2),
        eval: |a| binary(a, Tensor::f_add),
        lower: Some(|l, i| l.add_op(i)),
        ..BASE
    },
    OpDef {
        name: "Mul",
        doc: "mul (gating, squeeze-excitation); scale by a per-channel constant (layer scale); x·Sigmoid(x) → silu; \
              x·HardSigmoid(x) → hardswish",
        inputs: Arity::exactly(2),
        eval: |a| binary(a, Tensor::f_mul),
        lower: Some(|l, i| l.mul_op(i)),
        ..BASE
    },
    OpDef {
        name: "Div",
        doc: "division by a constant: scale by its reciprocal; constant shape arithmetic is folded",
        inputs: Arity::exactly(2),
        eval: |a| binary(a, |x, y| if is_int(x) { x.f_div_tensor_mode(y, "trunc") } else { x.f_div(y) }),
        lower: Some(|l, i| l.div_op(i)),
        ..BASE
    },
    OpDef {
        name: "Sub",
        doc: "sub of two tensors laid out alike (PoolFormer's pool(x) − x); constant shape arithmetic is folded",
        inputs: Arity::exactly(2),
        eval: |a| binary(a, Tensor::f_sub),
        lower: Some(|l, i| l.sub_op(i)),
        ..BASE
    },
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
    unary("Sqrt", |a| one(a.x(0)?.f_sqrt()?)),
    unary("Reciprocal", |a| one(a.x(0)?.f_reciprocal()?)),
    unary("Exp", |a| one(a.x(0)?.f_exp()?)),
    // "Same" padding computed from the input size (TensorFlow ports), sinusoidal position
    // tables built from a grid (EdgeNeXt).
    unary("Ceil", |a| one(a.x(0)?.f_ceil()?)),
    unary("Floor", |a| one(a.x(0)?.f_floor()?)),
    unary("Sin", |a| one(a.x(0)?.f_sin()?)),
    unary("Cos", |a| one(a.x(0)?.f_cos()?)),
    unary("Log", |a| one(a.x(0)?.f_log()?)),
    // Two operands only (ONNX allows more; exporters' shape arithmetic uses two).
    two("Max", FOLDED, |a| binary(a, Tensor::f_maximum)),
    two("Min", FOLDED, |a| binary(a, Tensor::f_minimum)),
    two("Mod", FOLDED, |a| binary(a, Tensor::f_remainder_tensor)),
];

impl Lower<'_> {
    /// A sum of several tensors laid out alike (relprune's own export writes residual adds so).
    fn sum(&mut self, i: usize) -> Result<()> {
        let n = &self.g.model.nodes[i];
        let first = self.bound(&n.inputs[0], n)?;
        let (view, canon) = (first.view.as_ref().map(|t| t.shallow_clone()), self.canon[first.id].clone());
        let index = self.index(first);
        let mut ids = Vec::new();
        for v in &n.inputs {
            let b = self.bound(v, n)?;
            if self.canon[b.id] != canon || !self.index(b).equal(&index) {
                return Err(self.unsupported(n, "a sum of tensors laid out differently (broadcast)"));
            }
            ids.push(b.id);
        }
        let id = self.add(&self.g.module_name(n), Op::Add(Add), &ids, Vec::new(), canon, &n.name);
        self.bind(&n.outputs[0], id, view);
        Ok(())
    }

    /// Whether `id` is a bias-free affine layer whose output only `value` reads.
    fn takes_bias(&self, id: NodeId, value: &str) -> bool {
        let free = self.nodes[id].op.kind().bias_flag() == Some(false);
        free && self.g.consumers(value).len() == 1 && self.env.values().filter(|b| b.id == id).count() == 1
    }

    /// A sum of two tensors; a constant added to one: the bias of the affine layer before it, or
    /// a position or segment table; positions computed from the token ids: RoBERTa's table.
    fn add_op(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let (a, b) = (&n.inputs[0], &n.inputs[1]);
        if let Some((other, (table, pos))) =
            [(b, a), (a, b)].iter().find_map(|(o, d)| self.deferred.get(d.as_str()).map(|t| (*o, t.clone())))
        {
            return self.token_positions(n, other, &table, &pos);
        }
        match (g.is_const(a), g.is_const(b)) {
            (false, false) => {
                let (x, y, v) = self.aligned(n, a, b, "a sum")?;
                let canon = self.canon[x].clone();
                let id = self.add(&g.module_name(n), Op::Add(Add), &[x, y], Vec::new(), canon, &n.name);
                self.bind(&n.outputs[0], id, v);
                Ok(())
            }
            (true, false) => self.add_constant(n, b, a),
            (false, true) => self.add_constant(n, a, b),
            (true, true) => unreachable!("constant sums are folded"),
        }
    }

    /// The nodes of two data values laid out alike, and their common view: as bound, or else
    /// both made canonical (tokens on one side and a map's patches seen as tokens on the other,
    /// around a token-mixing block).
    fn aligned(&mut self, n: &ONode, a: &str, b: &str, what: &str) -> Result<(NodeId, NodeId, Option<Tensor>)> {
        let (ba, bb) = (self.bound(a, n)?, self.bound(b, n)?);
        let (ia, ib) = (self.index(ba), self.index(bb));
        if ia.size() == ib.size() && ia.equal(&ib) && self.canon[ba.id] == self.canon[bb.id] {
            return Ok((ba.id, bb.id, ba.view.as_ref().map(|t| t.shallow_clone())));
        }
        if ba.view.is_some() || bb.view.is_some() {
            let (x, y) = (self.canonical(a, n, what)?, self.canonical(b, n, what)?);
            if self.canon[x] == self.canon[y] {
                return Ok((x, y, None));
            }
        }
        Err(self.unsupported(n, &format!("{what} of tensors laid out differently (broadcast)")))
    }

    /// A difference of two tensors laid out alike.
    fn sub_op(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let (a, b) = (&n.inputs[0], &n.inputs[1]);
        if g.is_const(a) || g.is_const(b) {
            return Err(self.unsupported(n, "subtracting a constant from data, or data from a constant"));
        }
        let (x, y, v) = self.aligned(n, a, b, "a difference")?;
        let canon = self.canon[x].clone();
        let id = self.add(&g.module_name(n), Op::Sub(Sub), &[x, y], Vec::new(), canon, &n.name);
        self.bind(&n.outputs[0], id, v);
        Ok(())
    }

    /// Data `dv` plus constant `cv`: the bias of the affine layer that computes `dv`, else a
    /// position or segment table added to tokens.
    fn add_constant(&mut self, n: &ONode, dv: &str, cv: &str) -> Result<()> {
        let g = self.g;
        let c = &g.values[cv];
        let bnd = self.bound(dv, n)?;
        let (id, idx) = (bnd.id, self.index(bnd));
        let canon = self.canon[id].clone();
        let ch = canon[view::channel_dim(&canon)];
        let per_channel = c.numel() as i64 == ch && view::channels_last(&idx, &canon)
            || (canon.len() == 4
                && bnd.view.is_none()
                && c.size().iter().rev().take(2).all(|&d| d == 1)
                && c.numel() as i64 == ch);
        // One shift per token of tokens seen transposed, (B, C, T): a token linear layer's bias.
        let per_token = canon.len() == 3
            && c.size().last() == Some(&canon[1])
            && c.numel() as i64 == canon[1]
            && view::is_transposed_tokens(&idx, &canon);
        if per_token && self.takes_bias(id, dv) {
            return self.absorb_bias(n, id, dv, cv);
        }
        // One shift for every channel of a scaled value (HGNetV2's learnable affine block).
        let shared = c.numel() == 1 && self.nodes[id].op.kind().bias_flag().is_some();
        if (per_channel || shared) && self.takes_bias(id, dv) {
            return self.absorb_bias(n, id, dv, cv);
        }
        // Adding literal zeros (a branch that is absent, written `out = 0 + …`: MobileOne): the
        // value itself. Zeros from an initializer are a parameter (a freshly initialised bias)
        // and were taken above where they are one.
        let literal = g.const_origin(cv).is_none_or(|o| !g.model.inits.contains_key(&o));
        let same_shape = g.values[&n.outputs[0]].size() == g.values[dv].size();
        if literal && same_shape && c.f_abs()?.f_max()?.double_value(&[]) == 0.0 {
            let v = self.env[dv].view.as_ref().map(|t| t.shallow_clone());
            self.env.insert(n.outputs[0].clone(), crate::import::lower::Bound { id, view: v });
            return Ok(());
        }
        // A table with a plane per channel added to a map (Visformer).
        if canon.len() == 4 && bnd.view.is_none() && c.size() == [1, canon[1], canon[2], canon[3]] {
            let op = Op::MapPositionEmbedding(MapPositionEmbedding {
                channels: canon[1],
                height: canon[2],
                width: canon[3],
            });
            let origin = g.const_origin(cv);
            let base = origin.as_deref().map(strip_role).unwrap_or_else(|| g.module_name(n));
            let id = self.add(&base, op, &[id], vec![(Role::Weight, origin, c.shallow_clone())], canon, &n.name);
            self.bind(&n.outputs[0], id, None);
            return Ok(());
        }
        // Tokens seen as a map's patches (a ViT without class token, CaiT, DINOv2 with register
        // tokens): the table is added to the tokens.
        let id = if bnd.view.is_some() { self.canonical(dv, n, "a position table")? } else { id };
        let canon = self.canon[id].clone();
        if canon.len() != 3 {
            return Err(self.unsupported(n, "adding a constant that is neither a bias nor a position or segment table"));
        }
        let (t, dim) = (canon[1], canon[2]);
        let op_params = match g.table_rows(cv) {
            Some((table, rows)) if rows == (0..t).collect::<Vec<_>>() => {
                let tv = &g.values[&table];
                let op = Op::PositionEmbedding(PositionEmbedding { max_len: tv.size()[0], dim, leading_one: false });
                Some((op, g.const_origin(&table), tv.shallow_clone()))
            }
            Some((table, rows)) if rows.iter().all(|&r| r == 0) => {
                let tv = &g.values[&table];
                Some((
                    Op::SegmentEmbedding(SegmentEmbedding { types: tv.size()[0], dim }),
                    g.const_origin(&table),
                    tv.shallow_clone(),
                ))
            }
            _ if c.size() == [1, t, dim] => Some((
                Op::PositionEmbedding(PositionEmbedding { max_len: t, dim, leading_one: true }),
                g.const_origin(cv),
                c.shallow_clone(),
            )),
            // One row added to every token: a segment table of one type (relprune's own
            // export writes its segment embedding so).
            _ if c.numel() as i64 == dim && c.size().last() == Some(&dim) => Some((
                Op::SegmentEmbedding(SegmentEmbedding { types: 1, dim }),
                g.const_origin(cv),
                c.f_reshape([1, dim])?,
            )),
            _ => None,
        };
        let Some((op, origin, table)) = op_params else {
            return Err(self.unsupported(n, "adding a constant that is neither a bias nor a position or segment table"));
        };
        let base = origin.as_deref().map(strip_role).unwrap_or_else(|| g.module_name(n));
        let id = self.add(&base, op, &[id], vec![(Role::Weight, origin, table)], canon, &n.name);
        self.bind(&n.outputs[0], id, None);
        Ok(())
    }

    /// Constant `cv` becomes the bias of node `id` (MatMul + Add), which computes `dv`.
    fn absorb_bias(&mut self, n: &ONode, id: NodeId, dv: &str, cv: &str) -> Result<()> {
        *self.nodes[id].op.kind_mut().bias_flag_mut().expect("takes_bias checked the op") = true;
        let shape = self.nodes[id].op.kind().params().into_iter().find(|p| p.role == Role::Bias).map(|p| p.shape);
        let shape = shape.expect("an op with a bias flag declares its bias");
        let mut bias = self.g.values[cv].f_flatten(0, -1)?;
        let count: i64 = shape.iter().product();
        // A shift shared by every channel is the user's parameter no more: it gets the node's name.
        let own = bias.numel() as i64 == count;
        if !own || shape.len() > 1 {
            bias = bias.f_expand([count], false)?.f_contiguous()?.f_reshape(shape.as_slice())?;
        }
        let key = self
            .g
            .const_origin(cv)
            .filter(|_| own)
            .map(|k| user_name(&k).to_string())
            .filter(|k| meaningful(k) && !self.keys.contains(k))
            .unwrap_or_else(|| format!("{}.bias", self.nodes[id].name));
        self.keys.insert(key.clone());
        self.params.insert(key.clone(), bias);
        self.nodes[id].params.insert(Role::Bias, key);
        let v = self.env[dv].view.as_ref().map(|t| t.shallow_clone());
        // The value before the bias is no longer what the node computes.
        self.checked.retain(|c| c != dv);
        self.bind(&n.outputs[0], id, v);
        self.from[id] = format!("{} + {}", self.from[id], n.name);
        Ok(())
    }

    /// `x + table[positions(ids)]` with RoBERTa's padding-aware positions, checked on the
    /// example input.
    fn token_positions(&mut self, n: &ONode, x: &str, table: &str, pos: &str) -> Result<()> {
        let g = self.g;
        let xid = self.canonical(x, n, "a position table")?;
        let ids_name = g.input_sources(pos).remove(0);
        let ids = self.env[&ids_name].id;
        let tv = &g.values[table];
        if tv.dim() != 2 {
            return Err(self.unsupported(n, "a position table that is not a matrix"));
        }
        let want = g.values[pos].f_to_kind(Kind::Int64)?;
        let ids_v = &g.values[&ids_name];
        // The padding id is one of the integer constants the positions are computed with.
        let mut candidates: Vec<i64> = g
            .upstream(pos)
            .0
            .iter()
            .flat_map(|&k| g.model.nodes[k].inputs.iter())
            .filter(|v| g.is_const(v) && !g.values[*v].is_floating_point() && g.values[*v].numel() == 1)
            .map(|v| g.values[v].f_flatten(0, -1).and_then(|t| t.f_int64_value(&[0])).unwrap_or(-1))
            .collect();
        candidates.extend([0, 1]);
        let found = candidates.into_iter().filter(|&p| p >= 0 && p < tv.size()[0]).find(|&p| {
            let op = TokenPositionEmbedding { max_len: tv.size()[0], dim: tv.size()[1], padding_idx: p };
            op.positions(ids_v).is_ok_and(|got| got.size() == want.size() && got.equal(&want))
        });
        let Some(padding_idx) = found else {
            return Err(
                self.unsupported(n, "positions computed from the token ids other than RoBERTa's padding-aware count")
            );
        };
        let op = Op::TokenPositionEmbedding(TokenPositionEmbedding {
            max_len: tv.size()[0],
            dim: tv.size()[1],
            padding_idx,
        });
        let origin = g.const_origin(table);
        let base = origin.as_deref().map(strip_role).unwrap_or_else(|| g.module_name(n));
        let canon = self.canon[xid].clone();
        let id = self.add(&base, op, &[xid, ids], vec![(Role::Weight, origin, tv.shallow_clone())], canon, &n.name);
        self.bind(&n.outputs[0], id, None);
        Ok(())
    }

    /// A product of two tensors (a gate); a tensor times a constant: a per-channel scale.
    fn mul_op(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let out = &n.outputs[0];
        let (a, b) = (&n.inputs[0], &n.inputs[1]);
        let from = n.name.clone();
        let base = g.module_name(n);
        if !g.is_const(a) && !g.is_const(b) {
            let (ba, bb) = (self.bound(a, n)?, self.bound(b, n)?);
            if ba.view.is_some() || bb.view.is_some() {
                return Err(self.unsupported(n, "a product of reshaped tensors"));
            }
            let (x, gate) = if g.values[a].numel() >= g.values[b].numel() { (ba.id, bb.id) } else { (bb.id, ba.id) };
            let canon = self.canon[x].clone();
            let id = self.add(&base, Op::Mul(Mul), &[x, gate], Vec::new(), canon, &from);
            self.bind(out, id, None);
            return Ok(());
        }
        let (dv, cv) = if g.is_const(a) { (b, a) } else { (a, b) };
        self.scale_by(n, dv, &g.values[cv], g.const_origin(cv))
    }

    /// Data divided by a constant: a scale by its reciprocal (DeiT's mean of two heads' logits).
    fn div_op(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let (a, b) = (&n.inputs[0], &n.inputs[1]);
        if g.is_const(a) || !g.is_const(b) {
            return Err(self.unsupported(n, "a division other than of data by a constant"));
        }
        let c = g.values[b].f_to_kind(Kind::Float)?.f_reciprocal()?;
        self.scale_by(n, a, &c, None)
    }

    /// Data `dv` times constant `c` (from initializer `origin`, if any): a scale per channel.
    fn scale_by(&mut self, n: &ONode, dv: &str, c: &Tensor, origin: Option<String>) -> Result<()> {
        let g = self.g;
        let (out, from, base) = (&n.outputs[0], n.name.clone(), g.module_name(n));
        let bnd = self.bound(dv, n)?;
        let (id, canon, idx) = (bnd.id, self.canon[bnd.id].clone(), self.index(bnd));
        let view = bnd.view.as_ref().map(|t| t.shallow_clone());
        let ch = canon[view::channel_dim(&canon)];
        // A factor per channel (or one for all), broadcast along the channels as the value is
        // laid out: a map as it is (C, 1, 1), or anything whose last axis is the channels.
        let along = if view.is_none() && canon.len() == 4 {
            c.size().iter().rev().take(2).all(|&d| d == 1)
        } else {
            view::channels_last(&idx, &canon) && (c.numel() == 1 || c.size().last() == Some(&ch))
        };
        if !(along && (c.numel() as i64 == ch || c.numel() == 1)) {
            return Err(self.unsupported(n, "multiplying by a constant other than a factor per channel"));
        }
        let scale = Scale { channels: ch, last: canon.len() != 4, bias: false };
        let w =
            c.f_flatten(0, -1)?.f_expand([ch], false)?.f_contiguous()?.f_reshape(scale.params()[0].shape.as_slice())?;
        let base = origin.as_deref().map(strip_role).unwrap_or(base);
        let origin = origin.filter(|_| c.numel() as i64 == ch);
        let nid = self.add(&base, Op::Scale(scale), &[id], vec![(Role::Weight, origin, w)], canon, &from);
        self.bind(out, nid, view);
        Ok(())
    }
}
