//! Pruning by masks: zero the selected components' parameters inside a guard that restores
//! the original values bit for bit when dropped.
//!
//! - a filter or neuron: its slice of every per-channel parameter of every node that carries
//!   its channel (the conv's kernel and bias, the BatchNorm after it, a depthwise conv and its
//!   BatchNorm), so that the channel is exactly zero wherever it travels;
//! - a head: its columns of the output projection — the same as zeroing the head's slice of
//!   the attention output (or its attention probabilities) before the projection.

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Role, UnitHolders};
use crate::prune::components::{ComponentKind, ComponentLayer, ComponentSet};
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

/// Which parameter slices (key, dimension, indices) zero the given units of a layer.
pub fn mask_targets(graph: &Graph, layer: &ComponentLayer, units: &[i64]) -> Result<Vec<(String, i64, Vec<i64>)>> {
    let key =
        |id: NodeId, role: Role| {
            graph.node(id).params.get(&role).cloned().ok_or_else(|| {
                Error::invalid(format!("node `{}` has no parameter `{role}` to mask", graph.node(id).name))
            })
        };
    let kind = layer.kind;
    let mut out = Vec::new();
    match kind {
        ComponentKind::Filters | ComponentKind::Neurons => {
            // Every carrier of the units: the layer, its BatchNorm, a depthwise conv after it, and
            // the layers that read them (so that an activation with f(0) ≠ 0 in between, such
            // as a sigmoid, still contributes nothing).
            for c in &layer.carriers {
                let params = graph.node(c.node).op.kind().channel_params();
                let roles = if c.reads { params.input } else { params.output };
                for (role, dim) in roles {
                    out.push((key(c.node, role)?, dim, c.positions(units)));
                }
            }
        }
        ComponentKind::Heads => {
            // Units whose channels do not travel (heads): zeroed where the op's unit spans say
            // zeroing silences them — for a head, its columns of the output projection.
            let n = graph.node(layer.node);
            let silencing: Vec<UnitHolders> =
                graph.unit_holders(layer.node).into_iter().filter(|h| h.span.silences).collect();
            if silencing.is_empty() {
                crate::bail!("`{}` ({}) has no {kind} to mask", n.name, n.op.kind_name());
            }
            for h in silencing {
                // A reader silences the units only when nothing else reads them.
                let nodes = match (h.span.reads(), h.nodes.as_slice()) {
                    (true, [p]) => vec![*p],
                    (true, _) => {
                        crate::bail!("cannot mask {kind} of `{}`: its output must feed exactly one projection", n.name)
                    }
                    (false, nodes) => nodes.to_vec(),
                };
                let positions = h.span.positions(layer.count as i64, units);
                for node in nodes {
                    let params = h.params(graph, node);
                    if params.is_empty() {
                        crate::bail!(
                            "cannot mask {kind} of `{}`: `{}` has no per-channel {} weights",
                            n.name,
                            graph.node(node).name,
                            if h.span.reads() { "input" } else { "output" }
                        );
                    }
                    for (role, dim) in params {
                        out.push((key(node, role)?, dim, positions.clone()));
                    }
                }
            }
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
        per_layer.entry(layer.offset).or_default().push(unit as i64);
    }
    let mut targets = Vec::new();
    for (offset, units) in &per_layer {
        let (layer, _) = comps.locate(*offset);
        targets.extend(mask_targets(graph, layer, units)?);
    }
    let mut guard = MaskGuard { graph, saved: Vec::new() };
    tch::no_grad(|| -> Result<()> {
        for (key, dim, units) in targets {
            let t = guard.graph.params_mut().get_mut(&key).expect("mask target exists");
            let idx = Tensor::from_slice(&units).f_to_device(t.device())?;
            let orig = t.f_index_select(dim, &idx)?;
            let _ = t.f_index_fill_(dim, &idx, 0.0)?;
            guard.saved.push((key, dim, idx, orig));
        }
        Ok(())
    })?;
    Ok(guard)
}
