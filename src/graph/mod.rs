//! The model representation: a DAG of typed layers ([`Op`]) with named parameters.
//!
//! Nodes are stored in topological order, so a forward pass is a single sweep and a reverse
//! sweep visits every consumer before its producers. Parameters live in one store keyed by
//! their torchvision / Hugging Face names, so a PyTorch `state_dict()` saved as safetensors
//! loads directly.

mod builder;
pub(crate) mod forward;
pub mod init;
mod params;
pub mod stats;

pub mod ops;

pub use builder::{GraphBuilder, MAX_PARAMETERS};
pub use ops::{
    AdaptiveAvgPool2d, Add, Attention, AvgPool2d, BatchNorm2d, ChannelMap, ClassToken, Concat, Conv2d, Dropout,
    Embedding, Flatten, Gelu, Hardsigmoid, Hardswish, Hardtanh, InputKind, LayerNorm, Linear, MaxPool2d, MeanPool, Mul,
    Op, OpKind, ParamKind, ParamSpec, PatchesToTokens, PositionEmbedding, Relu, Role, SegmentEmbedding, SelectToken,
    Sigmoid, Silu, Tanh, Units, OP_NAMES,
};
pub use ops::{InitHint, UnitAt, UnitSpan};
pub use params::ParamStore;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

/// Index of a node in its graph (its position in topological order).
pub type NodeId = usize;

/// Whether layers behave as in training (batch statistics, dropout) or inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Eval,
    Train,
}

/// One layer of the graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique name, the parameter prefix in PyTorch naming (e.g. `layer1.0.conv1`).
    pub name: String,
    pub op: Op,
    /// Producers of this node's inputs, in the order the op expects them.
    pub inputs: Vec<NodeId>,
    /// Parameter role → key in the parameter store.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<Role, String>,
}

/// The structure of a graph without its tensors: what `graph.json` files hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// Format version of this description.
    pub format: u32,
    pub nodes: Vec<Node>,
    pub inputs: Vec<NodeId>,
    pub output: NodeId,
    /// Keys found in PyTorch weight files that this graph knowingly does not use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_keys: Vec<String>,
}

/// Current version of [`GraphSpec`]'s JSON form.
pub const GRAPH_FORMAT: u32 = 1;

/// The nodes at one [`UnitSpan`] of a unit-carrying node ([`Graph::unit_holders`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitHolders {
    pub span: UnitSpan,
    pub nodes: Vec<NodeId>,
}

impl UnitHolders {
    /// (role, dimension) of `node`'s parameters indexed by the units' channels there: per
    /// input channel where the holders read the units, per output channel where they make them.
    pub fn params(&self, graph: &Graph, node: NodeId) -> Vec<(Role, i64)> {
        let cp = graph.node(node).op.kind().channel_params();
        if self.span.reads() {
            cp.input
        } else {
            cp.output
        }
    }
}

/// A network: nodes in topological order and their parameters.
pub struct Graph {
    spec: GraphSpec,
    params: ParamStore,
}

impl Graph {
    /// Builds a graph from a description and a parameter store, checking that every node's
    /// parameters exist with the right shapes and that node references are topological.
    pub fn new(spec: GraphSpec, params: ParamStore) -> Result<Self> {
        validate_structure(&spec)?;
        let g = Graph { spec, params };
        g.check_params(Path::new("<memory>"))?;
        Ok(g)
    }

    /// Nodes in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.spec.nodes
    }
    pub fn node(&self, id: NodeId) -> &Node {
        &self.spec.nodes[id]
    }
    /// Input nodes, in the order [`Graph::forward`] takes its tensors.
    pub fn inputs(&self) -> &[NodeId] {
        &self.spec.inputs
    }
    pub fn output(&self) -> NodeId {
        self.spec.output
    }
    pub fn spec(&self) -> &GraphSpec {
        &self.spec
    }
    pub fn params(&self) -> &ParamStore {
        &self.params
    }
    pub fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }
    /// Finds a node by name.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.spec.nodes.iter().position(|n| n.name == name)
    }

    /// The tensor bound to `role` of node `id`, if the node has that parameter.
    pub fn param(&self, id: NodeId, role: Role) -> Option<&Tensor> {
        self.spec.nodes[id].params.get(&role).and_then(|k| self.params.get(k))
    }

    /// Like [`Graph::param`] but an error naming the node when absent.
    pub fn require_param(&self, id: NodeId, role: Role) -> Result<&Tensor> {
        self.param(id, role).ok_or_else(|| {
            let n = &self.spec.nodes[id];
            Error::invalid(format!("node `{}` ({}) has no parameter `{role}`", n.name, n.op.kind_name()))
        })
    }

    /// For every node, the nodes that consume its output.
    pub fn consumers(&self) -> Vec<Vec<NodeId>> {
        let mut c = vec![Vec::new(); self.spec.nodes.len()];
        for (id, n) in self.spec.nodes.iter().enumerate() {
            for &i in &n.inputs {
                c[i].push(id);
            }
        }
        c
    }

    /// The BatchNorm that directly and solely follows node `id`, if any: where a conv's
    /// canonical (BatchNorm-merged) output is read, and what LRP's canonizer folds into it.
    pub fn following_batchnorm(&self, id: NodeId) -> Option<NodeId> {
        let mut consumers = self.spec.nodes.iter().enumerate().filter(|(_, n)| n.inputs.contains(&id));
        match (consumers.next(), consumers.next()) {
            (Some((bn, n)), None) if n.op.kind().batch_norm_eps().is_some() && n.inputs.len() == 1 => Some(bn),
            _ => None,
        }
    }

    /// The input kinds in order (shapes and dtypes the forward pass expects).
    pub fn input_kinds(&self) -> Vec<&InputKind> {
        self.spec
            .inputs
            .iter()
            .map(|&i| self.spec.nodes[i].op.kind().input_kind().expect("validated: inputs are Input nodes"))
            .collect()
    }

    /// Whether some node mixes tokens by attention (the graph is a transformer).
    pub fn has_attention(&self) -> bool {
        self.spec.nodes.iter().any(|n| n.op.kind().attends())
    }

    /// Whether some node normalises activations by their statistics.
    pub fn has_normalization(&self) -> bool {
        self.spec.nodes.iter().any(|n| n.op.kind().normalizes())
    }

    /// Whether some node multiplies by a computed gate (squeeze-and-excitation).
    pub fn has_gates(&self) -> bool {
        self.spec.nodes.iter().any(|n| n.op.kind().gates())
    }

    /// The nodes holding the units of node `id`, span by span in the order of its op's
    /// [`OpKind::unit_spans`] (empty for a node without units). Masking, surgery and the weight
    /// criterion find a unit's parameters here, whatever the unit is.
    pub fn unit_holders(&self, id: NodeId) -> Vec<UnitHolders> {
        let node = &self.spec.nodes[id];
        node.op
            .kind()
            .unit_spans()
            .into_iter()
            .map(|span| {
                let nodes = match span.at {
                    UnitAt::Output => vec![id],
                    UnitAt::Input(k) => node.inputs.get(k).copied().into_iter().collect(),
                    // As in `consumers`: a node reading the output twice is listed twice.
                    UnitAt::Readers => self
                        .spec
                        .nodes
                        .iter()
                        .enumerate()
                        .flat_map(|(c, n)| n.inputs.iter().filter(|&&i| i == id).map(move |_| c))
                        .collect(),
                };
                UnitHolders { span, nodes }
            })
            .collect()
    }

    /// Whether the graph is a language model: token ids in, one output row per token (B, T,
    /// vocabulary) out.
    pub fn is_language_model(&self) -> bool {
        let tokens = self.input_kinds().iter().any(|k| matches!(k, InputKind::TokenIds { .. }));
        tokens && output_ranks(&self.spec)[self.spec.output] == 3
    }

    /// The most tokens the graph's token inputs accept (None without one).
    pub fn max_tokens(&self) -> Option<i64> {
        stats::max_tokens(self)
    }

    /// Number of output classes (the last dimension of the output), from the op feeding it.
    pub fn num_outputs(&self) -> Option<i64> {
        match self.spec.nodes[self.spec.output].op.kind().units() {
            Some(Units::Channels(n)) => Some(n),
            _ => None,
        }
    }

    /// Loads parameters from a safetensors file (PyTorch `state_dict` names). Every parameter
    /// the graph needs must be present with the right shape; keys the graph does not know are
    /// an error unless listed in the spec's `ignored_keys`.
    pub fn load_safetensors(&mut self, path: &Path) -> Result<()> {
        self.load_safetensors_files(&[path])
    }

    /// Loads the tensors a file has and keeps the current values of the others (a pretrained
    /// encoder under a freshly initialised head). Unknown keys and wrong shapes are errors.
    pub fn load_safetensors_partial(&mut self, path: &Path) -> Result<()> {
        self.load_files(&[path], true)
    }

    /// Like [`Graph::load_safetensors`] with the union of several files (later files win), e.g.
    /// a pretrained encoder plus a separately trained head.
    pub fn load_safetensors_files(&mut self, paths: &[&Path]) -> Result<()> {
        self.load_files(paths, false)
    }

    fn load_files(&mut self, paths: &[&Path], keep_current: bool) -> Result<()> {
        let mut loaded = if keep_current { self.params.clone_shallow() } else { ParamStore::default() };
        let mut from_files = std::collections::HashSet::new();
        for p in paths {
            for (k, t) in ParamStore::read_safetensors(p)?.iter() {
                loaded.insert(k.clone(), t.shallow_clone());
                from_files.insert(k.clone());
            }
        }
        let path = paths.last().copied().unwrap_or(Path::new("<none>"));
        let mut next = self.params.clone_shallow();
        let used = self.bind(&loaded, &mut next, path)?;
        let mut unknown: Vec<&String> = from_files
            .iter()
            .filter(|k| !used.contains(*k) && !self.spec.ignored_keys.iter().any(|p| key_matches(p, k)))
            .collect();
        unknown.sort();
        if !unknown.is_empty() {
            let shown: Vec<_> = unknown.iter().take(5).collect();
            return Err(Error::invalid(format!(
                "weights file {} has {} parameter(s) this architecture does not use, e.g. {:?}; \
                 check the architecture (e.g. depth, classes, batch norm) matches the weights",
                path.display(),
                unknown.len(),
                shown
            )));
        }
        self.params = next;
        Ok(())
    }

    /// Like [`Graph::load_safetensors`], but keys the graph does not use are handed to
    /// `extra` instead of being an error (used for checkpoints that also hold optimiser state).
    pub fn load_safetensors_with_extra(&mut self, path: &Path, mut extra: impl FnMut(&str, &Tensor)) -> Result<()> {
        let loaded = ParamStore::read_safetensors(path)?;
        let mut next = self.params.clone_shallow();
        let used = self.bind(&loaded, &mut next, path)?;
        for (k, t) in loaded.iter().filter(|(k, _)| !used.contains(*k)) {
            extra(k, t);
        }
        self.params = next;
        Ok(())
    }

    /// Writes all parameters (and buffers) to a safetensors file, atomically.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        self.params.write_safetensors(path)
    }

    /// Saves the structure (`graph.json`) next to nothing else; see [`Graph::save`].
    pub fn save_spec(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.spec).map_err(Error::json("graph description"))?;
        crate::util::write_atomic(path, &json)
    }

    /// Saves a graph as a description (`<dir>/graph.json`) plus weights (`<dir>/model.safetensors`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
        self.save_safetensors(&dir.join("model.safetensors"))?;
        self.save_spec(&dir.join("graph.json"))
    }

    /// Loads a graph written by [`Graph::save`]; the weights must match the description.
    pub fn load(dir: &Path) -> Result<Self> {
        let spec_path = dir.join("graph.json");
        let spec: GraphSpec = crate::util::read_json(&spec_path)?;
        if spec.format != GRAPH_FORMAT {
            crate::bail!(
                "{} has graph format {}, this relprune reads format {GRAPH_FORMAT}",
                spec_path.display(),
                spec.format
            );
        }
        validate_structure(&spec)?;
        let weights = dir.join("model.safetensors");
        let loaded = ParamStore::read_safetensors(&weights)?;
        let mut g = Graph { spec, params: ParamStore::default() };
        let mut store = ParamStore::default();
        let mut used = g.bind(&loaded, &mut store, &weights)?;
        // A tied tensor (a decoder's LM head reading the embedding) is bound by two nodes.
        used.sort();
        used.dedup();
        if used.len() != loaded.len() {
            crate::bail!(
                "{} holds {} tensors but {} describes only {}; the description does not match its weights file",
                weights.display(),
                loaded.len(),
                spec_path.display(),
                used.len()
            );
        }
        g.params = store;
        Ok(g)
    }

    /// Copies every tensor the spec needs from `loaded` into `into`, checking shapes.
    fn bind(&self, loaded: &ParamStore, into: &mut ParamStore, path: &Path) -> Result<Vec<String>> {
        // Files are read on the host; what is bound goes where the graph lives.
        let device = self.device();
        let mut used = Vec::new();
        for node in &self.spec.nodes {
            for ps in node.op.kind().params() {
                let Some(key) = node.params.get(&ps.role) else { continue };
                match loaded.get(key) {
                    Some(t) => {
                        if t.size() != ps.shape {
                            return Err(Error::ParamShape {
                                path: path.to_path_buf(),
                                name: key.clone(),
                                expected: ps.shape,
                                found: t.size(),
                            });
                        }
                        let t = if ps.kind == ParamKind::Optional {
                            t.shallow_clone()
                        } else {
                            t.to_kind(tch::Kind::Float)
                        };
                        into.insert(key.clone(), t.to_device(device));
                        used.push(key.clone());
                    }
                    None if ps.kind == ParamKind::Optional => {}
                    None => {
                        return Err(Error::MissingParam {
                            path: path.to_path_buf(),
                            name: key.clone(),
                            expected: ps.shape,
                        })
                    }
                }
            }
        }
        Ok(used)
    }

    /// Checks that the store holds every parameter of every node, with the right shape.
    pub fn check_params(&self, origin: &Path) -> Result<()> {
        let mut tmp = ParamStore::default();
        self.bind(&self.params, &mut tmp, origin).map(|_| ())
    }

    /// Total number of trainable parameters (weights and biases, not running statistics).
    pub fn num_parameters(&self) -> i64 {
        // A tensor shared by several nodes (a tied LM head) counts once.
        let mut seen = std::collections::HashSet::new();
        let mut total = 0;
        for node in &self.spec.nodes {
            for ps in node.op.kind().params() {
                if ps.kind != ParamKind::Weight {
                    continue;
                }
                if node.params.get(&ps.role).is_some_and(|k| seen.insert(k.as_str())) {
                    total += ps.shape.iter().product::<i64>();
                }
            }
        }
        total
    }

    /// Replaces the structure and parameters at once (used by surgery and canonizers).
    pub fn replace(&mut self, spec: GraphSpec, params: ParamStore) -> Result<()> {
        let g = Graph::new(spec, params)?;
        *self = g;
        Ok(())
    }

    /// Converts every floating-point parameter to `kind` (e.g. `Kind::Double` for exact
    /// comparisons with an oracle).
    pub fn set_kind(&mut self, kind: tch::Kind) {
        let keys: Vec<String> = self.params.keys().cloned().collect();
        for k in keys {
            let t = self.params.get(&k).expect("key exists");
            if t.is_floating_point() {
                let c = t.to_kind(kind);
                self.params.insert(k, c);
            }
        }
    }

    /// The device the parameters live on ([`crate::device::HOST`] for a graph without any).
    pub fn device(&self) -> tch::Device {
        self.params.iter().next().map(|(_, t)| t.device()).unwrap_or(crate::device::HOST)
    }

    /// Moves every parameter and buffer to `device` (nothing is copied where they are already).
    /// Gradient tracking is kept as it was.
    pub fn to_device(&mut self, device: tch::Device) {
        let keys: Vec<String> = self.params.keys().cloned().collect();
        for k in keys {
            let t = self.params.get(&k).expect("key exists");
            if t.device() != device {
                let grad = t.requires_grad();
                let moved = t.detach().to_device(device).set_requires_grad(grad);
                self.params.insert(k, moved);
            }
        }
    }

    /// The graph on `device`, leaving this one as it is: tensors already there are shared,
    /// the others copied once.
    pub fn on_device(&self, device: tch::Device) -> Graph {
        let mut g = Graph { spec: self.spec.clone(), params: self.params.clone_shallow() };
        g.to_device(device);
        g
    }

    /// A deep copy: new tensors, same values.
    pub fn deep_clone(&self) -> Graph {
        Graph { spec: self.spec.clone(), params: self.params.deep_clone() }
    }

    /// Marks all trainable parameters as requiring gradients (or not).
    pub fn set_requires_grad(&mut self, on: bool) {
        for node in &self.spec.nodes {
            for ps in node.op.kind().params() {
                if ps.kind != ParamKind::Weight {
                    continue;
                }
                if let Some(key) = node.params.get(&ps.role) {
                    if let Some(t) = self.params.get_mut(key) {
                        let detached = t.detach().set_requires_grad(on);
                        *t = detached;
                    }
                }
            }
        }
    }

    /// Trainable parameter tensors (for optimisers), in a stable order; a tensor shared by
    /// several nodes (a tied LM head) once.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for node in &self.spec.nodes {
            for ps in node.op.kind().params() {
                if ps.kind == ParamKind::Weight {
                    if let Some(key) = node.params.get(&ps.role).filter(|k| seen.insert(k.as_str())) {
                        if let Some(t) = self.params.get(key) {
                            out.push((key.clone(), t.shallow_clone()));
                        }
                    }
                }
            }
        }
        out
    }
}

/// `pattern` is an exact key, or a prefix ending in `*`.
fn key_matches(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => pattern == key,
    }
}

/// Largest size an op field may declare (channels, features, vocabulary, sequence length):
/// far above any real model, small enough that products of a few never overflow `i64`.
pub const MAX_FIELD: i64 = 1 << 24;
/// Largest spatial field (kernel, stride, padding, dilation, pooled output, image side).
pub const MAX_SPATIAL: i64 = 1 << 16;
/// Most elements one parameter tensor may have.
pub const MAX_ELEMENTS: i64 = 1 << 36;
/// Most elements one input sample may have (an example input is allocated from the declared
/// shape, e.g. for MAC counts).
pub const MAX_INPUT_ELEMENTS: i64 = 1 << 28;

/// Checks the structure of an untrusted description: references, arities, and every number an
/// op declares (sizes within bounds, products overflow-checked, tensor ranks that the forward
/// pass can index), so that no description makes [`Graph::forward`] or the statistics panic
/// or allocate absurd amounts.
fn validate_structure(spec: &GraphSpec) -> Result<()> {
    let n = spec.nodes.len();
    if n == 0 {
        crate::bail!("the graph has no nodes");
    }
    let mut names = std::collections::HashSet::new();
    // Rank (dimensions, batch included) of every node's output on a successful forward pass.
    let mut ranks: Vec<usize> = Vec::with_capacity(n);
    for (id, node) in spec.nodes.iter().enumerate() {
        if !names.insert(node.name.as_str()) {
            crate::bail!("two nodes are named `{}`; node names must be unique", node.name);
        }
        for &i in &node.inputs {
            if i >= id {
                crate::bail!(
                    "node `{}` reads node {i}, which does not come before it; nodes must be in topological order",
                    node.name
                );
            }
        }
        let kind = node.op.kind();
        if !kind.arity().accepts(node.inputs.len()) {
            crate::bail!(
                "node `{}` ({}) has {} input(s), which this layer kind does not accept",
                node.name,
                node.op.kind_name(),
                node.inputs.len()
            );
        }
        check_op_fields(node)
            .map_err(|reason| Error::invalid(format!("node `{}` ({}): {reason}", node.name, node.op.kind_name())))?;
        let in_ranks: Vec<usize> = node.inputs.iter().map(|&i| ranks[i]).collect();
        let rank = kind
            .rank(&in_ranks)
            .map_err(|reason| Error::invalid(format!("node `{}` ({}): {reason}", node.name, node.op.kind_name())))?;
        ranks.push(rank);
    }
    let mut listed = vec![false; n];
    for &i in &spec.inputs {
        if i >= n || spec.nodes[i].op.kind().input_kind().is_none() {
            crate::bail!("graph input {i} is not an input node");
        }
        if std::mem::replace(&mut listed[i], true) {
            crate::bail!("graph input {i} (`{}`) is listed twice", spec.nodes[i].name);
        }
    }
    if let Some(node) = spec.nodes.iter().zip(&listed).find(|(nd, l)| nd.op.kind().input_kind().is_some() && !**l) {
        crate::bail!("input node `{}` is not listed among the graph inputs", node.0.name);
    }
    if spec.output >= n {
        crate::bail!("graph output {} is not a node", spec.output);
    }
    Ok(())
}

/// Overflow-checked product of `dims`, at most `max`.
pub(crate) fn checked_elements(what: &str, dims: &[i64], max: i64) -> std::result::Result<i64, String> {
    dims.iter()
        .try_fold(1i64, |acc, &d| acc.checked_mul(d))
        .filter(|&p| p <= max)
        .ok_or_else(|| format!("{what} of shape {dims:?} has more than {max} elements"))
}

/// Checks the numbers an op declares and the element count of every parameter it needs.
fn check_op_fields(node: &Node) -> std::result::Result<(), String> {
    node.op.kind().check()?;
    for ps in node.op.kind().params() {
        checked_elements(&format!("parameter `{}`", ps.role), &ps.shape, MAX_ELEMENTS)?;
    }
    Ok(())
}

/// Rank (dimensions, batch included) of every node's output, from the structure alone.
pub fn output_ranks(spec: &GraphSpec) -> Vec<usize> {
    let mut ranks: Vec<usize> = Vec::with_capacity(spec.nodes.len());
    for node in &spec.nodes {
        let ins: Vec<usize> = node.inputs.iter().map(|&i| ranks[i]).collect();
        ranks.push(node.op.kind().rank(&ins).unwrap_or(0));
    }
    ranks
}
