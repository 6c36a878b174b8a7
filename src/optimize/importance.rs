//! Parameter importance: for each parameter, the share of the variance of the objective over
//! completed trials explained by the parameter alone (η² of a one-way analysis of variance;
//! continuous parameters are binned into quartiles of their observed values). Simple and
//! model-free; interactions are not attributed.

use super::space::{Domain, SearchSpace};
use super::{Trial, TrialState};
use serde_json::Value;

/// (parameter, importance in [0, 1]) sorted by importance, descending.
pub fn importances(space: &SearchSpace, trials: &[Trial]) -> Vec<(String, f64)> {
    let done: Vec<&Trial> = trials.iter().filter(|t| t.state == TrialState::Complete && t.value.is_some()).collect();
    let ys: Vec<f64> = done.iter().map(|t| t.value.unwrap()).collect();
    let n = ys.len() as f64;
    let mean = ys.iter().sum::<f64>() / n.max(1.0);
    let total: f64 = ys.iter().map(|y| (y - mean).powi(2)).sum();
    let mut out = Vec::new();
    for p in &space.params {
        if matches!(&p.domain, Domain::Categorical(c) if c.len() < 2) {
            continue;
        }
        // Group label per trial ("inactive" when the parameter is absent).
        let labels: Vec<String> = match &p.domain {
            Domain::Categorical(_) => {
                done.iter().map(|t| t.params.get(&p.name).map(Value::to_string).unwrap_or("inactive".into())).collect()
            }
            Domain::Float { .. } => {
                let mut vals: Vec<f64> =
                    done.iter().filter_map(|t| t.params.get(&p.name).and_then(Value::as_f64)).collect();
                vals.sort_by(f64::total_cmp);
                let q = |f: f64| vals.get(((vals.len() as f64 - 1.0) * f).round() as usize).copied().unwrap_or(0.0);
                let cuts = [q(0.25), q(0.5), q(0.75)];
                done.iter()
                    .map(|t| match t.params.get(&p.name).and_then(Value::as_f64) {
                        None => "inactive".into(),
                        Some(v) => format!("q{}", cuts.iter().filter(|c| v > **c).count()),
                    })
                    .collect()
            }
        };
        let mut groups: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        for (l, y) in labels.iter().zip(&ys) {
            groups.entry(l).or_default().push(*y);
        }
        let between: f64 = groups
            .values()
            .map(|g| {
                let m = g.iter().sum::<f64>() / g.len() as f64;
                g.len() as f64 * (m - mean).powi(2)
            })
            .sum();
        out.push((p.name.clone(), if total > 0.0 { between / total } else { 0.0 }));
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}
