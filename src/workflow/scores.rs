//! Per-unit scores of a criterion (`relprune scores`, the Python package's `relprune.scores`):
//! what the ranking of `prune` orders by, per layer, under the layers' own names.

use super::source::Session;
use crate::attribution::normalize::RankingUse;
use crate::attribution::{CriterionSpec, Scores};
use crate::error::Result;
use crate::prune::components::Components;
use serde::{Deserialize, Serialize};

/// One layer's scores, unit by unit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerScores {
    pub name: String,
    pub scores: Vec<f64>,
}

/// A criterion's scores of every prunable layer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoresReport {
    pub model: String,
    pub criterion: String,
    pub component: Components,
    /// Whether the scores are scaled per layer as `prune` ranks them, or raw.
    pub ranked: bool,
    pub layers: Vec<LayerScores>,
}

/// Scores the session's components on its references. `ranked`: scale each layer's scores by
/// the normalisation `prune` ranks with (the criterion's own, else the default for the
/// component kind); otherwise the criterion's raw scores.
pub fn scores(session: &Session, spec: &CriterionSpec, batch: usize, ranked: bool) -> Result<ScoresReport> {
    let comps = &session.comps;
    let raw = if spec.needs_references() {
        crate::experiment::score(&session.model.graph, comps, &session.data()?.task, spec, batch)?
    } else {
        spec.build(batch)?.score(&session.model.graph, comps, &crate::data::Subset::empty())?
    };
    let values: Scores = if ranked { spec.ranking_scores(&raw, comps, RankingUse::Deploy) } else { raw };
    let layers = comps
        .layers
        .iter()
        .map(|l| LayerScores { name: l.name.clone(), scores: values.values[l.offset..l.offset + l.count].to_vec() })
        .collect();
    Ok(ScoresReport {
        model: session.model.name.clone(),
        criterion: spec.label(),
        component: comps.kinds.clone(),
        ranked,
        layers,
    })
}
