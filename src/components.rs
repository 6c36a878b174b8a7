//! Prunable units of a graph and their depth groups, found by walking the graph (no
//! per-architecture name lists).
//!
//! - **filters**: output channels of every `Conv2d` (shortcut / downsample convs included);
//! - **neurons**: output units of every hidden `Linear` — one whose output reaches, through
//!   elementwise layers only, nothing but other Linear layers (so never the classifier, nor a
//!   projection into a residual stream or into attention; in a ViT / BERT these are the MLP's
//!   hidden units);
//! - **heads**: the heads of every attention node.
//!
//! Depth groups: the layers that carry LRP rules (Conv2d and Linear) are split into `fc` —
//! Linear layers applied to a flat (B, D) vector, i.e. after the spatial / token reduction —
//! and, by forward order, `low` (first quarter), `mid` and `high` (last quarter).

use crate::error::Result;
use crate::graph::{Graph, NodeId, Op};
use serde::{Deserialize, Serialize};

/// The kind of structural component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// Conv output channels.
    Filters,
    /// Hidden Linear output units.
    Neurons,
    /// Attention heads.
    Heads,
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ComponentKind::Filters => "filters",
            ComponentKind::Neurons => "neurons",
            ComponentKind::Heads => "heads",
        })
    }
}

/// Depth group of a rule-carrying layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepthGroup {
    Low,
    Mid,
    High,
    Fc,
}

impl DepthGroup {
    pub const ALL: [DepthGroup; 4] = [DepthGroup::Low, DepthGroup::Mid, DepthGroup::High, DepthGroup::Fc];
    pub fn name(self) -> &'static str {
        match self {
            DepthGroup::Low => "low",
            DepthGroup::Mid => "mid",
            DepthGroup::High => "high",
            DepthGroup::Fc => "fc",
        }
    }
}

impl std::str::FromStr for DepthGroup {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        DepthGroup::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| crate::Error::invalid(format!("unknown depth group `{s}`; use low, mid, high or fc")))
    }
}

/// Rank (number of dimensions, batch included) of every node's output, inferred from the
/// structure alone.
pub fn output_ranks(graph: &Graph) -> Vec<usize> {
    let mut rank = vec![0usize; graph.nodes().len()];
    for (id, n) in graph.nodes().iter().enumerate() {
        let first = n.inputs.first().map(|&i| rank[i]).unwrap_or(0);
        rank[id] = match &n.op {
            Op::Input(crate::graph::InputKind::Image { .. }) => 4,
            Op::Input(_) => 2,
            Op::Embedding { .. } => first + 1,
            Op::Flatten { start_dim } => (*start_dim as usize) + 1,
            Op::PatchesToTokens => 3,
            Op::SelectToken { .. } | Op::MeanPool => first.saturating_sub(1),
            Op::Add => n.inputs.iter().map(|&i| rank[i]).max().unwrap_or(0),
            _ => first,
        };
    }
    rank
}

/// Depth group of every Conv2d / Linear node (None for other nodes).
pub fn depth_groups(graph: &Graph) -> Vec<Option<DepthGroup>> {
    let ranks = output_ranks(graph);
    let mut groups = vec![None; graph.nodes().len()];
    let mut deep = Vec::new();
    for (id, n) in graph.nodes().iter().enumerate() {
        match n.op {
            Op::Linear { .. } if ranks[n.inputs[0]] <= 2 => groups[id] = Some(DepthGroup::Fc),
            Op::Linear { .. } | Op::Conv2d(_) => deep.push(id),
            _ => {}
        }
    }
    let n = deep.len();
    let q = match n {
        0..=1 => 0,
        2..=3 => 1,
        _ => (n as f64 / 4.0).round() as usize,
    };
    for (i, &id) in deep.iter().enumerate() {
        groups[id] = Some(if i < q {
            DepthGroup::Low
        } else if i >= n - q {
            DepthGroup::High
        } else {
            DepthGroup::Mid
        });
    }
    groups
}

/// Whether an op passes values through elementwise (so a unit keeps its identity).
fn elementwise(op: &Op) -> bool {
    matches!(op, Op::Relu | Op::Gelu { .. } | Op::Tanh | Op::Dropout { .. } | Op::BatchNorm2d { .. })
}

/// Whether every path from `id` through elementwise nodes ends in a Linear layer.
fn feeds_only_linears(graph: &Graph, consumers: &[Vec<NodeId>], id: NodeId) -> bool {
    if id == graph.output() || consumers[id].is_empty() {
        return false;
    }
    consumers[id].iter().all(|&c| match &graph.node(c).op {
        Op::Linear { .. } => true,
        op if elementwise(op) => feeds_only_linears(graph, consumers, c),
        _ => false,
    })
}

/// One layer's units.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComponentLayer {
    /// The node that owns the units (Conv2d, Linear or Attention).
    pub node: NodeId,
    pub name: String,
    /// Number of units.
    pub count: usize,
    /// Global index of this layer's first unit.
    pub offset: usize,
    pub group: DepthGroup,
    /// Node whose output carries the units' activations and relevances: the owner itself,
    /// or the BatchNorm right after a conv (the conv's canonical, BN-merged output).
    pub read_at: NodeId,
    /// Dimensions per head (heads only).
    pub head_dim: Option<i64>,
}

/// All units of one kind in a graph, in forward order, numbered globally.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComponentSet {
    pub kind: ComponentKind,
    pub layers: Vec<ComponentLayer>,
    pub total: usize,
}

impl ComponentSet {
    /// Finds every unit of `kind` in `graph`.
    pub fn find(graph: &Graph, kind: ComponentKind) -> Result<Self> {
        let groups = depth_groups(graph);
        let consumers = graph.consumers();
        let mut layers = Vec::new();
        let mut offset = 0;
        for (id, n) in graph.nodes().iter().enumerate() {
            let (count, head_dim, group) = match (&n.op, kind) {
                (Op::Conv2d(c), ComponentKind::Filters) => (c.out_channels as usize, None, groups[id]),
                (Op::Linear { out_features, .. }, ComponentKind::Neurons)
                    if feeds_only_linears(graph, &consumers, id) =>
                {
                    (*out_features as usize, None, groups[id])
                }
                (Op::Attention { heads, head_dim, .. }, ComponentKind::Heads) => {
                    // Heads take the group of the projection that consumes them.
                    let g = consumers[id].iter().find_map(|&c| groups[c]).or(Some(DepthGroup::Mid));
                    (*heads as usize, Some(*head_dim), g)
                }
                _ => continue,
            };
            let read_at = match (&n.op, consumers[id].as_slice()) {
                (Op::Conv2d(_), [c]) if matches!(graph.node(*c).op, Op::BatchNorm2d { .. }) => *c,
                _ => id,
            };
            layers.push(ComponentLayer {
                node: id,
                name: n.name.clone(),
                count,
                offset,
                group: group.expect("conv / linear nodes have a depth group"),
                read_at,
                head_dim,
            });
            offset += count;
        }
        if offset == 0 {
            crate::bail!(
                "the model has no prunable {kind} ({}); choose another --component",
                match kind {
                    ComponentKind::Filters => "no Conv2d layers",
                    ComponentKind::Neurons => "no hidden Linear layers feeding other Linear layers",
                    ComponentKind::Heads => "no attention layers",
                }
            );
        }
        Ok(ComponentSet { kind, layers, total: offset })
    }

    /// The layer holding global unit `index`, and the unit's index within it.
    pub fn locate(&self, index: usize) -> (&ComponentLayer, usize) {
        let pos = self.layers.partition_point(|l| l.offset + l.count <= index);
        let l = &self.layers[pos];
        (l, index - l.offset)
    }

    /// The default kind for a graph: heads-and-neurons models (with attention) → neurons,
    /// otherwise filters.
    pub fn default_kind(graph: &Graph) -> ComponentKind {
        if graph.nodes().iter().any(|n| matches!(n.op, Op::Attention { .. })) {
            ComponentKind::Neurons
        } else {
            ComponentKind::Filters
        }
    }
}
