//! Pruning by masks: zero the selected components' parameters inside a guard that restores
//! the original values bit for bit when dropped.
//!
//! - a filter: its conv kernel and bias, and the following BatchNorm's weight and bias;
//! - a neuron: its weight row and bias;
//! - a head: its columns of the output projection — the same as zeroing the head's slice of
//!   the attention output (or its attention probabilities) before the projection.

use crate::components::{ComponentKind, ComponentSet};
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Op};
use std::collections::BTreeMap;
use std::ops::Deref;
use tch::Tensor;

/// Zeroed parameter slices, restored on drop.
pub struct MaskGuard<'g> {
    graph: &'g mut Graph,
    /// (parameter key, dimension, indices, original values at those indices)
    saved: Vec<(String, i64, Tensor, Tensor)>,
}

impl Deref for MaskGuard<'_> {
    type Target = Graph;
    fn deref(&self) -> &Graph {
        self.graph
    }
}

impl Drop for MaskGuard<'_> {
    fn drop(&mut self) {
        tch::no_grad(|| {
            for (key, dim, idx, orig) in self.saved.drain(..).rev() {
                if let Some(t) = self.graph.params_mut().get_mut(&key) {
                    let _ = t.index_copy_(dim, &idx, &orig);
                }
            }
        });
    }
}

/// Which parameter slices (key, dimension, unit indices) zero the given units of a layer.
pub fn mask_targets(
    graph: &Graph,
    kind: ComponentKind,
    node: NodeId,
    units: &[i64],
) -> Result<Vec<(String, i64, Vec<i64>)>> {
    let n = graph.node(node);
    let key = |id: NodeId, role: &str| graph.node(id).params.get(role).cloned();
    let mut out = Vec::new();
    match kind {
        ComponentKind::Filters | ComponentKind::Neurons => {
            for role in ["weight", "bias"] {
                if let Some(k) = key(node, role) {
                    out.push((k, 0, units.to_vec()));
                }
            }
            if kind == ComponentKind::Filters {
                let consumers = graph.consumers();
                if let [bn] = consumers[node].as_slice() {
                    if matches!(graph.node(*bn).op, Op::BatchNorm2d { .. }) {
                        for role in ["weight", "bias"] {
                            if let Some(k) = key(*bn, role) {
                                out.push((k, 0, units.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        ComponentKind::Heads => {
            let Op::Attention { head_dim, .. } = n.op else { crate::bail!("`{}` is not an attention node", n.name) };
            let consumers = graph.consumers();
            let proj = consumers[node]
                .iter()
                .find(|&&c| matches!(graph.node(c).op, Op::Linear { .. }))
                .filter(|_| consumers[node].len() == 1)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "cannot mask heads of `{}`: its output must feed exactly one Linear projection",
                        n.name
                    ))
                })?;
            let cols: Vec<i64> = units.iter().flat_map(|&h| (h * head_dim)..((h + 1) * head_dim)).collect();
            out.push((key(*proj, "weight").expect("linear has weight"), 1, cols));
        }
    }
    Ok(out)
}

/// Zeroes the components `selected` (global indices into `comps`) until the guard is dropped.
pub fn apply_mask<'g>(graph: &'g mut Graph, comps: &ComponentSet, selected: &[usize]) -> Result<MaskGuard<'g>> {
    let mut per_layer: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for &i in selected {
        if i >= comps.total {
            crate::bail!("component {i} does not exist (the set has {})", comps.total);
        }
        let (layer, unit) = comps.locate(i);
        per_layer.entry(layer.node).or_default().push(unit as i64);
    }
    let mut targets = Vec::new();
    for (node, units) in &per_layer {
        targets.extend(mask_targets(graph, comps.kind, *node, units)?);
    }
    let mut guard = MaskGuard { graph, saved: Vec::new() };
    tch::no_grad(|| -> Result<()> {
        for (key, dim, units) in targets {
            let idx = Tensor::from_slice(&units);
            let t = guard.graph.params_mut().get_mut(&key).expect("mask target exists");
            let orig = t.f_index_select(dim, &idx)?;
            let _ = t.f_index_fill_(dim, &idx, 0.0)?;
            guard.saved.push((key, dim, idx, orig));
        }
        Ok(())
    })?;
    Ok(guard)
}
