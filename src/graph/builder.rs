//! Incremental construction of graphs, used by the model builders.

use super::{init, Graph, GraphSpec, InputKind, Node, NodeId, Op, ParamStore, Role, GRAPH_FORMAT};
use crate::error::Result;
use std::collections::BTreeMap;

/// The most parameter values a built graph may hold (16 GiB of float32).
pub const MAX_PARAMETERS: i64 = 1 << 32;

/// Refuses graphs too large to allocate, before anything is allocated: absurd architecture
/// options would otherwise abort the process inside libtorch's allocator. The total parameter
/// count is checked here; per-op sizes and input shapes by the graph's own structure check.
fn check_size(spec: &GraphSpec) -> Result<()> {
    let too_big = || {
        crate::error::Error::invalid(format!(
            "this architecture would hold more than {MAX_PARAMETERS} parameter values; reduce its width, size or \
             depth options"
        ))
    };
    let mut total: i64 = 0;
    for node in &spec.nodes {
        for ps in node.op.kind().params() {
            let n = ps.shape.iter().try_fold(1i64, |a, &d| a.checked_mul(d.max(0))).ok_or_else(too_big)?;
            total = total.checked_add(n).filter(|&t| t <= MAX_PARAMETERS).ok_or_else(too_big)?;
        }
    }
    super::validate_structure(spec)
        .map_err(|e| crate::error::Error::invalid(format!("{e}; reduce the architecture's width, size or in options")))
}

/// Appends nodes in topological order; parameter keys default to `<node name>.<role>`.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<Node>,
    inputs: Vec<NodeId>,
    ignored_keys: Vec<String>,
    key_prefix: String,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Prefix for the default parameter keys of nodes added from now on (e.g. `bert.`).
    pub fn set_key_prefix(&mut self, prefix: &str) {
        self.key_prefix = prefix.to_string();
    }

    /// Adds a graph input.
    pub fn input(&mut self, name: &str, kind: InputKind) -> NodeId {
        let id = self.add(name, Op::Input(kind), &[]);
        self.inputs.push(id);
        id
    }

    /// Adds a node whose parameters are keyed `<name>.<role>`.
    pub fn add(&mut self, name: impl Into<String>, op: Op, inputs: &[NodeId]) -> NodeId {
        self.add_keyed(name, op, inputs, &[])
    }

    /// Adds a node, with explicit store keys for some parameter roles (e.g. torchvision's packed
    /// `in_proj_weight`), the others keyed `<name>.<role>`.
    pub fn add_keyed(&mut self, name: impl Into<String>, op: Op, inputs: &[NodeId], keys: &[(Role, &str)]) -> NodeId {
        let name = name.into();
        let mut params = BTreeMap::new();
        for ps in op.kind().params() {
            let key = keys
                .iter()
                .find(|(role, _)| *role == ps.role)
                .map(|(_, k)| k.to_string())
                .unwrap_or_else(|| format!("{}{name}.{}", self.key_prefix, ps.role));
            params.insert(ps.role, key);
        }
        self.nodes.push(Node { name, op, inputs: inputs.to_vec(), params });
        self.nodes.len() - 1
    }

    /// Declares weight-file keys (exact, or prefixes ending in `*`) that this graph does not use.
    pub fn ignore_keys(&mut self, patterns: &[&str]) {
        self.ignored_keys.extend(patterns.iter().map(|p| p.to_string()));
    }

    /// Finishes the graph with `output` as its result, parameters initialised as PyTorch's
    /// layer defaults from a seeded generator.
    pub fn finish(self, output: NodeId, seed: u64) -> Result<Graph> {
        let spec = GraphSpec {
            format: GRAPH_FORMAT,
            nodes: self.nodes,
            inputs: self.inputs,
            output,
            ignored_keys: self.ignored_keys,
        };
        check_size(&spec)?;
        let mut params = ParamStore::default();
        let mut rng = crate::util::rng(seed);
        for node in &spec.nodes {
            init::pytorch_default(node, &mut params, &mut rng);
        }
        Graph::new(spec, params)
    }
}
