//! Dependency groups for physical pruning, derived from the graph alone.
//!
//! Every node output with a channel dimension belongs to a *channel space*. Layers that keep
//! channels aligned (BatchNorm, activations, pooling, dropout, depthwise convolutions, token
//! selection) put their output in their input's space; a residual addition merges the spaces of
//! all its summands. A Conv2d or Linear starts a new space (its output channels) and *consumes*
//! its input's space (its input channels). Removing channel c of a space therefore means:
//! remove output c of every producer in it, entry c of every BatchNorm in it, and input c of
//! every consumer (a Linear after a Flatten loses the block of columns that channel became).
//!
//! A space cannot lose channels when something would change meaning: the graph input, a
//! LayerNorm (its statistics span the channels), an embedding or position table, the class
//! token, the attention inputs (q, k, v: heads are pruned as heads), grouped convolutions that
//! are not depthwise, or the graph output.

use crate::components::{ComponentKind, ComponentSet};
use crate::error::Result;
use crate::graph::{stats, Graph, Mode, NodeId, Op};

/// Channel spaces of a graph.
pub struct ChannelSpaces {
    /// Space of every node's output.
    pub space_of: Vec<usize>,
    /// Why a space cannot lose channels (None: it can).
    pub blocked: Vec<Option<String>>,
    /// For Flatten nodes: positions per channel (H·W of the flattened map).
    pub flatten_block: Vec<Option<i64>>,
    /// Channels of every node's output (last dim for tokens, dim 1 for maps).
    pub channels: Vec<i64>,
}

struct UnionFind(Vec<usize>);
impl UnionFind {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut y = x;
        while self.0[y] != r {
            let n = self.0[y];
            self.0[y] = r;
            y = n;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[rb] = ra;
        }
    }
}

/// Computes the channel spaces (one example forward pass gives the shapes).
pub fn channel_spaces(graph: &Graph) -> Result<ChannelSpaces> {
    let n = graph.nodes().len();
    let outs = tch::no_grad(|| graph.forward_all(&stats::example_inputs(graph, 8), Mode::Eval))?;
    let channels: Vec<i64> = outs
        .iter()
        .map(|t| {
            let s = t.size();
            match s.len() {
                4 => s[1],
                0 | 1 => 0,
                _ => *s.last().unwrap(),
            }
        })
        .collect();
    let mut uf = UnionFind((0..n).collect());
    let mut block_reason: Vec<Option<String>> = vec![None; n];
    let mut flatten_block = vec![None; n];
    let blocks = |uf: &mut UnionFind, id: NodeId, why: String, reasons: &mut Vec<Option<String>>| {
        let r = uf.find(id);
        reasons[r].get_or_insert(why);
    };
    // First pass: unions.
    for (id, node) in graph.nodes().iter().enumerate() {
        let x = node.inputs.first().copied();
        match &node.op {
            Op::Conv2d(c) if c.groups > 1 && c.groups == c.in_channels && c.groups == c.out_channels => {
                uf.union(x.unwrap(), id)
            }
            Op::BatchNorm2d { .. }
            | Op::Relu
            | Op::Gelu { .. }
            | Op::Tanh
            | Op::Dropout { .. }
            | Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::LayerNorm { .. }
            | Op::PositionEmbedding { .. }
            | Op::SegmentEmbedding { .. }
            | Op::ClassToken { .. }
            | Op::PatchesToTokens
            | Op::SelectToken { .. } => uf.union(x.unwrap(), id),
            Op::MeanPool => uf.union(x.unwrap(), id),
            Op::Add => {
                for &i in &node.inputs {
                    uf.union(i, id);
                }
            }
            Op::Flatten { .. } => {
                let (c, numel) = (channels[x.unwrap()], outs[x.unwrap()].size()[1..].iter().product::<i64>());
                flatten_block[id] = Some(if c > 0 { numel / c } else { 1 });
            }
            _ => {}
        }
    }
    // Second pass: what blocks channel removal.
    for (id, node) in graph.nodes().iter().enumerate() {
        let why = match &node.op {
            Op::Input(_) => Some("it is the graph input".to_string()),
            Op::LayerNorm { .. } => Some(format!("LayerNorm `{}` normalises over it", node.name)),
            Op::PositionEmbedding { .. }
            | Op::SegmentEmbedding { .. }
            | Op::ClassToken { .. }
            | Op::Embedding { .. } => Some(format!("`{}` adds a learned table over it", node.name)),
            Op::Conv2d(c) if c.groups > 1 && !(c.groups == c.in_channels && c.groups == c.out_channels) => {
                Some(format!("grouped conv `{}` (groups {}) is not depthwise", node.name, c.groups))
            }
            Op::Flatten { .. }
                if graph.consumers()[id].iter().any(|&c| !matches!(graph.node(c).op, Op::Linear { .. })) =>
            {
                Some(format!("Flatten `{}` feeds a layer other than Linear", node.name))
            }
            _ => None,
        };
        if let Some(w) = why {
            blocks(&mut uf, id, w, &mut block_reason);
        }
        if let Op::Attention { .. } = node.op {
            for &i in &node.inputs {
                blocks(
                    &mut uf,
                    i,
                    format!("it feeds attention `{}` (prune heads instead)", node.name),
                    &mut block_reason,
                );
            }
        }
        if id == graph.output() {
            blocks(&mut uf, id, "it is the model's output".into(), &mut block_reason);
        }
        if let Op::Flatten { .. } = node.op {
            // The flattened tensor is a space of its own (blocks of columns); removal goes
            // through the channel space it came from.
            blocks(&mut uf, id, "it is flattened".into(), &mut block_reason);
        }
    }
    let space_of: Vec<usize> = (0..n).map(|i| uf.find(i)).collect();
    let blocked = (0..n).map(|i| block_reason[uf.find(i)].clone()).collect();
    Ok(ChannelSpaces { space_of, blocked, flatten_block, channels })
}

/// Components that must be removed together, and their channel / head count.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CoupledGroup {
    /// Indices into `ComponentSet::layers`.
    pub members: Vec<usize>,
    /// Units per member (every member has the same count).
    pub units: usize,
    /// Why this group cannot be removed physically (None: it can).
    pub blocked: Option<String>,
}

/// The dependency groups of a component set: filters coupled through residual additions share
/// a group; every other layer (and every attention layer's heads) is a group of its own.
pub fn coupled_groups(graph: &Graph, comps: &ComponentSet) -> Result<Vec<CoupledGroup>> {
    if comps.kind == ComponentKind::Heads {
        return Ok(comps
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| CoupledGroup { members: vec![i], units: l.count, blocked: None })
            .collect());
    }
    let sp = channel_spaces(graph)?;
    let mut groups: Vec<(usize, CoupledGroup)> = Vec::new();
    for (i, l) in comps.layers.iter().enumerate() {
        let s = sp.space_of[l.node];
        match groups.iter_mut().find(|(gs, _)| *gs == s) {
            Some((_, g)) => g.members.push(i),
            None => {
                groups.push((s, CoupledGroup { members: vec![i], units: l.count, blocked: sp.blocked[l.node].clone() }))
            }
        }
    }
    Ok(groups.into_iter().map(|(_, g)| g).collect())
}
