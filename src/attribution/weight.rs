//! The weight-magnitude baseline: the L1 or L2 norm of each unit's weights — a filter's
//! kernel, a neuron's weight row, a head's slices of the q, k, v projections (rows) and of
//! the output projection (columns).

use super::{Criterion, Scores};
use crate::data::Subset;
use crate::error::Result;
use crate::graph::{Graph, Role};
use crate::prune::components::{ComponentLayer, ComponentSet};
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

    /// Per-unit sums over every weight that holds the layer's units ([`Graph::unit_holders`]),
    /// in the order of the op's spans.
    fn unit_sums(&self, graph: &Graph, l: &ComponentLayer) -> Result<Tensor> {
        let units = l.count as i64;
        let mut total = Tensor::zeros([units], (Kind::Double, graph.device()));
        // Shared blocks (grouped key/value heads) belong to no one unit.
        for h in graph.unit_holders(l.node).into_iter().filter(|h| !h.span.shared) {
            let parts = h.span.parts;
            for &n in &h.nodes {
                let Some(w) = graph.param(n, Role::Weight) else { continue };
                for (_, dim) in h.params(graph, n).into_iter().filter(|&(role, _)| role == Role::Weight) {
                    // Unit u's block in each part (a packed q | k | v projection has three).
                    let s = self.block_sums(w, dim, parts * units)?;
                    let s = if parts > 1 {
                        s.f_reshape([parts, units])?.f_sum_dim_intlist(0, false, Kind::Double)?
                    } else {
                        s
                    };
                    total = total.f_add(&s)?;
                }
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
        let mut values = Vec::with_capacity(comps.total);
        for l in &comps.layers {
            let sums = self.unit_sums(graph, l)?;
            let sums = if self.norm == WeightNorm::L2 { sums.f_sqrt()? } else { sums };
            values.extend(Vec::<f64>::try_from(&sums)?);
        }
        Scores::validated(values, comps, &self.name())
    }
}
