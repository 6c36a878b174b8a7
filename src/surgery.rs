//! Physical pruning: a graph whose tensors are really smaller.
//!
//! Units are removed per dependency group ([`crate::dependency`]): filters coupled through
//! residual additions go together, scored by the **mean** of their members' scores (so a
//! coupled group competes with single layers on the same scale); the global ranking then takes
//! the longest prefix of group units whose component count does not exceed floor(N·rate).
//! A conv layer always keeps at least one channel: the ranking leaves out the most relevant unit
//! of every filter group (and surgery refuses a selection that would empty one). MLP neurons
//! and attention heads may all go (the block then only adds its bias to the residual stream),
//! which the report says.

use crate::attribution::Scores;
use crate::components::{ComponentKind, ComponentSet};
use crate::dependency::{channel_spaces, coupled_groups, CoupledGroup};
use crate::error::Result;
use crate::graph::{Graph, NodeId, Op, ParamStore};
use crate::ranking::{check_rate, PruneOrder};
use std::collections::{BTreeMap, BTreeSet};
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
            // Filters: the group's most relevant channel is never offered (a conv keeps ≥ 1 channel).
            let keep = match comps.kind {
                ComponentKind::Filters => (0..g.units).max_by(|&a, &b| pooled[a].total_cmp(&pooled[b]).then(b.cmp(&a))),
                _ => None,
            };
            for (u, &s) in pooled.iter().enumerate() {
                if Some(u) != keep {
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
        })
    }

    /// Keeps every group's width a multiple of `k` in the selections made from now on.
    pub fn with_round_to(mut self, k: usize) -> Result<Self> {
        if k == 0 {
            crate::bail!("--round-to must be at least 1");
        }
        self.round_to = k;
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

    /// The longest prefix of the order removing at most floor(N·rate) components.
    pub fn selection(&self, rate: f64) -> Result<Vec<(usize, usize)>> {
        check_rate(rate)?;
        let target = ((self.total_components as f64) * rate + 1e-9).floor() as usize;
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
        self.rounded(&self.order[..k.min(self.order.len())])
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

/// What surgery did.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SurgeryReport {
    pub removed_units: usize,
    pub removed_components: usize,
    /// Layers that lost every unit (said, not hidden).
    pub emptied: Vec<String>,
}

#[derive(Default)]
struct NodeEdit {
    out_keep: Option<Vec<i64>>,
    in_keep: Option<Vec<i64>>,
    heads_keep: Option<Vec<i64>>,
}

fn index(v: &[i64]) -> Tensor {
    Tensor::from_slice(v)
}

/// Rows (or columns) of whole heads: `keep` heads of `dh` dims each.
fn head_rows(keep: &[i64], dh: i64, offset: i64) -> Vec<i64> {
    keep.iter().flat_map(|&h| (offset + h * dh)..(offset + (h + 1) * dh)).collect()
}

/// Removes the selected group units; returns a new graph (the input is not modified).
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
    let mut edits: BTreeMap<NodeId, NodeEdit> = BTreeMap::new();
    let consumers = graph.consumers();
    match comps.kind {
        ComponentKind::Heads => {
            for (&g, units) in &removed {
                let layer = &comps.layers[ranking.groups[g].members[0]];
                let keep: Vec<i64> = (0..layer.count as i64).filter(|h| !units.contains(h)).collect();
                if keep.is_empty() {
                    report.emptied.push(layer.name.clone());
                }
                report.removed_units += units.len();
                report.removed_components += units.len();
                edits.entry(layer.node).or_default().heads_keep = Some(keep);
            }
        }
        ComponentKind::Filters | ComponentKind::Neurons => {
            let sp = channel_spaces(graph)?;
            for (&g, units) in &removed {
                let group = &ranking.groups[g];
                let space = sp.space_of[comps.layers[group.members[0]].node];
                let keep: Vec<i64> = (0..group.units as i64).filter(|c| !units.contains(c)).collect();
                report.removed_units += units.len();
                report.removed_components += units.len() * group.members.len();
                if keep.is_empty() {
                    let names: Vec<&str> = group.members.iter().map(|&m| comps.layers[m].name.as_str()).collect();
                    if comps.kind == ComponentKind::Filters {
                        crate::bail!(
                            "the selection removes every channel of {names:?}; keep at least one (lower the rate)"
                        );
                    }
                    report.emptied.extend(names.iter().map(|s| s.to_string()));
                }
                for (id, node) in graph.nodes().iter().enumerate() {
                    let out_here = sp.space_of[id] == space;
                    let in_here = node.inputs.first().is_some_and(|&i| sp.space_of[i] == space);
                    match &node.op {
                        Op::Conv2d(c) if c.groups > 1 && out_here => {
                            edits.entry(id).or_default().out_keep = Some(keep.clone())
                        }
                        Op::Conv2d(_) | Op::Linear { .. } if out_here => {
                            edits.entry(id).or_default().out_keep = Some(keep.clone())
                        }
                        Op::BatchNorm2d { .. } if out_here => {
                            edits.entry(id).or_default().out_keep = Some(keep.clone())
                        }
                        Op::Conv2d(_) | Op::Linear { .. } if in_here => {
                            edits.entry(id).or_default().in_keep = Some(keep.clone())
                        }
                        Op::Flatten { .. } if in_here => {
                            let block = sp.flatten_block[id].unwrap_or(1);
                            let cols: Vec<i64> = keep.iter().flat_map(|&c| (c * block)..((c + 1) * block)).collect();
                            for &c in &consumers[id] {
                                edits.entry(c).or_default().in_keep = Some(cols.clone());
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let mut spec = graph.spec().clone();
    let mut params = ParamStore::default();
    for (k, t) in graph.params().iter() {
        params.insert(k.clone(), t.shallow_clone());
    }
    // Heads first turn into row / column edits of their projections.
    let mut proj_rows: BTreeMap<NodeId, Vec<i64>> = BTreeMap::new();
    let mut proj_cols: BTreeMap<NodeId, Vec<i64>> = BTreeMap::new();
    for (&id, e) in &edits {
        if let (Some(keep), Op::Attention { head_dim, packed, heads }) = (&e.heads_keep, &graph.node(id).op) {
            let node = graph.node(id);
            if *packed {
                let w = heads * head_dim;
                let rows: Vec<i64> = (0..3).flat_map(|part| head_rows(keep, *head_dim, part * w)).collect();
                proj_rows.insert(node.inputs[0], rows);
            } else {
                for &p in &node.inputs[..3] {
                    proj_rows.insert(p, head_rows(keep, *head_dim, 0));
                }
            }
            for &c in &consumers[id] {
                proj_cols.insert(c, head_rows(keep, *head_dim, 0));
            }
            if let Op::Attention { heads, .. } = &mut spec.nodes[id].op {
                *heads = keep.len() as i64;
            }
        }
    }
    for (id, rows) in proj_rows {
        edits.entry(id).or_default().out_keep = Some(rows);
    }
    for (id, cols) in proj_cols {
        edits.entry(id).or_default().in_keep = Some(cols);
    }
    for (&id, e) in &edits {
        let node = &mut spec.nodes[id];
        let key = |r: &str| node.params.get(r).cloned();
        match &mut node.op {
            Op::Conv2d(c) => {
                let depthwise = c.groups > 1;
                let wkey = key("weight").expect("conv weight");
                let mut w = params.get(&wkey).expect("weight").shallow_clone();
                if let Some(k) = &e.out_keep {
                    w = w.f_index_select(0, &index(k))?;
                    c.out_channels = k.len() as i64;
                    if depthwise {
                        c.in_channels = k.len() as i64;
                        c.groups = k.len() as i64;
                    }
                    if let Some(bk) = key("bias") {
                        let b = params.get(&bk).expect("bias").f_index_select(0, &index(k))?;
                        params.insert(bk, b);
                    }
                }
                if let (Some(k), false) = (&e.in_keep, depthwise) {
                    w = w.f_index_select(1, &index(k))?;
                    c.in_channels = k.len() as i64;
                }
                params.insert(wkey, w);
            }
            Op::Linear { in_features, out_features, .. } => {
                let wkey = key("weight").expect("linear weight");
                let mut w = params.get(&wkey).expect("weight").shallow_clone();
                if let Some(k) = &e.out_keep {
                    w = w.f_index_select(0, &index(k))?;
                    *out_features = k.len() as i64;
                    if let Some(bk) = key("bias") {
                        let b = params.get(&bk).expect("bias").f_index_select(0, &index(k))?;
                        params.insert(bk, b);
                    }
                }
                if let Some(k) = &e.in_keep {
                    w = w.f_index_select(1, &index(k))?;
                    *in_features = k.len() as i64;
                }
                params.insert(wkey, w);
            }
            Op::BatchNorm2d { features, .. } => {
                if let Some(k) = &e.out_keep {
                    for r in ["weight", "bias", "running_mean", "running_var"] {
                        let pk = key(r).expect("batchnorm tensor");
                        let t = params.get(&pk).expect("tensor").f_index_select(0, &index(k))?;
                        params.insert(pk, t);
                    }
                    *features = k.len() as i64;
                }
            }
            _ => {}
        }
    }
    let g = Graph::new(spec, params)?;
    Ok((g, report))
}
