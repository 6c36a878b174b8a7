//! Global ranking of all components of one kind, and the nested selections per pruning rate.

use crate::attribution::Scores;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// Which end of the ranking is pruned first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneOrder {
    /// Remove the lowest scores first (the method).
    #[default]
    LeastRelevantFirst,
    /// Remove the highest scores first (a sanity check: should collapse quickly).
    MostRelevantFirst,
}

/// Component indices in pruning order. Ties are broken by index, so the order is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranking {
    pub order: Vec<usize>,
}

impl Ranking {
    pub fn new(scores: &Scores, order: PruneOrder) -> Self {
        let v = &scores.values;
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| {
            let c = v[a].total_cmp(&v[b]);
            let c = if order == PruneOrder::MostRelevantFirst { c.reverse() } else { c };
            c.then(a.cmp(&b))
        });
        Ranking { order: idx }
    }

    /// Number of components pruned at `rate`: floor(N·rate).
    pub fn count_at(&self, rate: f64) -> Result<usize> {
        check_rate(rate)?;
        Ok(((self.order.len() as f64) * rate + 1e-9).floor() as usize)
    }

    /// The components pruned at `rate` (a prefix of the order, so selections nest as the rate grows).
    pub fn selection(&self, rate: f64) -> Result<&[usize]> {
        Ok(&self.order[..self.count_at(rate)?])
    }
}

/// Units a selection removes from each layer of `comps` (in the set's layer order).
pub fn units_per_layer(comps: &crate::components::ComponentSet, selection: &[usize]) -> Vec<usize> {
    let mut counts = vec![0; comps.layers.len()];
    for &i in selection {
        // Layers are contiguous and ordered by offset.
        let l = comps.layers.partition_point(|layer| layer.offset + layer.count <= i);
        counts[l] += 1;
    }
    counts
}

/// Rates must lie in [0, 1).
pub fn check_rate(rate: f64) -> Result<()> {
    if !(0.0..1.0).contains(&rate) {
        crate::bail!("pruning rate {rate} is outside [0, 1)");
    }
    Ok(())
}

/// The most rates one curve may have.
pub const MAX_RATES: usize = 1000;

/// Parses rates: `0:0.95:0.05` (start:stop:step, inclusive) or a list `0,0.1,0.3`.
pub fn parse_rates(text: &str) -> Result<Vec<f64>> {
    let bad = |p: &str| crate::Error::invalid(format!("`{p}` in rates `{text}` is not a number"));
    let rates: Vec<f64> = if text.contains(':') {
        let p: Vec<f64> =
            text.split(':').map(|s| s.trim().parse::<f64>().map_err(|_| bad(s))).collect::<Result<_>>()?;
        let [start, stop, step] = p[..] else { crate::bail!("rates range `{text}` must be start:stop:step") };
        if !(start.is_finite() && stop.is_finite() && step.is_finite() && step > 0.0 && stop >= start) {
            crate::bail!("rates range `{text}` needs finite numbers, step > 0 and stop ≥ start");
        }
        let n = ((stop - start) / step + 1e-9).floor();
        // Bounded before anything is allocated: a tiny step would ask for billions of rates.
        if n >= MAX_RATES as f64 {
            crate::bail!("rates range `{text}` gives {n} rates; at most {MAX_RATES} are allowed");
        }
        let n = n as usize;
        (0..=n).map(|i| ((start + i as f64 * step) * 1e9).round() / 1e9).collect()
    } else {
        text.split(',').map(|s| s.trim().parse::<f64>().map_err(|_| bad(s))).collect::<Result<_>>()?
    };
    if rates.is_empty() {
        crate::bail!("no rates given");
    }
    if rates.len() > MAX_RATES {
        crate::bail!("{} rates given; at most {MAX_RATES} are allowed", rates.len());
    }
    for w in rates.windows(2) {
        if w[1] <= w[0] {
            crate::bail!("rates must increase, got {} then {}", w[0], w[1]);
        }
    }
    rates.iter().try_for_each(|&r| check_rate(r))?;
    Ok(rates)
}

/// The default grid 0, 0.05, …, 0.95.
pub fn default_rates() -> Vec<f64> {
    parse_rates("0:0.95:0.05").expect("valid")
}

/// How scores are scaled within each component layer before the global ranking, which decides
/// how many units each layer loses. `none` is the paper's raw global ranking; the others divide
/// a layer's scores by its maximum, L2 norm, sum or mean (Torch-Pruning normalises importance per
/// group the same way), or replace each by its LAMP score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LayerNormalization {
    #[default]
    None,
    Max,
    L2,
    Sum,
    Mean,
    /// LAMP (Lee et al., 2021, "Layer-adaptive sparsity for the magnitude-based pruning"), on
    /// unit scores: s_u² / Σ s_v² over the units v of the layer scoring at least as much as u.
    /// A layer's strongest unit scores 1, so no layer is emptied before every layer's strongest
    /// is the only one left; a layer with a flat score distribution loses units late.
    Lamp,
}

impl LayerNormalization {
    /// Whether this is the raw ranking (serde's skip test).
    pub fn is_none(&self) -> bool {
        *self == LayerNormalization::None
    }
}

/// `scores` scaled per component layer (scores are magnitudes; a layer of all zeros stays zero).
pub fn normalize_per_layer(
    scores: &crate::attribution::Scores,
    comps: &crate::components::ComponentSet,
    how: LayerNormalization,
) -> crate::attribution::Scores {
    let mut values = scores.values.clone();
    if how == LayerNormalization::None {
        return crate::attribution::Scores { values };
    }
    for l in &comps.layers {
        let v = &mut values[l.offset..l.offset + l.count];
        if how == LayerNormalization::Lamp {
            lamp(v);
            continue;
        }
        let scale = match how {
            LayerNormalization::None | LayerNormalization::Lamp => 1.0,
            LayerNormalization::Max => v.iter().fold(0.0f64, |m, x| m.max(x.abs())),
            LayerNormalization::L2 => v.iter().map(|x| x * x).sum::<f64>().sqrt(),
            LayerNormalization::Sum => v.iter().map(|x| x.abs()).sum(),
            LayerNormalization::Mean => v.iter().map(|x| x.abs()).sum::<f64>() / v.len().max(1) as f64,
        };
        if scale > 0.0 {
            v.iter_mut().for_each(|x| *x /= scale);
        }
    }
    crate::attribution::Scores { values }
}

/// LAMP scores of one layer in place (ties: the unit earlier in the layer counts as smaller).
fn lamp(v: &mut [f64]) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()).then(a.cmp(&b)));
    let mut suffix = 0.0;
    let mut out = vec![0.0; v.len()];
    for &i in order.iter().rev() {
        suffix += v[i] * v[i];
        out[i] = if suffix > 0.0 { v[i] * v[i] / suffix } else { 0.0 };
    }
    v.copy_from_slice(&out);
}

#[cfg(test)]
mod normalization_tests {
    use super::*;
    use crate::attribution::Scores;
    use crate::components::{ComponentKind, ComponentSet};

    #[test]
    fn each_layer_is_scaled_by_its_own_statistic() {
        let g = crate::models::Architecture::parse("cifar_vgg11_bn:width=4,hidden=16,in=1,size=8,classes=10")
            .unwrap()
            .build(0)
            .unwrap();
        let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
        let s = Scores { values: (0..comps.total).map(|i| (i % 7) as f64 + 1.0).collect() };
        assert_eq!(normalize_per_layer(&s, &comps, LayerNormalization::None).values, s.values);
        for how in [LayerNormalization::Max, LayerNormalization::L2, LayerNormalization::Sum, LayerNormalization::Mean]
        {
            let n = normalize_per_layer(&s, &comps, how).values;
            for l in &comps.layers {
                let v = &n[l.offset..l.offset + l.count];
                let stat = match how {
                    LayerNormalization::Max => v.iter().cloned().fold(0.0, f64::max),
                    LayerNormalization::L2 => v.iter().map(|x| x * x).sum::<f64>().sqrt(),
                    LayerNormalization::Sum => v.iter().sum(),
                    _ => v.iter().sum::<f64>() / v.len() as f64,
                };
                assert!((stat - 1.0).abs() < 1e-12, "{how:?} {}: {stat}", l.name);
                // The order within a layer is kept.
                let raw = &s.values[l.offset..l.offset + l.count];
                for i in 1..v.len() {
                    assert_eq!(raw[i - 1] < raw[i], v[i - 1] < v[i]);
                }
            }
        }
    }

    #[test]
    fn lamp_scores_by_the_share_of_the_layer_at_least_as_strong() {
        let mut v = vec![2.0, 1.0, 3.0, 0.0];
        lamp(&mut v);
        assert_eq!(v, vec![4.0 / 13.0, 1.0 / 14.0, 1.0, 0.0]);
        let g = crate::models::Architecture::parse("cifar_vgg11_bn:width=4,hidden=16,in=1,size=8,classes=10")
            .unwrap()
            .build(0)
            .unwrap();
        let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
        let s = Scores { values: (0..comps.total).map(|i| ((i * 37) % 11) as f64 + 0.5).collect() };
        let n = normalize_per_layer(&s, &comps, LayerNormalization::Lamp).values;
        for l in &comps.layers {
            let v = &n[l.offset..l.offset + l.count];
            let raw = &s.values[l.offset..l.offset + l.count];
            // Each layer's strongest unit scores 1; the order within a layer is kept.
            assert_eq!(v.iter().cloned().fold(0.0, f64::max), 1.0, "{}", l.name);
            for i in 0..v.len() {
                for j in 0..v.len() {
                    if raw[i] < raw[j] {
                        assert!(v[i] < v[j], "{}: {i} {j}", l.name);
                    }
                }
            }
        }
    }
}
