//! Maps the ONNX graph, after folding and fusion, onto relprune's ops. Each ONNX value that
//! carries data (not a folded constant) is bound to a relprune node and a [`view`] of it.

use super::fuse::{Fused, Unit};
use super::proto::ONode;
use super::{eval, ops, view, OnnxGraph};
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
    g: &'g OnnxGraph,
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
    keys: HashSet<String>,
    /// Table lookups by positions computed from the token ids (RoBERTa), waiting for the sum
    /// that adds them to the embeddings: value → (table, positions).
    deferred: HashMap<String, (String, String)>,
}

type P = (Role, Option<String>, Tensor);

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
    fn add(&mut self, base: &str, op: Op, inputs: &[NodeId], params: Vec<P>, canon: Vec<i64>, from: &str) -> NodeId {
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

    fn bind(&mut self, value: &str, id: NodeId, view: Option<Tensor>) {
        let view = view.filter(|v| !view::is_identity(v, &self.canon[id]));
        self.env.insert(value.to_string(), Bound { id, view });
        self.checked.push(value.to_string());
    }

    fn bound(&self, v: &str, at: &ONode) -> Result<&Bound> {
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

    fn index(&self, b: &Bound) -> Tensor {
        b.view.as_ref().map(|v| v.shallow_clone()).unwrap_or_else(|| view::identity(&self.canon[b.id]))
    }

    /// The bound value as a canonical tensor: a map's patches seen as tokens become a
    /// `patches_to_tokens` node, a map seen flattened a `flatten` node; other views are errors.
    fn canonical(&mut self, v: &str, at: &ONode, what: &str) -> Result<NodeId> {
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

    fn unsupported(&self, at: &ONode, why: &str) -> Error {
        Error::invalid(format!(
            "cannot import {}: {why}. What relprune reads is listed in docs/import-onnx.md; \
             another opset (torch.onnx.export(..., opset_version=17)) or the other exporter (dynamo=True / False) \
             may spell it differently",
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

    fn elementwise(&mut self, out: &str, base: &str, op: Op, id: NodeId, v: Option<Tensor>, from: &str) {
        let canon = self.canon[id].clone();
        let n = self.add(base, op, &[id], Vec::new(), canon, from);
        self.bind(out, n, v);
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_norm(
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

    /// Lowers ONNX node `i`.
    pub fn node(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let base = g.module_name(n);
        let from = n.name.clone();
        let out = n.outputs[0].clone();
        let cval = |k: usize| -> Option<&Tensor> {
            n.inputs.get(k).filter(|v| !v.is_empty() && g.is_const(v)).map(|v| &g.values[v])
        };
        match n.op.as_str() {
            "Identity" | "Dropout" => {
                let b = self.bound(&n.inputs[0], n)?;
                let (id, v) = (b.id, b.view.as_ref().map(|v| v.shallow_clone()));
                self.env.insert(out, Bound { id, view: v });
            }
            "Relu" | "Sigmoid" | "Tanh" | "HardSwish" | "Gelu" | "Clip" | "HardSigmoid" => {
                let op = match n.op.as_str() {
                    "Relu" => Op::Relu(Relu),
                    "Sigmoid" => Op::Sigmoid(Sigmoid),
                    "Tanh" => Op::Tanh(Tanh),
                    "HardSwish" => Op::Hardswish(Hardswish),
                    "Gelu" => Op::Gelu(Gelu { tanh: n.str("approximate") == Some("tanh") }),
                    "HardSigmoid" => {
                        let (a, b) = (n.float("alpha", 0.2), n.float("beta", 0.5));
                        if (a - 1.0 / 6.0).abs() > 1e-6 || (b - 0.5).abs() > 1e-6 {
                            return Err(self.unsupported(
                                n,
                                &format!("HardSigmoid with alpha {a}, beta {b} (PyTorch's is 1/6, 0.5)"),
                            ));
                        }
                        Op::Hardsigmoid(Hardsigmoid)
                    }
                    _ => {
                        let scalar = |k: usize, attr: &str| -> Option<f64> {
                            cval(k)
                                .and_then(|t| t.f_flatten(0, -1).ok()?.f_double_value(&[0]).ok())
                                .or_else(|| n.attrs.get(attr).map(|_| n.float(attr, 0.0) as f64))
                        };
                        match (scalar(1, "min"), scalar(2, "max")) {
                            (Some(0.0), None) => Op::Relu(Relu),
                            (Some(lo), Some(hi)) => Op::Hardtanh(Hardtanh { min_val: lo, max_val: hi }),
                            _ => return Err(self.unsupported(n, "Clip without both bounds")),
                        }
                    }
                };
                let b = self.bound(&n.inputs[0], n)?;
                let (id, v) = (b.id, b.view.as_ref().map(|v| v.shallow_clone()));
                self.elementwise(&out, &base, op, id, v, &from);
            }
            "Reshape" | "Transpose" | "Squeeze" | "Unsqueeze" | "Flatten" => {
                let b = self.bound(&n.inputs[0], n)?;
                let id = b.id;
                let idx = self.index(b);
                let mut xs: Vec<Option<&Tensor>> = vec![Some(&idx)];
                for v in &n.inputs[1..] {
                    xs.push(if v.is_empty() { None } else { Some(&g.values[v]) });
                }
                let moved = eval::run(n, &xs)?.remove(0);
                self.bind(&out, id, Some(moved));
            }
            "Conv" => {
                let x = self.canonical(&n.inputs[0], n, "a convolution")?;
                let w = cval(1).ok_or_else(|| self.unsupported(n, "a convolution whose weight is not a constant"))?;
                if w.dim() != 4 {
                    return Err(self.unsupported(n, "only 2-d convolutions are supported"));
                }
                let pads = ops::conv_pads(n, &g.values[&n.inputs[0]], w)?;
                let pad = eval::symmetric_pads(&pads, 2).ok_or_else(|| {
                    self.unsupported(n, &format!("asymmetric padding {pads:?} (export with symmetric padding)"))
                })?;
                let s = w.size();
                let groups = n.int("group", 1);
                let two = |k: &str| -> [i64; 2] {
                    let v = n.ints(k).map(<[i64]>::to_vec).unwrap_or(vec![1, 1]);
                    [v[0], *v.get(1).unwrap_or(&v[0])]
                };
                let bias = cval(2);
                let op = Op::Conv2d(Conv2d {
                    in_channels: s[1] * groups,
                    out_channels: s[0],
                    kernel: [s[2], s[3]],
                    stride: two("strides"),
                    padding: [pad[0], pad[1]],
                    dilation: two("dilations"),
                    groups,
                    bias: bias.is_some(),
                });
                let mut params = vec![(Role::Weight, g.const_origin(&n.inputs[1]), w.shallow_clone())];
                if let Some(b) = bias {
                    params.push((Role::Bias, g.const_origin(&n.inputs[2]), b.shallow_clone()));
                }
                let base = weight_base(g, n, 1).unwrap_or(base);
                let id = self.add(&base, op, &[x], params, g.values[&out].size(), &from);
                self.bind(&out, id, None);
            }
            "BatchNormalization" => {
                let x = self.canonical(&n.inputs[0], n, "a BatchNorm")?;
                if self.canon[x].len() != 4 {
                    return Err(self.unsupported(n, "BatchNorm over something other than a 4-d map"));
                }
                let mut params = Vec::new();
                for (k, role) in [(1, Role::Weight), (2, Role::Bias), (3, Role::RunningMean), (4, Role::RunningVar)] {
                    let t =
                        cval(k).ok_or_else(|| self.unsupported(n, "BatchNorm statistics that are not constants"))?;
                    params.push((role, g.const_origin(&n.inputs[k]), t.f_flatten(0, -1)?));
                }
                let op = Op::BatchNorm2d(BatchNorm2d {
                    features: self.canon[x][1],
                    eps: n.float("epsilon", 1e-5) as f64,
                    momentum: 0.1,
                });
                let base = weight_base(g, n, 1).unwrap_or(base);
                let id = self.add(&base, op, &[x], params, g.values[&out].size(), &from);
                self.bind(&out, id, None);
            }
            "MaxPool" | "AveragePool" | "GlobalAveragePool" => {
                let x = self.canonical(&n.inputs[0], n, "pooling")?;
                let two = |k: &str, d: i64| -> [i64; 2] {
                    let v = n.ints(k).map(<[i64]>::to_vec).unwrap_or(vec![d, d]);
                    [v[0], *v.get(1).unwrap_or(&v[0])]
                };
                let op = match n.op.as_str() {
                    "GlobalAveragePool" => Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [1, 1] }),
                    op => {
                        let p = ops::pool_pads(n)?;
                        let kernel = two("kernel_shape", 1);
                        let (stride, padding) = (two("strides", 1), [p[0], p[1]]);
                        if op == "MaxPool" {
                            if two("dilations", 1) != [1, 1] {
                                return Err(self.unsupported(n, "dilated max pooling"));
                            }
                            Op::MaxPool2d(MaxPool2d { kernel, stride, padding, ceil_mode: n.int("ceil_mode", 0) == 1 })
                        } else {
                            if n.int("ceil_mode", 0) == 1 {
                                return Err(self.unsupported(n, "average pooling with ceil_mode"));
                            }
                            if padding != [0, 0] && n.int("count_include_pad", 0) == 0 {
                                return Err(self.unsupported(n, "padded average pooling that excludes the padding"));
                            }
                            Op::AvgPool2d(AvgPool2d { kernel, stride, padding })
                        }
                    }
                };
                let id = self.add(&base, op, &[x], Vec::new(), g.values[&out].size(), &from);
                self.bind(&out, id, None);
            }
            "ReduceMean" => {
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
                if rank != 4 || axes != [2, 3] {
                    return Err(self.unsupported(n, "a mean over axes other than a map's height and width"));
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
            }
            "Gemm" | "MatMul" => self.linear(i)?,
            "LayerNormalization" => {
                let x = &n.inputs[0];
                let rank = g.values[x].dim();
                if eval::axis(n.int("axis", -1), rank)? != rank as i64 - 1 {
                    return Err(self.unsupported(n, "LayerNormalization over more than the last axis"));
                }
                let c = *g.values[x].size().last().unwrap_or(&0);
                let gamma = match cval(1) {
                    Some(t) => (g.const_origin(&n.inputs[1]), t.f_flatten(0, -1)?),
                    None => (None, Tensor::f_ones([c], (Kind::Float, crate::device::HOST))?),
                };
                let beta = match cval(2) {
                    Some(t) => (g.const_origin(&n.inputs[2]), t.f_flatten(0, -1)?),
                    None => (None, Tensor::f_zeros([c], (Kind::Float, crate::device::HOST))?),
                };
                let base = weight_base(g, n, 1).unwrap_or(base);
                self.layer_norm(&out, &base, x, n.float("epsilon", 1e-5) as f64, gamma, beta, n, &from)?;
            }
            "Add" => self.add_op(i)?,
            "Sum" if n.inputs.len() == 2 => self.add_op(i)?,
            "Sum" => self.sum(i)?,
            "Mul" => self.mul_op(i)?,
            "Gather" => self.gather(i)?,
            "Concat" => self.concat(i)?,
            "Split" | "Slice" => self.channel_slices(i)?,
            op => {
                return Err(self.unsupported(n, &format!("relprune has no mapping for the {op} operator here")));
            }
        }
        Ok(())
    }

    fn linear(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let out = &n.outputs[0];
        let wname = &n.inputs[1];
        if !g.is_const(wname) {
            return Err(self.unsupported(n, "a matrix product of two data tensors outside attention"));
        }
        let w = &g.values[wname];
        if w.dim() != 2 {
            return Err(self.unsupported(n, "a matrix product with a weight that is not a matrix"));
        }
        let weight = match n.op.as_str() {
            "Gemm" => {
                if n.int("transA", 0) != 0 || n.float("alpha", 1.0) != 1.0 || n.float("beta", 1.0) != 1.0 {
                    return Err(self.unsupported(n, "Gemm with transA, alpha or beta"));
                }
                if n.int("transB", 0) == 1 {
                    w.shallow_clone()
                } else {
                    w.f_tr()?.f_contiguous()?
                }
            }
            _ => w.f_tr()?.f_contiguous()?,
        };
        let bias = if n.op == "Gemm" { n.inputs.get(2).filter(|v| !v.is_empty()) } else { None };
        let (out_f, in_f) = (weight.size()[0], weight.size()[1]);
        let b = self.bound(&n.inputs[0], n)?;
        let (mut x, idx) = (b.id, self.index(b));
        let mut canon = self.canon[x].clone();
        let from = n.name.clone();
        let base = weight_base(g, n, 1).unwrap_or_else(|| g.module_name(n));
        // A flattened map first becomes features.
        let flattened = view::is_flatten_of_map(&idx, &canon);
        if flattened {
            let fc = vec![canon[0], canon[1] * canon[2] * canon[3]];
            x = self.add(
                &format!("{base}.flatten"),
                Op::Flatten(Flatten { start_dim: 1 }),
                &[x],
                Vec::new(),
                fc.clone(),
                &from,
            );
            canon = fc;
        } else if !view::channels_last(&idx, &canon) {
            return Err(self.unsupported(n, "a linear layer over something other than the features"));
        }
        if canon[view::channel_dim(&canon)] != in_f {
            return Err(self.unsupported(n, "a linear layer whose weight does not match its input's features"));
        }
        let mut params =
            vec![(Role::Weight, g.const_origin(wname).filter(|_| n.op == "Gemm" && n.int("transB", 0) == 1), weight)];
        if let Some(bv) = bias {
            let t = g
                .values
                .get(bv)
                .filter(|_| g.is_const(bv))
                .ok_or_else(|| self.unsupported(n, "a bias that is not a constant"))?;
            if t.numel() as i64 != out_f {
                return Err(self.unsupported(n, "a Gemm bias that is not one value per output"));
            }
            params.push((Role::Bias, g.const_origin(bv), t.f_flatten(0, -1)?));
        }
        let op = if canon.len() == 4 {
            Op::ChannelLinear(ChannelLinear { in_channels: in_f, out_channels: out_f, bias: bias.is_some() })
        } else {
            Op::Linear(Linear { in_features: in_f, out_features: out_f, bias: bias.is_some() })
        };
        let (v, out_canon) = if !flattened {
            let (v, c) = view::with_channels(&idx, &canon, out_f)?;
            (Some(v), c)
        } else {
            let mut c = canon.clone();
            *c.last_mut().expect("rank ≥ 2") = out_f;
            (None, c)
        };
        let id = self.add(&base, op, &[x], params, out_canon, &from);
        self.bind(out, id, v);
        Ok(())
    }

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

    fn add_op(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let out = &n.outputs[0];
        let (a, b) = (&n.inputs[0], &n.inputs[1]);
        let from = n.name.clone();
        let base = g.module_name(n);
        if let Some((other, (table, pos))) =
            [(b, a), (a, b)].iter().find_map(|(o, d)| self.deferred.get(d.as_str()).map(|t| (*o, t.clone())))
        {
            return self.token_positions(n, other, &table, &pos);
        }
        match (g.is_const(a), g.is_const(b)) {
            (false, false) => {
                let (ba, bb) = (self.bound(a, n)?, self.bound(b, n)?);
                let (ia, ib) = (self.index(ba), self.index(bb));
                if ia.size() != ib.size() || !ia.equal(&ib) || self.canon[ba.id] != self.canon[bb.id] {
                    return Err(self.unsupported(n, "a sum of tensors laid out differently (broadcast)"));
                }
                let (x, y, v) = (ba.id, bb.id, ba.view.as_ref().map(|t| t.shallow_clone()));
                let canon = self.canon[x].clone();
                let id = self.add(&base, Op::Add(Add), &[x, y], Vec::new(), canon, &from);
                self.bind(out, id, v);
            }
            (ca, cb) if ca != cb => {
                let (dv, cv) = if ca { (b, a) } else { (a, b) };
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
                if per_channel && self.takes_bias(id, dv) {
                    // The bias of the preceding affine layer (MatMul + Add).
                    let key = g
                        .const_origin(cv)
                        .map(|k| user_name(&k).to_string())
                        .filter(|k| meaningful(k) && !self.keys.contains(k))
                        .unwrap_or_else(|| format!("{}.bias", self.nodes[id].name));
                    self.keys.insert(key.clone());
                    self.params.insert(key.clone(), c.f_flatten(0, -1)?);
                    self.nodes[id].params.insert(Role::Bias, key);
                    *self.nodes[id].op.kind_mut().bias_flag_mut().expect("takes_bias checked the op") = true;
                    let v = self.env[dv].view.as_ref().map(|t| t.shallow_clone());
                    // The value before the bias is no longer what the node computes.
                    self.checked.retain(|c| c != dv);
                    self.bind(out, id, v);
                    self.from[id] = format!("{} + {}", self.from[id], n.name);
                    return Ok(());
                }
                if bnd.view.is_some() || canon.len() != 3 {
                    return Err(
                        self.unsupported(n, "adding a constant that is neither a bias nor a position or segment table")
                    );
                }
                let (t, dim) = (canon[1], canon[2]);
                let op_params = match g.table_rows(cv) {
                    Some((table, rows)) if rows == (0..t).collect::<Vec<_>>() => {
                        let tv = &g.values[&table];
                        let op =
                            Op::PositionEmbedding(PositionEmbedding { max_len: tv.size()[0], dim, leading_one: false });
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
                    return Err(
                        self.unsupported(n, "adding a constant that is neither a bias nor a position or segment table")
                    );
                };
                let base = origin.as_deref().map(strip_role).unwrap_or(base);
                let id = self.add(&base, op, &[id], vec![(Role::Weight, origin, table)], canon, &from);
                self.bind(out, id, None);
            }
            _ => unreachable!("constant sums are folded"),
        }
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
        let bnd = self.bound(dv, n)?;
        let (id, canon) = (bnd.id, self.canon[bnd.id].clone());
        let c = &g.values[cv];
        if canon.len() != 4 || bnd.view.is_some() || !(c.numel() as i64 == canon[1] || c.numel() == 1) {
            return Err(self.unsupported(n, "multiplying by a constant other than a per-channel scale of a map"));
        }
        let w = c.f_flatten(0, -1)?.f_expand([canon[1]], false)?.f_contiguous()?.f_reshape([canon[1], 1, 1])?;
        let origin = g.const_origin(cv);
        let base = origin.as_deref().map(strip_role).unwrap_or(base);
        let nid = self.add(
            &base,
            Op::Scale(Scale { channels: canon[1] }),
            &[id],
            vec![(Role::Weight, origin, w)],
            canon,
            &from,
        );
        self.bind(out, nid, None);
        Ok(())
    }

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
        if consts.is_empty() && rank == 4 && ax == 1 {
            let ids: Vec<NodeId> =
                n.inputs.iter().map(|v| self.canonical(v, n, "a channel concatenation")).collect::<Result<_>>()?;
            let id = self.add(&base, Op::Concat(Concat { dim: 1 }), &ids, Vec::new(), g.values[out].size(), &from);
            self.bind(out, id, None);
            return Ok(());
        }
        if rank == 3 && ax == 1 && n.inputs.len() == 2 && g.is_const(&n.inputs[0]) && !g.is_const(&n.inputs[1]) {
            let tok = &g.values[&n.inputs[0]];
            let x = self.canonical(&n.inputs[1], n, "a class token")?;
            let dim = self.canon[x][2];
            if tok.size()[1] == 1 && tok.size()[2] == dim {
                let row = tok.f_narrow(0, 0, 1)?;
                if tok.f_sub(&row)?.f_abs()?.f_max()?.double_value(&[]) == 0.0 {
                    let origin = g.const_origin(&n.inputs[0]);
                    let base = origin.as_deref().map(strip_role).unwrap_or(base);
                    let op = Op::ClassToken(ClassToken { dim });
                    let id = self.add(
                        &base,
                        op,
                        &[x],
                        vec![(Role::Weight, origin, row.f_contiguous()?)],
                        g.values[out].size(),
                        &from,
                    );
                    self.bind(out, id, None);
                    return Ok(());
                }
            }
        }
        Err(self.unsupported(n, "a concatenation other than of maps' channels or a class token before the tokens"))
    }

    fn channel_slices(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let x = self.canonical(&n.inputs[0], n, "a channel split")?;
        let canon = self.canon[x].clone();
        let from = n.name.clone();
        let base = g.module_name(n);
        let xv = &g.values[&n.inputs[0]];
        let axis_of = |o: &Tensor| -> Option<usize> { (0..xv.dim()).find(|&d| xv.size()[d] != o.size()[d]) };
        let mut start = 0;
        for (k, o) in n.outputs.iter().enumerate() {
            let ov = &g.values[o];
            let ax = axis_of(ov);
            if canon.len() != 4 || !(ax == Some(1) || ax.is_none()) {
                return Err(self.unsupported(n, "a slice of something other than a map's channels"));
            }
            let len = ov.size()[1];
            if n.op == "Slice" {
                let starts = eval::int_list(&g.values[&n.inputs[1]])?;
                let steps =
                    n.inputs.get(4).filter(|v| !v.is_empty()).map(|v| eval::int_list(&g.values[v])).transpose()?;
                if steps.is_some_and(|s| s.iter().any(|&s| s != 1)) {
                    return Err(self.unsupported(n, "a strided slice"));
                }
                start = starts[0].clamp(0, canon[1]);
            }
            // The slice must be exactly those channels.
            if !xv.f_narrow(1, start, len)?.equal(ov) {
                return Err(self.unsupported(n, "a slice that is not a contiguous channel range"));
            }
            let name = if n.outputs.len() > 1 { format!("{base}.{k}") } else { base.clone() };
            let mut c = canon.clone();
            c[1] = len;
            let id = self.add(&name, Op::ChannelSlice(ChannelSlice { start, length: len }), &[x], Vec::new(), c, &from);
            self.bind(o, id, None);
            start += len;
        }
        Ok(())
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
fn user_name(name: &str) -> &str {
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
fn weight_base(g: &OnnxGraph, n: &ONode, k: usize) -> Option<String> {
    let w = n.inputs.get(k)?;
    g.const_origin(w).filter(|s| meaningful(s)).map(|s| strip_role(&s))
}

/// A graph input's name as a node name.
fn clean(name: &str) -> String {
    name.replace(['/', ':'], ".")
}
