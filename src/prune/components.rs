//! Prunable units of a graph and their depth groups, found by walking the graph (no
//! per-architecture name lists).
//!
//! - **filters**: the channels of every layer that makes new channels of a map (convolutions,
//!   shortcut / downsample and squeeze-and-excitation convs included; a depthwise conv keeps
//!   the channels of the layer before it);
//! - **neurons**: the channels of every layer that makes new channels of a vector or token
//!   sequence and whose channels may be removed ([`crate::prune::dependency`]): never the classifier,
//!   nor a projection into a residual stream or into attention; in a ViT / BERT these are the
//!   MLP's hidden units;
//! - **heads**: the heads of every attention node.
//!
//! Depth groups: the layers that carry LRP rules (convolutions and linear layers) are split into `fc` —
//! Linear layers applied to a flat (B, D) vector, i.e. after the spatial / token reduction —
//! and, by forward order, `low` (first quarter), `mid` and `high` (last quarter).

use crate::error::Result;
use crate::graph::{output_ranks, Graph, NodeId, Units};
use crate::prune::dependency::{channel_spaces, ChannelSpaces};
use serde::{Deserialize, Serialize};

/// The kind of structural component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// Conv output channels.
    Filters,
    /// Hidden Linear output units.
    Neurons,
    /// Attention heads.
    Heads,
}

crate::from_str_by_serde!(ComponentKind: "filters, neurons or heads");

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ComponentKind::Filters => "filters",
            ComponentKind::Neurons => "neurons",
            ComponentKind::Heads => "heads",
        })
    }
}

/// The kinds of component a set holds: one (`neurons`), or several ranked and removed together
/// under one budget (`neurons+heads`: a transformer's MLP neurons and attention heads). Written
/// `KIND[+KIND…]` (`,` is read as `+`); the kinds are kept in a fixed order, each once, so equal
/// sets print alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Components(Vec<ComponentKind>);

impl Components {
    /// The set of `kinds` (at least one; repeats are dropped).
    pub fn new(kinds: impl IntoIterator<Item = ComponentKind>) -> Result<Self> {
        let mut k: Vec<ComponentKind> = kinds.into_iter().collect();
        k.sort_unstable();
        k.dedup();
        if k.is_empty() {
            crate::bail!("no component kind given; use filters, neurons or heads (several joined by `+`)");
        }
        Ok(Components(k))
    }

    /// The kinds, in their fixed order.
    pub fn kinds(&self) -> &[ComponentKind] {
        &self.0
    }

    pub fn contains(&self, kind: ComponentKind) -> bool {
        self.0.contains(&kind)
    }

    /// The kind, where the set holds one.
    pub fn single(&self) -> Option<ComponentKind> {
        match self.0[..] {
            [k] => Some(k),
            _ => None,
        }
    }
}

impl From<ComponentKind> for Components {
    fn from(kind: ComponentKind) -> Self {
        Components(vec![kind])
    }
}

impl std::fmt::Display for Components {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.0.iter().map(|k| k.to_string()).collect();
        f.write_str(&names.join("+"))
    }
}

impl std::str::FromStr for Components {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        let kinds: Vec<ComponentKind> = s
            .split(['+', ','])
            .map(|k| k.trim().parse())
            .collect::<Result<_>>()
            .map_err(|e| crate::Error::invalid(format!("{e} (several kinds are joined by `+`: neurons+heads)")))?;
        Components::new(kinds)
    }
}

impl Serialize for Components {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Components {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
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

/// Depth group of every layer that carries an LRP rule (convolutions, linear layers; None for
/// other nodes).
pub fn depth_groups(graph: &Graph) -> Vec<Option<DepthGroup>> {
    let ranks = output_ranks(graph.spec());
    let mut groups = vec![None; graph.nodes().len()];
    let mut deep = Vec::new();
    for (id, n) in graph.nodes().iter().enumerate() {
        if !n.op.kind().takes_rule() {
            continue;
        }
        if ranks[n.inputs[0]] <= 2 {
            groups[id] = Some(DepthGroup::Fc);
        } else {
            deep.push(id);
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

/// One layer's units.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComponentLayer {
    /// The node that owns the units (Conv2d, Linear or Attention).
    pub node: NodeId,
    /// What its units are.
    pub kind: ComponentKind,
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
    /// Where this layer's channels travel before they merge with others: its own output, its
    /// BatchNorm, a depthwise conv after it (outputs), and the layers that read them (inputs).
    /// Masking a unit zeroes it at every carrier, which equals removing it.
    #[serde(default)]
    pub carriers: Vec<Carrier>,
}

/// A node whose output (or input) holds a layer's channels: unit u sits at positions
/// `offset + u·block .. offset + (u + 1)·block` (block > 1 after a flatten).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carrier {
    pub node: NodeId,
    pub offset: i64,
    pub block: i64,
    /// Whether the node reads the channels (its per-input-channel parameters are zeroed)
    /// rather than producing them (its per-output-channel parameters are zeroed).
    pub reads: bool,
}

impl Carrier {
    /// Positions of the given units.
    pub fn positions(&self, units: &[i64]) -> Vec<i64> {
        units.iter().flat_map(|u| (self.offset + u * self.block)..(self.offset + (u + 1) * self.block)).collect()
    }
}

/// All units of the chosen kinds in a graph, in forward order, numbered globally.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComponentSet {
    /// (`kind` in JSON: `filters`, or `neurons+heads` for several.)
    #[serde(rename = "kind")]
    pub kinds: Components,
    pub layers: Vec<ComponentLayer>,
    pub total: usize,
}

/// Whether node `c` consumes its input's channels with weights per input channel (a linear
/// layer or convolution), so that removing channels there is slicing its weight.
fn reads_channels(graph: &Graph, c: NodeId) -> bool {
    let k = graph.node(c).op.kind();
    k.channels() == crate::graph::ops::ChannelMap::New && !k.channel_params().input.is_empty()
}

impl ComponentSet {
    /// Finds every unit of the given kinds in `graph` (a kind, or several: see [`Components`]).
    /// Every kind asked for must be present.
    pub fn find(graph: &Graph, kinds: impl Into<Components>) -> Result<Self> {
        let kinds = kinds.into();
        let mut layers: Vec<ComponentLayer> = Vec::new();
        for &kind in kinds.kinds() {
            layers.extend(Self::find_kind(graph, kind)?);
        }
        // One numbering in forward order (a node owns units of one kind only).
        layers.sort_by_key(|l| l.node);
        let mut offset = 0;
        for l in &mut layers {
            l.offset = offset;
            offset += l.count;
        }
        Ok(ComponentSet { kinds, layers, total: offset })
    }

    /// The layers of one kind (their offsets count from 0).
    fn find_kind(graph: &Graph, kind: ComponentKind) -> Result<Vec<ComponentLayer>> {
        let groups = depth_groups(graph);
        let consumers = graph.consumers();
        let ranks = output_ranks(graph.spec());
        let spaces = if kind == ComponentKind::Heads { None } else { Some(channel_spaces(graph)?) };
        let mut layers = Vec::new();
        let mut offset = 0;
        for (id, n) in graph.nodes().iter().enumerate() {
            let (count, head_dim, group) = match (n.op.kind().units(), kind) {
                (Some(Units::Channels(c)), ComponentKind::Filters) if ranks[id] == 4 => (c as usize, None, groups[id]),
                // Hidden units: channels of a vector / token layer that may lose them (so never
                // the classifier, nor a projection into a residual stream or into attention).
                (Some(Units::Channels(c)), ComponentKind::Neurons)
                    if ranks[id] < 4 && spaces.as_ref().is_some_and(|s| s.blocked_at(id).is_none()) =>
                {
                    (c as usize, None, groups[id])
                }
                // A head's output is removed with the columns of the projections that read it;
                // read by anything else (a pooling), its channels cannot go.
                (Some(Units::Heads { heads, head_dim }), ComponentKind::Heads)
                    if consumers[id].iter().all(|&c| reads_channels(graph, c)) =>
                {
                    // Heads take the group of the projection that consumes them.
                    let g = consumers[id].iter().find_map(|&c| groups[c]).or(Some(DepthGroup::Mid));
                    (heads as usize, Some(head_dim), g)
                }
                _ => continue,
            };
            let read_at = graph.following_batchnorm(id).unwrap_or(id);
            let carriers = spaces.as_ref().map(|s| carriers(graph, s, id)).unwrap_or_default();
            layers.push(ComponentLayer {
                node: id,
                kind,
                name: n.name.clone(),
                count,
                offset,
                group: group
                    .ok_or_else(|| crate::Error::invalid(format!("`{}` owns units but carries no LRP rule", n.name)))?,
                read_at,
                head_dim,
                carriers,
            });
            offset += count;
        }
        if offset == 0 {
            crate::bail!(
                "the model has no prunable {kind} ({}); choose another --component",
                match kind {
                    ComponentKind::Filters => "no convolution with channels of its own",
                    ComponentKind::Neurons => "no hidden linear layer whose outputs may be removed",
                    ComponentKind::Heads => "no attention layer whose heads feed an output projection",
                }
            );
        }
        Ok(layers)
    }

    /// The layer holding global unit `index`, and the unit's index within it.
    pub fn locate(&self, index: usize) -> (&ComponentLayer, usize) {
        let pos = self.layers.partition_point(|l| l.offset + l.count <= index);
        let l = &self.layers[pos];
        (l, index - l.offset)
    }

    /// The default kind for a graph: heads-and-neurons models (with attention) → neurons;
    /// otherwise filters, unless no filter can be removed and neurons can (an all-MLP model
    /// such as MLP-Mixer, whose only convolution feeds LayerNorms).
    pub fn default_kind(graph: &Graph) -> ComponentKind {
        if graph.nodes().iter().any(|n| matches!(n.op.kind().units(), Some(Units::Heads { .. }))) {
            return ComponentKind::Neurons;
        }
        let removable = |kind| {
            ComponentSet::find(graph, kind)
                .and_then(|c| coupled_groups(graph, &c))
                .is_ok_and(|groups| groups.iter().any(|g| g.blocked.is_none()))
        };
        if !removable(ComponentKind::Filters) && removable(ComponentKind::Neurons) {
            ComponentKind::Neurons
        } else {
            ComponentKind::Filters
        }
    }
}

/// Where `owner`'s channels sit in `atoms` (offset, block), if they are all there in order.
fn locate(atoms: &[usize], own: &[usize]) -> Option<(i64, i64)> {
    let first = *own.first()?;
    let offset = atoms.iter().position(|&a| a == first)?;
    let block = atoms[offset..].iter().take_while(|&&a| a == first).count();
    let ok = own.iter().enumerate().all(|(u, &a)| {
        atoms.get(offset + u * block..offset + (u + 1) * block).is_some_and(|s| s.iter().all(|&x| x == a))
    });
    ok.then_some((offset as i64, block as i64))
}

/// The carriers of `owner`'s channels (see [`ComponentLayer::carriers`]).
fn carriers(graph: &Graph, spaces: &ChannelSpaces, owner: NodeId) -> Vec<Carrier> {
    let own = &spaces.atoms[owner];
    let mut out = vec![Carrier { node: owner, offset: 0, block: 1, reads: false }];
    for (id, n) in graph.nodes().iter().enumerate().skip(owner + 1) {
        let params = n.op.kind().channel_params();
        if !params.output.is_empty() {
            if let Some((offset, block)) = locate(&spaces.atoms[id], own) {
                out.push(Carrier { node: id, offset, block, reads: false });
                continue;
            }
        }
        if let (false, Some(&x)) = (params.input.is_empty(), n.inputs.first()) {
            if let Some((offset, block)) = locate(&spaces.atoms[x], own) {
                out.push(Carrier { node: id, offset, block, reads: true });
            }
        }
    }
    out
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
    /// Channel class of each unit (empty for heads).
    #[serde(skip)]
    pub classes: Vec<usize>,
    /// Proper subsets of the units that some layer holds alone, as unit indices: the parts of
    /// a split (Res2Net's chunks, a channel slice). Each must keep a unit, or that layer would
    /// be left with no channels.
    #[serde(skip)]
    pub segments: Vec<Vec<usize>>,
}

impl CoupledGroup {
    /// The group's name in the model's own terms: its layer's name, or for coupled layers the
    /// module they share (`model.layers.3.mlp` for a gated MLP's gate and up projections; the
    /// first member's name where they share none).
    pub fn name(&self, comps: &ComponentSet) -> String {
        let names: Vec<&str> = self.members.iter().map(|&m| comps.layers[m].name.as_str()).collect();
        let Some((first, rest)) = names.split_first() else { return String::new() };
        if rest.is_empty() {
            return first.to_string();
        }
        let parts: Vec<&str> = first.split('.').collect();
        let shared = (0..parts.len())
            .rev()
            .find(|&k| rest.iter().all(|n| n.split('.').take(k).eq(parts[..k].iter().copied())))
            .unwrap_or(0);
        if shared == 0 {
            first.to_string()
        } else {
            parts[..shared].join(".")
        }
    }
}

/// The dependency groups of a component set: layers whose channels are one class index by
/// index (filters coupled through residual additions or gates) share a group; every other layer
/// (and every attention layer's heads) is a group of its own. Layers whose channels are tied to
/// other layers' channels at other positions (through a concatenation and an addition) are
/// blocked, with the reason.
pub fn coupled_groups(graph: &Graph, comps: &ComponentSet) -> Result<Vec<CoupledGroup>> {
    let mut groups: Vec<CoupledGroup> = Vec::new();
    // Heads do not travel as channels: each attention layer's heads are a group of their own.
    for (i, l) in comps.layers.iter().enumerate().filter(|(_, l)| l.kind == ComponentKind::Heads) {
        groups.push(CoupledGroup {
            members: vec![i],
            units: l.count,
            blocked: None,
            classes: Vec::new(),
            segments: Vec::new(),
        });
    }
    if groups.len() == comps.layers.len() {
        return Ok(groups);
    }
    let sp = channel_spaces(graph)?;
    for (i, l) in comps.layers.iter().enumerate().filter(|(_, l)| l.kind != ComponentKind::Heads) {
        let classes = sp.classes(l.node);
        match groups.iter_mut().find(|g| !g.classes.is_empty() && g.classes == classes) {
            Some(g) => g.members.push(i),
            None => groups.push(CoupledGroup {
                members: vec![i],
                units: l.count,
                blocked: sp.blocked_at(l.node),
                classes,
                segments: Vec::new(),
            }),
        }
    }
    // The channels of any node that come from one group alone, where they are part of it.
    let mut unit_of: std::collections::HashMap<usize, (usize, usize)> = std::collections::HashMap::new();
    for (gi, g) in groups.iter().enumerate() {
        for (u, &c) in g.classes.iter().enumerate() {
            unit_of.entry(c).or_insert((gi, u));
        }
    }
    for id in 0..graph.nodes().len() {
        let held: Option<Vec<(usize, usize)>> = sp.classes(id).iter().map(|c| unit_of.get(c).copied()).collect();
        let Some(held) = held.filter(|h| !h.is_empty()) else { continue };
        let gi = held[0].0;
        if held.iter().any(|&(g, _)| g != gi) {
            continue;
        }
        let mut units: Vec<usize> = held.iter().map(|&(_, u)| u).collect();
        units.sort_unstable();
        units.dedup();
        if units.len() < groups[gi].units && !groups[gi].segments.contains(&units) {
            groups[gi].segments.push(units);
        }
    }
    // A class claimed by two groups, or twice by one, cannot be removed unit by unit.
    let mut owner: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let mut tangled = vec![false; groups.len()];
    for (gi, g) in groups.iter().enumerate() {
        for &c in &g.classes {
            if let Some(&other) = owner.get(&c) {
                tangled[gi] = true;
                tangled[other] = true;
            }
            owner.insert(c, gi);
        }
    }
    for (g, t) in groups.iter_mut().zip(tangled) {
        if t && g.blocked.is_none() {
            g.blocked = Some("its channels are tied to other layers' channels at different positions".into());
        }
    }
    // In forward order of their first layers, heads and channels alike.
    groups.sort_by_key(|g| g.members[0]);
    Ok(groups)
}
