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
pub fn units_per_layer(comps: &crate::prune::components::ComponentSet, selection: &[usize]) -> Vec<usize> {
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

// Per-layer normalisation is part of a criterion (its scores); re-exported for the ranking.
pub use crate::attribution::normalize::{normalize_per_layer, LayerNormalization};
