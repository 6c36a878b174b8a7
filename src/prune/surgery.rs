//! Physical pruning: a graph whose tensors are really smaller.
//!
//! Units are removed per dependency group ([`crate::prune::dependency`]): filters coupled through
//! residual additions go together, scored by the **mean** of their members' scores (so a
//! coupled group competes with single layers on the same scale); the global ranking then takes
//! the longest prefix of group units whose component count does not exceed floor(N·rate).
//! A conv layer always keeps at least one channel: the ranking leaves out the most relevant unit
//! of every filter group, and of every part of one that a layer holds alone (a split's chunk),
//! and surgery refuses a selection that would empty one. MLP neurons and attention heads may all
//! go (the block then only adds its bias to the residual stream), which the report says.

use crate::attribution::Scores;
use crate::error::Result;
use crate::graph::{Graph, NodeId, ParamStore};
use crate::prune::components::{coupled_groups, ComponentKind, ComponentSet, CoupledGroup};
use crate::prune::dependency::channel_spaces;
use crate::prune::plan::Plan;
use crate::prune::ranking::{check_rate, PruneOrder};
use std::collections::{BTreeMap, BTreeSet};
use std::collections::{HashMap, HashSet};
use tch::Tensor;

/// Group units ranked by pooled score.
pub struct GroupRanking {
    pub groups: Vec<CoupledGroup>,
    /// (group, unit) in pruning order; blocked groups are left out.
    pub order: Vec<(usize, usize)>,
    /// Components in the set (N of floor(N·rate)).
    pub total_components: usize,
    /// Every group's pooled unit scores (the mean over its members), by group and unit.
    pub pooled: Vec<Vec<f64>>,
    /// Keep every group's width a multiple of this (hardware-friendly widths, as Torch-Pruning's
    /// `round_to`); 1 = any width. Applied to every selection this ranking makes.
    pub round_to: usize,
    /// How a selection reads the order.
    pub arrangement: Arrangement,
}

/// How [`GroupRanking::selection`] and [`GroupRanking::prefix`] read the order.
#[derive(Clone, Debug, Default)]
pub enum Arrangement {
    /// Its longest prefix within the budget (the global ranking).
    #[default]
    Prefix,
    /// Uniform removal ([`GroupRanking::with_uniform`]): each offered unit's (rank within its
    /// block, from 1; block size).
    Uniform(HashMap<(usize, usize), (usize, usize)>),
    /// Whole blocks ([`GroupRanking::with_whole_blocks`]): the order in runs of one block
    /// each, by run length; a selection takes whole runs.
    Runs(Vec<usize>),
}

impl GroupRanking {
    pub fn new(graph: &Graph, comps: &ComponentSet, scores: &Scores, order: PruneOrder) -> Result<Self> {
        let groups = coupled_groups(graph, comps)?;
        let mut units: Vec<(f64, usize, usize)> = Vec::new();
        let mut all_pooled = Vec::with_capacity(groups.len());
        for (gi, g) in groups.iter().enumerate() {
            if g.blocked.is_some() {
                all_pooled.push(Vec::new());
                continue;
            }
            let pooled: Vec<f64> = (0..g.units)
                .map(|u| {
                    g.members.iter().map(|&m| scores.values[comps.layers[m].offset + u]).sum::<f64>()
                        / g.members.len() as f64
                })
                .collect();
            // Filters: the group's most relevant channel is never offered (a conv keeps ≥ 1
            // channel), nor the most relevant of each part a layer holds alone (a split's chunk).
            let mut keep: HashSet<usize> = HashSet::new();
            if comps.layers[g.members[0]].kind == ComponentKind::Filters {
                let all: Vec<usize> = (0..g.units).collect();
                for part in std::iter::once(&all).chain(&g.segments) {
                    let best = part.iter().copied().max_by(|&a, &b| pooled[a].total_cmp(&pooled[b]).then(b.cmp(&a)));
                    keep.extend(best);
                }
            }
            for (u, &s) in pooled.iter().enumerate() {
                if !keep.contains(&u) {
                    units.push((s, gi, u));
                }
            }
            all_pooled.push(pooled);
        }
        units.sort_by(|a, b| {
            let c = a.0.total_cmp(&b.0);
            let c = if order == PruneOrder::MostRelevantFirst { c.reverse() } else { c };
            c.then((a.1, a.2).cmp(&(b.1, b.2)))
        });
        Ok(GroupRanking {
            groups,
            order: units.into_iter().map(|(_, g, u)| (g, u)).collect(),
            total_components: comps.total,
            pooled: all_pooled,
            round_to: 1,
            arrangement: Arrangement::Prefix,
        })
    }

    /// Each group's units in blocks ([`crate::graph::ops::OpKind::unit_blocks`]; one block
    /// where the op has none), as sizes in unit order.
    fn blocks(&self, graph: &Graph, comps: &ComponentSet) -> Vec<Vec<usize>> {
        self.groups
            .iter()
            .map(|g| {
                let sizes = match g.members[..] {
                    [m] => graph.node(comps.layers[m].node).op.kind().unit_blocks(),
                    _ => Vec::new(),
                };
                if sizes.is_empty() || sizes.iter().sum::<usize>() != g.units {
                    vec![g.units]
                } else {
                    sizes
                }
            })
            .collect()
    }

    /// Removal by whole blocks: where a group's op has blocks (grouped-query attention: the
    /// query heads of one key/value head), or with `whole_groups` every group as one block,
    /// they go whole, least relevant first by the mean of their units' pooled scores; a group
    /// without blocks offers its units one by one, as before. A selection then takes the
    /// longest prefix of whole blocks within its budget.
    pub fn with_whole_blocks(mut self, graph: &Graph, comps: &ComponentSet, whole_groups: bool) -> Self {
        let blocks =
            if whole_groups { self.groups.iter().map(|g| vec![g.units]).collect() } else { self.blocks(graph, comps) };
        let mut runs: Vec<(f64, Vec<(usize, usize)>)> = Vec::new();
        let mut members: HashMap<(usize, usize), Vec<(usize, usize)>> = HashMap::new();
        for &(g, u) in &self.order {
            if whole_groups || blocks[g].len() > 1 {
                let b = block_index(&blocks[g], u);
                members.entry((g, b)).or_default().push((g, u));
            } else {
                runs.push((self.pooled[g][u], vec![(g, u)]));
            }
        }
        for ((g, b), units) in members {
            // Only blocks whose every unit is offered can go whole.
            if units.len() == blocks[g][b] {
                let mean = units.iter().map(|&(g, u)| self.pooled[g][u]).sum::<f64>() / units.len() as f64;
                runs.push((mean, units));
            }
        }
        let first = |r: &Vec<(usize, usize)>| r[0];
        runs.sort_by(|a, b| a.0.total_cmp(&b.0).then(first(&a.1).cmp(&first(&b.1))));
        self.order = runs.iter().flat_map(|r| r.1.iter().copied()).collect();
        self.arrangement = Arrangement::Runs(runs.iter().map(|r| r.1.len()).collect());
        self
    }

    /// Uniform removal, Torch-Pruning's local pruning: every block of every group loses the
    /// same share of its units, its least relevant first (in this ranking's order). A block is
    /// a group's units, or with grouped-query attention the query heads of one key/value head
    /// ([`crate::graph::ops::OpKind::unit_blocks`]), so that equal groups stay equal. The units
    /// are reordered by their rank within their block as a share of the block, and
    /// [`GroupRanking::selection`] then takes ⌊rate · size⌋ units of every block: layers of equal
    /// widths keep equal widths.
    pub fn with_uniform(mut self, graph: &Graph, comps: &ComponentSet) -> Self {
        let blocks = self.blocks(graph, comps);
        let mut taken: HashMap<(usize, usize), usize> = HashMap::new();
        // (unit, (rank within its block, block size), block)
        type Entry = ((usize, usize), (usize, usize), usize);
        let mut entries: Vec<Entry> = Vec::with_capacity(self.order.len());
        for &(g, u) in &self.order {
            let b = block_index(&blocks[g], u);
            let rank = taken.entry((g, b)).or_default();
            *rank += 1;
            entries.push(((g, u), (*rank, blocks[g][b]), b));
        }
        // Rank as a share of the block (compared exactly: r1·s2 against r2·s1).
        entries.sort_by(|a, b| {
            let ((ga, _), (ra, sa), ba) = *a;
            let ((gb, _), (rb, sb), bb) = *b;
            (ra * sb).cmp(&(rb * sa)).then((ga, ba, ra).cmp(&(gb, bb, rb)))
        });
        self.order = entries.iter().map(|e| e.0).collect();
        self.arrangement = Arrangement::Uniform(entries.into_iter().map(|(unit, rank, _)| (unit, rank)).collect());
        self
    }

    /// Keeps every group's width a multiple of `k` in the selections made from now on.
    pub fn with_round_to(mut self, k: usize) -> Result<Self> {
        if k == 0 {
            crate::bail!("--round-to must be at least 1");
        }
        self.round_to = k;
        Ok(self)
    }

    /// Leaves the layers named in `ignored` (a layer's name, or a module prefix such as
    /// `layer4` for every layer under it) and every layer coupled to them out of the order, as
    /// Torch-Pruning's `ignored_layers` does. A name that matches no prunable layer is an error.
    pub fn with_ignored(mut self, comps: &ComponentSet, ignored: &[String]) -> Result<Self> {
        if ignored.is_empty() {
            return Ok(self);
        }
        let matches =
            |layer: &str, name: &str| layer == name || layer.strip_prefix(name).is_some_and(|r| r.starts_with('.'));
        for name in ignored {
            if !comps.layers.iter().any(|l| matches(&l.name, name)) {
                let known: Vec<&str> = comps.layers.iter().map(|l| l.name.as_str()).take(12).collect();
                crate::bail!(
                    "ignored layer `{name}` is not a prunable layer (of {}) or a module holding one; the {} are: {}{}",
                    comps.kinds,
                    comps.kinds,
                    known.join(", "),
                    if comps.layers.len() > known.len() { ", …" } else { "" }
                );
            }
        }
        let mut out = BTreeSet::new();
        for (gi, g) in self.groups.iter_mut().enumerate() {
            let hit = g.members.iter().find(|&&m| ignored.iter().any(|n| matches(&comps.layers[m].name, n)));
            if let (Some(&m), None) = (hit, &g.blocked) {
                g.blocked = Some(format!("`{}` is ignored", comps.layers[m].name));
                out.insert(gi);
            }
        }
        self.order.retain(|(g, _)| !out.contains(g));
        Ok(self)
    }

    /// `sel` with each group's kept width rounded up to a multiple of `round_to` (at most the
    /// group's width): the group's most relevant selected units (the last in the order) stay.
    pub fn rounded(&self, sel: &[(usize, usize)]) -> Vec<(usize, usize)> {
        if self.round_to <= 1 {
            return sel.to_vec();
        }
        let k = self.round_to;
        let mut count: BTreeMap<usize, usize> = BTreeMap::new();
        for &(g, _) in sel {
            *count.entry(g).or_default() += 1;
        }
        let allowed: BTreeMap<usize, usize> = count
            .iter()
            .map(|(&g, &r)| {
                let width = self.groups[g].units;
                let kept = (width - r).div_ceil(k) * k;
                (g, width - kept.min(width))
            })
            .collect();
        let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
        sel.iter()
            .copied()
            .filter(|&(g, _)| {
                let t = taken.entry(g).or_default();
                *t += 1;
                *t <= allowed[&g]
            })
            .collect()
    }

    /// The longest prefix of the order removing at most floor(N·rate) components; with uniform
    /// removal, ⌊rate · size⌋ units of every block.
    pub fn selection(&self, rate: f64) -> Result<Vec<(usize, usize)>> {
        check_rate(rate)?;
        let target = ((self.total_components as f64) * rate + 1e-9).floor() as usize;
        match &self.arrangement {
            Arrangement::Uniform(ranks) => {
                let sel: Vec<(usize, usize)> = self
                    .order
                    .iter()
                    .copied()
                    .filter(|unit| {
                        ranks.get(unit).is_some_and(|&(r, size)| r as f64 <= (size as f64 * rate + 1e-9).floor())
                    })
                    .collect();
                return Ok(self.rounded(&sel));
            }
            Arrangement::Runs(runs) => {
                let at = self.runs_within(runs, target, |s| self.components_in(s));
                return Ok(self.rounded(&self.order[..at]));
            }
            Arrangement::Prefix => {}
        }
        let mut used = 0;
        let mut sel = Vec::new();
        for &(g, u) in &self.order {
            let k = self.groups[g].members.len();
            if used + k > target {
                break;
            }
            used += k;
            sel.push((g, u));
        }
        Ok(self.rounded(&sel))
    }

    /// The first `k` units of the order (the nested selections a budget search walks through).
    pub fn prefix(&self, k: usize) -> Vec<(usize, usize)> {
        let k = match &self.arrangement {
            // Whole blocks only: the longest run boundary within k.
            Arrangement::Runs(runs) => self.runs_within(runs, k, <[(usize, usize)]>::len),
            _ => k.min(self.order.len()),
        };
        self.rounded(&self.order[..k])
    }

    /// The length of the longest prefix of whole `runs` of the order whose `cost` stays
    /// within `budget`.
    fn runs_within(&self, runs: &[usize], budget: usize, cost: impl Fn(&[(usize, usize)]) -> usize) -> usize {
        let (mut used, mut at) = (0, 0);
        for &n in runs {
            let c = cost(&self.order[at..at + n]);
            if used + c > budget {
                break;
            }
            used += c;
            at += n;
        }
        at
    }

    /// Components removed by a selection (each unit counts once per member layer).
    pub fn components_in(&self, sel: &[(usize, usize)]) -> usize {
        sel.iter().map(|&(g, _)| self.groups[g].members.len()).sum()
    }

    /// Global component indices of every member of the selected units (for masks).
    pub fn component_indices(&self, comps: &ComponentSet, sel: &[(usize, usize)]) -> Vec<usize> {
        let mut v: Vec<usize> = sel
            .iter()
            .flat_map(|&(g, u)| self.groups[g].members.iter().map(move |&m| comps.layers[m].offset + u))
            .collect();
        v.sort_unstable();
        v
    }
}

/// The block of `blocks` (sizes in unit order) that holds unit `u`.
fn block_index(blocks: &[usize], u: usize) -> usize {
    let mut end = 0;
    blocks
        .iter()
        .position(|&b| {
            end += b;
            u < end
        })
        .unwrap_or(0)
}

/// What surgery did.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SurgeryReport {
    pub removed_units: usize,
    pub removed_components: usize,
    /// Layers that lost every unit (said, not hidden).
    pub emptied: Vec<String>,
    /// What was kept, per parameter and per layer (written beside the report, not in it).
    #[serde(skip)]
    pub plan: Plan,
}

fn index(v: &[i64]) -> Tensor {
    Tensor::from_slice(v)
}

/// Removes the selected group units; returns a new graph that owns all its parameters (the
/// input is neither modified nor aliased: training the result in place leaves the source as it was).
pub fn prune(
    graph: &Graph,
    comps: &ComponentSet,
    ranking: &GroupRanking,
    sel: &[(usize, usize)],
) -> Result<(Graph, SurgeryReport)> {
    let mut removed: BTreeMap<usize, BTreeSet<i64>> = BTreeMap::new();
    for &(g, u) in sel {
        if let Some(why) = &ranking.groups[g].blocked {
            crate::bail!("cannot remove units of `{}`: {why}", comps.layers[ranking.groups[g].members[0]].name);
        }
        removed.entry(g).or_default().insert(u as i64);
    }
    let mut report = SurgeryReport::default();
    // Kept output channels, and kept channels of input 0, of every node that changes.
    let mut out_keep: BTreeMap<NodeId, Vec<i64>> = BTreeMap::new();
    let mut in_keep: BTreeMap<NodeId, Vec<i64>> = BTreeMap::new();
    // Heads: each attention layer's own holders. Channels (filters, neurons): every node whose
    // channels are of a removed class. The two never edit the same node's same side.
    let is_heads = |g: usize| comps.layers[ranking.groups[g].members[0]].kind == ComponentKind::Heads;
    for (&g, units) in removed.iter().filter(|(&g, _)| is_heads(g)) {
        let layer = &comps.layers[ranking.groups[g].members[0]];
        let node = graph.node(layer.node);
        let holders = graph.unit_holders(layer.node);
        if holders.is_empty() {
            crate::bail!("`{}` ({}) has no heads", node.name, node.op.kind_name());
        }
        let keep: Vec<i64> = (0..layer.count as i64).filter(|h| !units.contains(h)).collect();
        report.plan.keep_units(&layer.name, layer.count as i64, keep.clone());
        if keep.is_empty() {
            report.emptied.push(layer.name.clone());
        }
        report.removed_units += units.len();
        report.removed_components += units.len();
        // Every holder keeps the kept units' channels: a head's rows of the q, k, v
        // projections, its columns of the output projection, its share of the context.
        for h in holders {
            let kept = node.op.kind().unit_positions(&h.span, layer.count as i64, &keep);
            let side = if h.span.reads() { &mut in_keep } else { &mut out_keep };
            for n in h.nodes {
                side.insert(n, kept.clone());
            }
        }
    }
    if removed.keys().any(|&g| !is_heads(g)) {
        let sp = channel_spaces(graph)?;
        let mut gone: HashSet<usize> = HashSet::new();
        for (&g, units) in removed.iter().filter(|(&g, _)| !is_heads(g)) {
            let group = &ranking.groups[g];
            report.removed_units += units.len();
            report.removed_components += units.len() * group.members.len();
            if units.len() == group.units {
                let names: Vec<&str> = group.members.iter().map(|&m| comps.layers[m].name.as_str()).collect();
                if comps.layers[group.members[0]].kind == ComponentKind::Filters {
                    crate::bail!(
                        "the selection removes every channel of {names:?}; keep at least one (lower the rate)"
                    );
                }
                report.emptied.extend(names.iter().map(|s| s.to_string()));
            }
            gone.extend(units.iter().map(|&u| group.classes[u as usize]));
            let keep: Vec<i64> = (0..group.units as i64).filter(|u| !units.contains(u)).collect();
            for &m in &group.members {
                report.plan.keep_units(&comps.layers[m].name, group.units as i64, keep.clone());
            }
        }
        let kept = |id: NodeId| -> Option<Vec<i64>> {
            let classes = sp.classes(id);
            classes
                .iter()
                .any(|c| gone.contains(c))
                .then(|| (0..classes.len() as i64).filter(|&i| !gone.contains(&classes[i as usize])).collect())
        };
        for (id, node) in graph.nodes().iter().enumerate() {
            let out = kept(id).and_then(|k| out_keep.insert(id, k));
            let inp = node.inputs.first().and_then(|&x| kept(x)).and_then(|k| in_keep.insert(id, k));
            if out.is_some() || inp.is_some() {
                crate::bail!(
                    "`{}` holds both heads and channels that the selection removes; prune the two kinds apart",
                    node.name
                );
            }
        }
    }
    let mut spec = graph.spec().clone();
    let mut params = ParamStore::default();
    // Copies, not views: the pruned model is trained in place by fine-tuning, and a view would
    // train the source with it (the distillation teacher and the reported unpruned model drifted
    // that way where a layer kept all its units).
    for (k, t) in graph.params().iter() {
        params.insert(k.clone(), t.detach().copy());
    }
    let edited: BTreeSet<NodeId> = out_keep.keys().chain(in_keep.keys()).copied().collect();
    for id in edited {
        let node = &mut spec.nodes[id];
        let (out, inp) = (out_keep.get(&id), in_keep.get(&id));
        let cp = node.op.kind().channel_params();
        let edits = cp
            .output
            .iter()
            .filter_map(|p| out.map(|k| (p, k)))
            .chain(cp.input.iter().filter_map(|p| inp.map(|k| (p, k))));
        for (&(role, dim), keep) in edits {
            let key = node
                .params
                .get(&role)
                .cloned()
                .ok_or_else(|| crate::Error::invalid(format!("node `{}` has no parameter `{role}`", node.name)))?;
            let t = params.get(&key).expect("bound parameter");
            report.plan.keep_param(&key, &t.size(), dim as usize, keep);
            let t = t.f_index_select(dim, &index(keep).f_to_device(t.device())?)?;
            params.insert(key, t);
        }
        node.op.kind_mut().reindex(out.map(Vec::as_slice), inp.map(Vec::as_slice));
    }
    let g = Graph::new(spec, params)?;
    Ok((g, report))
}
