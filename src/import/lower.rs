//! Maps the ONNX graph, after folding and fusion, onto relprune's ops. Each ONNX value that
//! carries data (not a folded constant) is bound to a relprune node and a [`view`] of it.

use super::fuse::{Fused, Unit};
use super::proto::ONode;
use super::{ops, view, OnnxGraph};
use crate::error::{Error, Result};
use crate::graph::ops::*;
use crate::graph::{InputKind, Node, NodeId, Op, ParamStore, Role};
use std::collections::{BTreeMap, HashMap, HashSet};
use tch::{Kind, Tensor};

/// A relprune node output as an ONNX value sees it.
pub struct Bound {
    /// The relprune node.
    pub id: NodeId,
    /// Canonical index of each element of the ONNX value (None: the value is the canonical tensor).
    pub view: Option<Tensor>,
}

/// The relprune graph under construction.
pub struct Lower<'g> {
    pub(super) g: &'g OnnxGraph,
    /// Relprune nodes so far.
    pub nodes: Vec<Node>,
    /// Their parameters.
    pub params: ParamStore,
    /// Graph inputs (relprune node ids).
    pub inputs: Vec<NodeId>,
    /// Canonical shape of each node's output on the example input.
    pub canon: Vec<Vec<i64>>,
    /// ONNX value → relprune node.
    pub env: HashMap<String, Bound>,
    /// The ONNX nodes each relprune node came from, for `relprune info` and error messages.
    pub from: Vec<String>,
    /// Values bound by a lowering step (checked against the file after the build).
    pub checked: Vec<String>,
    names: HashSet<String>,
    pub(super) keys: HashSet<String>,
    /// Table lookups by positions computed from the token ids (RoBERTa), waiting for the sum
    /// that adds them to the embeddings: value → (table, positions).
    pub(super) deferred: HashMap<String, (String, String)>,
}

/// A parameter: its role, the initializer's name if meaningful, the tensor.
pub(super) type P = (Role, Option<String>, Tensor);

impl<'g> Lower<'g> {
    /// An empty graph over `g`.
    pub fn new(g: &'g OnnxGraph) -> Self {
        Lower {
            g,
            nodes: Vec::new(),
            params: ParamStore::default(),
            inputs: Vec::new(),
            canon: Vec::new(),
            env: HashMap::new(),
            from: Vec::new(),
            checked: Vec::new(),
            names: HashSet::new(),
            keys: HashSet::new(),
            deferred: HashMap::new(),
        }
    }

    fn unique_name(&mut self, base: &str, op: &str) -> String {
        let base = if base.is_empty() { op.to_string() } else { base.to_string() };
        let mut name = base.clone();
        if self.names.contains(&name) {
            name = format!("{base}.{op}");
            let mut k = 1;
            while self.names.contains(&name) {
                name = format!("{base}.{op}_{k}");
                k += 1;
            }
        }
        self.names.insert(name.clone());
        name
    }

    /// Adds a node. `params` give (role, the initializer's name if meaningful, tensor).
    pub(super) fn add(
        &mut self,
        base: &str,
        op: Op,
        inputs: &[NodeId],
        params: Vec<P>,
        canon: Vec<i64>,
        from: &str,
    ) -> NodeId {
        let name = self.unique_name(base, op.kind_name());
        let mut map = BTreeMap::new();
        for (role, init, t) in params {
            let init = init.map(|k| user_name(&k).to_string());
            let key = match init.filter(|k| meaningful(k) && !self.keys.contains(k)) {
                Some(k) => k,
                None => {
                    let mut k = format!("{name}.{role}");
                    while self.keys.contains(&k) {
                        k.push('_');
                    }
                    k
                }
            };
            self.keys.insert(key.clone());
            self.params.insert(key.clone(), t);
            map.insert(role, key);
        }
        self.nodes.push(Node { name, op, inputs: inputs.to_vec(), params: map });
        self.canon.push(canon);
        self.from.push(from.to_string());
        self.nodes.len() - 1
    }

    /// Binds ONNX value `value` to node `id` seen through `view`, and checks it after the build.
    pub(super) fn bind(&mut self, value: &str, id: NodeId, view: Option<Tensor>) {
        let view = view.filter(|v| !view::is_identity(v, &self.canon[id]));
        self.env.insert(value.to_string(), Bound { id, view });
        self.checked.push(value.to_string());
    }

    /// The binding of a data value (an error naming `at` if it has none).
    pub(super) fn bound(&self, v: &str, at: &ONode) -> Result<&Bound> {
        self.env.get(v).ok_or_else(|| {
            if self.g.is_const(v) {
                Error::invalid(format!("{}: input `{v}` is a constant where relprune expects data", at.describe()))
            } else {
                Error::invalid(format!(
                    "{}: input `{v}` comes from a part of the graph relprune could not map",
                    at.describe()
                ))
            }
        })
    }

    /// The canonical index of each element of a bound value.
    pub(super) fn index(&self, b: &Bound) -> Tensor {
        b.view.as_ref().map(|v| v.shallow_clone()).unwrap_or_else(|| view::identity(&self.canon[b.id]))
    }

    /// The bound value as a canonical tensor: a map's patches seen as tokens become a
    /// `patches_to_tokens` node, a map seen flattened a `flatten` node; other views are errors.
    pub(super) fn canonical(&mut self, v: &str, at: &ONode, what: &str) -> Result<NodeId> {
        let b = self.bound(v, at)?;
        let Some(idx) = b.view.as_ref().map(|t| t.shallow_clone()) else { return Ok(b.id) };
        let id = b.id;
        let canon = self.canon[id].clone();
        let name = self.nodes[id].name.clone();
        let (op, shape) = if view::is_patches_to_tokens(&idx, &canon) {
            (Op::PatchesToTokens(PatchesToTokens), vec![canon[0], canon[2] * canon[3], canon[1]])
        } else if view::is_flatten_of_map(&idx, &canon) {
            (Op::Flatten(Flatten { start_dim: 1 }), vec![canon[0], canon[1] * canon[2] * canon[3]])
        } else {
            return Err(self.unsupported(at, &format!("{what} reads a reshaped or transposed tensor")));
        };
        let kind = op.kind_name();
        let n = self.add(&format!("{name}.{kind}"), op, &[id], Vec::new(), shape, &at.name);
        self.env.insert(v.to_string(), Bound { id: n, view: None });
        Ok(n)
    }

    /// The error for a node relprune cannot map, saying why.
    pub(super) fn unsupported(&self, at: &ONode, why: &str) -> Error {
        Error::invalid(format!(
            "cannot import {}: {why}. What relprune reads is listed in docs/import-onnx.md",
            at.describe()
        ))
    }

    /// Declares the graph inputs.
    pub fn inputs(&mut self, kinds: &[(String, InputKind)]) {
        for (name, kind) in kinds {
            let shape = self.g.values[name].size();
            let id = self.add(&clean(name), Op::Input(kind.clone()), &[], Vec::new(), shape, name);
            self.inputs.push(id);
            self.bind(name, id, None);
        }
    }

    /// Lowers one fused unit.
    pub fn unit(&mut self, u: &Unit) -> Result<()> {
        let g = self.g;
        let at = &g.model.nodes[*u.nodes.iter().next_back().expect("non-empty")];
        let base = g.module_name(at);
        let b = self.bound(&u.input, at)?;
        let (id, bview) = (b.id, b.view.as_ref().map(|v| v.shallow_clone()));
        let from = format!(
            "{} ONNX nodes from `{}`",
            u.nodes.len(),
            g.model.nodes[*u.nodes.iter().next().expect("non-empty")].name
        );
        match &u.kind {
            Fused::Gelu { tanh } => {
                self.elementwise(&u.output, &base, Op::Gelu(Gelu { tanh: *tanh }), id, bview, &from)
            }
            Fused::Silu => self.elementwise(&u.output, &base, Op::Silu(Silu), id, bview, &from),
            Fused::Hardswish => self.elementwise(&u.output, &base, Op::Hardswish(Hardswish), id, bview, &from),
            Fused::LayerNorm { eps, gamma, beta } => {
                let c = *g.values[&u.input].size().last().unwrap_or(&0);
                let gt = match gamma {
                    Some(v) => (g.const_origin(v), g.values[v].f_flatten(0, -1)?),
                    None => (None, Tensor::f_ones([c], (Kind::Float, crate::device::HOST))?),
                };
                let bt = match beta {
                    Some(v) => (g.const_origin(v), g.values[v].f_flatten(0, -1)?),
                    None => (None, Tensor::f_zeros([c], (Kind::Float, crate::device::HOST))?),
                };
                self.layer_norm(&u.output, &base, &u.input, *eps, gt, bt, at, &from)?;
            }
            Fused::GroupNorm { groups, eps, gamma, beta } => {
                let x = self.canonical(&u.input, at, "a GroupNorm")?;
                let canon = self.canon[x].clone();
                if canon.len() != 4 {
                    return Err(self.unsupported(at, "GroupNorm over something other than a map"));
                }
                let c = canon[1];
                let param = |v: &Option<String>, fill: f64| -> Result<(Option<String>, Tensor)> {
                    Ok(match v {
                        Some(v) => (g.const_origin(v), g.values[v].f_flatten(0, -1)?),
                        None => (None, Tensor::f_full([c], fill, (Kind::Float, crate::device::HOST))?),
                    })
                };
                let (gt, bt) = (param(gamma, 1.0)?, param(beta, 0.0)?);
                let op = Op::GroupNorm(GroupNorm { groups: *groups, channels: c, eps: *eps });
                let params = vec![(Role::Weight, gt.0, gt.1), (Role::Bias, bt.0, bt.1)];
                let id = self.add(&base, op, &[x], params, canon, &from);
                self.bind(&u.output, id, None);
            }
            Fused::Attention { heads, projections, mask } => {
                let mut ins = Vec::new();
                let mut in_view = None;
                for p in projections {
                    let b = self.bound(p, at)?;
                    let idx = self.index(b);
                    if self.canon[b.id].len() != 3 || !view::channels_last(&idx, &self.canon[b.id]) {
                        return Err(self.unsupported(at, "attention's projections are not token features"));
                    }
                    if in_view.is_none() {
                        in_view = Some((idx, self.canon[b.id].clone()));
                    }
                    ins.push(b.id);
                }
                let width: i64 = projections.iter().map(|p| *g.values[p].size().last().unwrap_or(&0)).sum();
                let e = width / 3;
                if let Some(m) = mask {
                    ins.push(self.mask_input(m, at)?);
                }
                let (idx, canon) = in_view.expect("one projection");
                let (out_view, out_canon) = view::with_channels(&idx, &canon, e)?;
                let op =
                    Op::Attention(Attention { heads: *heads, head_dim: e / heads, packed: projections.len() == 1 });
                let id = self.add(&base, op, &ins, Vec::new(), out_canon.clone(), &from);
                // The merged heads come out in the projections' row order, shaped as the file has them.
                let shape = g.values[&u.output].size();
                let out_view = out_view
                    .f_reshape(shape.as_slice())
                    .map_err(|_| self.unsupported(at, "attention's merged output has an unexpected shape"))?;
                self.bind(&u.output, id, Some(out_view));
            }
        }
        Ok(())
    }

    /// The attention-mask graph input a score mask derives from.
    fn mask_input(&self, m: &str, at: &ONode) -> Result<NodeId> {
        let sources = self.g.input_sources(m);
        let masks: Vec<NodeId> = sources
            .iter()
            .filter_map(|s| self.env.get(s))
            .map(|b| b.id)
            .filter(|&id| matches!(self.nodes[id].op.kind().input_kind(), Some(InputKind::AttentionMask { .. })))
            .collect();
        match masks.as_slice() {
            [id] if sources.len() == 1 => Ok(*id),
            _ => Err(self.unsupported(
                at,
                "attention adds a score mask that is not derived from an `attention_mask` input alone",
            )),
        }
    }

    /// An elementwise op on node `id`, its output seen through the input's view `v`.
    pub(super) fn elementwise(&mut self, out: &str, base: &str, op: Op, id: NodeId, v: Option<Tensor>, from: &str) {
        let canon = self.canon[id].clone();
        let n = self.add(base, op, &[id], Vec::new(), canon, from);
        self.bind(out, n, v);
    }

    /// LayerNorm over the channels of `x` (layer_norm2d on a map seen channels-last).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn layer_norm(
        &mut self,
        out: &str,
        base: &str,
        x: &str,
        eps: f64,
        gamma: (Option<String>, Tensor),
        beta: (Option<String>, Tensor),
        at: &ONode,
        from: &str,
    ) -> Result<()> {
        let b = self.bound(x, at)?;
        let (id, idx) = (b.id, self.index(b));
        let canon = self.canon[id].clone();
        if !view::channels_last(&idx, &canon) {
            return Err(self.unsupported(at, "LayerNorm over something other than the channels"));
        }
        let c = canon[view::channel_dim(&canon)];
        let op = if canon.len() == 4 {
            Op::LayerNorm2d(LayerNorm2d { channels: c, eps })
        } else {
            Op::LayerNorm(LayerNorm { dim: c, eps })
        };
        let params = vec![(Role::Weight, gamma.0, gamma.1), (Role::Bias, beta.0, beta.1)];
        let n = self.add(base, op, &[id], params, canon, from);
        let v = self.env[x].view.as_ref().map(|v| v.shallow_clone());
        self.bind(out, n, v);
        Ok(())
    }

    /// Lowers ONNX node `i` by its operator's registry entry.
    pub fn node(&mut self, i: usize) -> Result<()> {
        let n = &self.g.model.nodes[i];
        match ops::lookup(&n.op).and_then(|d| d.lower) {
            Some(lower) => lower(self, i),
            None => Err(self.unsupported(n, &format!("relprune has no mapping for the {} operator here", n.op))),
        }
    }

    /// Input `k` of `n` if it is a constant.
    pub(super) fn cval(&self, n: &ONode, k: usize) -> Option<&'g Tensor> {
        let g = self.g;
        n.inputs.get(k).filter(|v| !v.is_empty() && g.is_const(v)).map(|v| &g.values[v])
    }

    /// Makes `value` the canonical output: flattens a map seen as features.
    pub fn output(&mut self, value: &str) -> Result<NodeId> {
        let b = self
            .env
            .get(value)
            .ok_or_else(|| Error::invalid(format!("the graph output `{value}` could not be mapped")))?;
        let (id, idx) = (b.id, self.index(b));
        let canon = self.canon[id].clone();
        if b.view.is_none() {
            return Ok(id);
        }
        if view::is_flatten_of_map(&idx, &canon) {
            let fc = vec![canon[0], canon[1] * canon[2] * canon[3]];
            let name = format!("{}.flatten", self.nodes[id].name);
            return Ok(self.add(&name, Op::Flatten(Flatten { start_dim: 1 }), &[id], Vec::new(), fc, "output"));
        }
        crate::bail!("the graph output `{value}` is a reshaped tensor relprune cannot express")
    }
}

/// Whether an initializer name is a user's name (`layer1.0.conv1.weight`) rather than one an
/// exporter made up (`onnx::Conv_193`, `val_12`).
pub fn meaningful(name: &str) -> bool {
    !(name.is_empty()
        || name.contains("::")
        || name.starts_with('_')
        || name.starts_with("val_")
        || name.chars().all(|c| c.is_ascii_digit()))
}

/// An initializer's name as the user named the tensor: relprune's own export writes
/// `param:<key>` (and `param:<key>:row0` for a table's first row).
pub(super) fn user_name(name: &str) -> &str {
    let name = name.strip_prefix("param:").unwrap_or(name);
    name.strip_suffix(":row0").unwrap_or(name)
}

/// `layer1.0.conv1.weight` → `layer1.0.conv1`.
pub fn strip_role(name: &str) -> String {
    let name = user_name(name);
    for suffix in [".weight", ".bias", ".running_mean", ".running_var"] {
        if let Some(s) = name.strip_suffix(suffix) {
            return s.to_string();
        }
    }
    name.to_string()
}

/// A node named after its weight's initializer, when that name is meaningful.
pub(super) fn weight_base(g: &OnnxGraph, n: &ONode, k: usize) -> Option<String> {
    let w = n.inputs.get(k)?;
    g.const_origin(w).filter(|s| meaningful(s)).map(|s| strip_role(&s))
}

/// A graph input's name as a node name.
fn clean(name: &str) -> String {
    name.replace(['/', ':'], ".")
}
