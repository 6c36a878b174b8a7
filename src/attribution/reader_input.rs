//! Criteria of the LLM pruning literature that score a unit where it is read: by the weights of
//! the layer that consumes it (a neuron's down-projection column, a head's output-projection
//! columns) and the statistics of what flows into that layer on the references.
//!
//! - **Wanda-sp** (structured Wanda, as An et al. 2024's FLAP paper and LLM-Pruner compare it):
//!   Σ_rows |W[:, j]| · ‖X_j‖₂ per input channel j of the reader, ‖X_j‖₂ over every reference
//!   token.
//! - **FLAP's fluctuation** (An et al. 2024): the sample variance of X_j over the reference
//!   tokens times ‖W[:, j]‖₂², how much the output moves when channel j is replaced by its mean.
//!   (FLAP then adds the removed channels' mean contribution to the reader's bias; relprune's
//!   surgery does not, so this is the metric without that compensation.)
//!
//! A unit's score sums its channels' values over every reader.

use super::{token_mask, Criterion, Scores};
use crate::data::Subset;
use crate::error::Result;
use crate::graph::ops::ChannelMap;
use crate::graph::{Graph, Mode, NodeId, Role};
use crate::prune::components::{coupled_groups, ComponentKind, ComponentSet};
use crate::prune::dependency::channel_spaces;
use tch::{Kind, Tensor};

/// Which statistic of the reader's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderMetric {
    /// |W| · ‖X‖₂ (Wanda-sp).
    Wanda,
    /// ‖W‖₂² · Var(X) (FLAP).
    Fluctuation,
}

pub struct ReaderInput {
    pub metric: ReaderMetric,
    pub batch_size: usize,
}

/// Where a layer's units are read: a reader node and, per unit, its input channels there.
struct Reading {
    node: NodeId,
    /// Channels of the reader's input 0 for each unit.
    channels: Vec<Vec<i64>>,
}

/// The readers of every layer's units: for heads the output projection (the holders that read
/// them); for channels every layer with weights per input channel whose input carries the
/// units' channel classes (the dependency analysis: a gate and an up projection tied by their
/// product are both read by the down projection).
fn readings(graph: &Graph, comps: &ComponentSet) -> Result<Vec<Vec<Reading>>> {
    let mut per_layer: Vec<Vec<Reading>> = (0..comps.layers.len()).map(|_| Vec::new()).collect();
    if comps.layers.iter().any(|l| l.kind != ComponentKind::Heads) {
        let spaces = channel_spaces(graph)?;
        let readers: Vec<(NodeId, Vec<usize>)> = graph
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                let k = n.op.kind();
                k.channels() == ChannelMap::New && !k.channel_params().input.is_empty() && !n.inputs.is_empty()
            })
            .map(|(id, n)| (id, spaces.classes(n.inputs[0])))
            .collect();
        for g in coupled_groups(graph, comps)?.iter().filter(|g| !g.classes.is_empty()) {
            for (node, classes) in &readers {
                let channels: Vec<Vec<i64>> = g
                    .classes
                    .iter()
                    .map(|c| (0..classes.len() as i64).filter(|&p| classes[p as usize] == *c).collect())
                    .collect();
                if channels.iter().any(|c| !c.is_empty()) {
                    for &m in &g.members {
                        per_layer[m].push(Reading { node: *node, channels: channels.clone() });
                    }
                }
            }
        }
    }
    for (l, readings) in comps.layers.iter().zip(&mut per_layer).filter(|(l, _)| l.kind == ComponentKind::Heads) {
        let units: Vec<i64> = (0..l.count as i64).collect();
        let kind = graph.node(l.node).op.kind();
        for h in graph.unit_holders(l.node).into_iter().filter(|h| h.span.reads()) {
            let per_unit: Vec<Vec<i64>> =
                units.iter().map(|&u| kind.unit_positions(&h.span, l.count as i64, &[u])).collect();
            readings.extend(h.nodes.into_iter().map(|node| Reading { node, channels: per_unit.clone() }));
        }
    }
    Ok(per_layer)
}

/// Per-channel sums over the reference tokens of x, x² of a reader's input.
struct Moments {
    n: f64,
    sum: Tensor,
    sumsq: Tensor,
}

impl Criterion for ReaderInput {
    fn name(&self) -> String {
        match self.metric {
            ReaderMetric::Wanda => "wanda-sp".into(),
            ReaderMetric::Fluctuation => "flap".into(),
        }
    }
    fn score(&self, graph: &Graph, comps: &ComponentSet, refs: &Subset) -> Result<Scores> {
        if refs.is_empty() {
            crate::bail!("the reference set is empty; {} needs reference samples", self.name());
        }
        let reads = readings(graph, comps)?;
        let readers: Vec<NodeId> = {
            let mut v: Vec<NodeId> = reads.iter().flatten().map(|r| r.node).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut moments: std::collections::BTreeMap<NodeId, Moments> = Default::default();
        tch::no_grad(|| -> Result<()> {
            for batch in refs.batches(self.batch_size.max(1)) {
                let batch = batch?.to_device(graph.device())?;
                let outs = graph.forward_all(&batch.inputs, Mode::Eval)?;
                let mask = token_mask(graph, &batch);
                for &r in &readers {
                    let x = &outs[graph.node(r).inputs[0]];
                    // Rows: every token (real ones only), pixel or sample; columns: the channels.
                    let x = if x.dim() == 4 { x.f_permute([0, 2, 3, 1])? } else { x.shallow_clone() };
                    let c = *x.size().last().unwrap_or(&1);
                    if let Some(w) = graph.param(r, Role::Weight).filter(|w| w.dim() < 2 || w.size()[1] != c) {
                        crate::bail!(
                            "{} reads units through `{}`, whose weight {:?} does not take its {c} input channels one \
                             column each (a grouped convolution?)",
                            self.name(),
                            graph.node(r).name,
                            w.size()
                        );
                    }
                    let (x, n) = match (x.dim(), mask) {
                        (3, Some(m)) => {
                            let keep = m.f_ne(0)?.f_reshape([-1])?;
                            let rows = x.f_reshape([-1, c])?.f_index(&[Some(keep.f_nonzero()?.f_squeeze_dim(1)?)])?;
                            let n = rows.size()[0];
                            (rows, n)
                        }
                        _ => {
                            let rows = x.f_reshape([-1, c])?;
                            let n = rows.size()[0];
                            (rows, n)
                        }
                    };
                    let x = x.f_to_kind(Kind::Double)?;
                    let (s, sq) = (
                        x.f_sum_dim_intlist(0, false, Kind::Double)?,
                        x.f_square()?.f_sum_dim_intlist(0, false, Kind::Double)?,
                    );
                    match moments.get_mut(&r) {
                        Some(m) => {
                            m.n += n as f64;
                            m.sum = m.sum.f_add(&s)?;
                            m.sumsq = m.sumsq.f_add(&sq)?;
                        }
                        None => {
                            moments.insert(r, Moments { n: n as f64, sum: s, sumsq: sq });
                        }
                    }
                }
            }
            Ok(())
        })?;
        let mut totals = vec![0f64; comps.total];
        for (l, rs) in comps.layers.iter().zip(&reads) {
            for r in rs {
                let (Some(w), Some(m)) = (graph.param(r.node, Role::Weight), moments.get(&r.node)) else { continue };
                // Per input channel of the reader: its weight column's |·| sum or squared norm.
                let w = w.f_to_kind(Kind::Double)?;
                let cols = w.f_transpose(0, 1)?.f_reshape([w.size()[1], -1])?;
                let per_channel = match self.metric {
                    ReaderMetric::Wanda => {
                        cols.f_abs()?.f_sum_dim_intlist(1, false, Kind::Double)?.f_mul(&m.sumsq.f_sqrt()?)?
                    }
                    ReaderMetric::Fluctuation => {
                        let mean = m.sum.f_div_scalar(m.n.max(1.0))?;
                        let var =
                            m.sumsq.f_sub(&mean.f_square()?.f_mul_scalar(m.n)?)?.f_div_scalar((m.n - 1.0).max(1.0))?;
                        cols.f_square()?.f_sum_dim_intlist(1, false, Kind::Double)?.f_mul(&var.f_clamp_min(0.0)?)?
                    }
                };
                let v = Vec::<f64>::try_from(per_channel.f_to_device(tch::Device::Cpu)?)?;
                for (u, channels) in r.channels.iter().enumerate() {
                    totals[l.offset + u] += channels.iter().map(|&c| v[c as usize]).sum::<f64>();
                }
            }
        }
        Scores::validated(totals, comps, &self.name())
    }
}
