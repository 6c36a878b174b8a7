//! The weight-magnitude baseline: the L1 or L2 norm of each unit's weights — a filter's
//! kernel, a neuron's weight row, a head's slices of the q, k, v projections (rows) and of
//! the output projection (columns).

use super::{Criterion, Scores};
use crate::components::{ComponentKind, ComponentLayer, ComponentSet};
use crate::data::Subset;
use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{Graph, NodeId, Op};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Which norm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightNorm {
    #[default]
    L1,
    L2,
}

pub struct WeightMagnitude {
    pub norm: WeightNorm,
}

impl WeightMagnitude {
    /// Per-unit sums of |w| (L1) or w² (L2) over dimension `dim` split into `units` blocks.
    fn block_sums(&self, w: &Tensor, dim: i64, units: i64) -> Result<Tensor> {
        let w = w.f_transpose(0, dim)?.f_contiguous()?;
        let w = w.f_reshape([units, -1])?;
        let v = match self.norm {
            WeightNorm::L1 => w.f_abs()?,
            WeightNorm::L2 => w.f_square()?,
        };
        Ok(v.f_sum_dim_intlist(1, false, Kind::Double)?)
    }

    fn head_sums(&self, graph: &Graph, consumers: &[Vec<NodeId>], l: &ComponentLayer) -> Result<Tensor> {
        let Op::Attention(Attention { heads, packed, .. }) = graph.node(l.node).op else {
            unreachable!("heads live on attention nodes")
        };
        let mut total = Tensor::zeros([heads], (Kind::Double, graph.device()));
        // Output projection: columns of each head.
        for &c in &consumers[l.node] {
            if let Some(w) = graph.param(c, Role::Weight).filter(|_| matches!(graph.node(c).op, Op::Linear(_))) {
                total = total.f_add(&self.block_sums(w, 1, heads)?)?;
            }
        }
        // q, k, v projections: rows of each head (a packed projection holds q | k | v).
        let producers: Vec<NodeId> =
            graph.node(l.node).inputs.iter().take(if packed { 1 } else { 3 }).copied().collect();
        for p in producers {
            if let (Op::Linear(_), Some(w)) = (&graph.node(p).op, graph.param(p, Role::Weight)) {
                let blocks = if packed { 3 * heads } else { heads };
                let s = self.block_sums(w, 0, blocks)?;
                let s = if packed { s.f_reshape([3, heads])?.f_sum_dim_intlist(0, false, Kind::Double)? } else { s };
                total = total.f_add(&s)?;
            }
        }
        Ok(total)
    }
}

impl Criterion for WeightMagnitude {
    fn name(&self) -> String {
        match self.norm {
            WeightNorm::L1 => "weight(L1)".into(),
            WeightNorm::L2 => "weight(L2)".into(),
        }
    }
    fn score(&self, graph: &Graph, comps: &ComponentSet, _refs: &Subset) -> Result<Scores> {
        let consumers = graph.consumers();
        let mut values = Vec::with_capacity(comps.total);
        for l in &comps.layers {
            let sums = match comps.kind {
                ComponentKind::Filters | ComponentKind::Neurons => {
                    self.block_sums(graph.require_param(l.node, Role::Weight)?, 0, l.count as i64)?
                }
                ComponentKind::Heads => self.head_sums(graph, &consumers, l)?,
            };
            let sums = if self.norm == WeightNorm::L2 { sums.f_sqrt()? } else { sums };
            values.extend(Vec::<f64>::try_from(&sums)?);
        }
        Scores::validated(values, comps, &self.name())
    }
}
