//! Per-layer normalisation of a criterion's scores before the global ranking. It decides how many
//! units each layer loses, so it belongs to the criterion: a rules file, a search-space trial
//! and `--normalize` all set [`CriterionSpec`](super::CriterionSpec)'s, and a criterion that
//! leaves it open is ranked with [`LayerNormalization::default_for`].

use super::Scores;
use crate::error::{Error, Result};
use crate::prune::components::{ComponentKind, ComponentSet, Components};

/// How scores are scaled within each component layer before the global ranking, which decides
/// how many units each layer loses. `none` is the paper's raw global ranking; the others divide
/// a layer's scores by its maximum, L2 norm, sum or mean (Torch-Pruning normalises importance per
/// group the same way), or replace each by its LAMP score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// What a ranking is for, which decides the normalisation of a criterion that leaves it open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankingUse {
    /// An accuracy-vs-rate curve and the optimisation objective: the paper's raw global ranking.
    Curve,
    /// A model that is shipped: `prune`, and a curve's budget marks (which are that model).
    Deploy,
}

impl LayerNormalization {
    /// Every normalisation with its name, as options and files write it.
    pub const ALL: [(LayerNormalization, &'static str); 6] = [
        (LayerNormalization::None, "none"),
        (LayerNormalization::Max, "max"),
        (LayerNormalization::L2, "l2"),
        (LayerNormalization::Sum, "sum"),
        (LayerNormalization::Mean, "mean"),
        (LayerNormalization::Lamp, "lamp"),
    ];

    /// Whether this is the raw ranking (serde's skip test).
    pub fn is_none(&self) -> bool {
        *self == LayerNormalization::None
    }

    /// The name options and files use.
    pub fn name(&self) -> &'static str {
        Self::ALL.iter().find(|(n, _)| n == self).map_or("none", |(_, s)| s)
    }

    /// The one default, for a criterion that does not fix its normalisation. Curves rank raw
    /// (the paper's protocol). A shipped model's filters are ranked per-layer mean, neurons and
    /// heads raw: the better of the two for each kind in benchmarks/deploy at equal MACs, before
    /// and after fine-tuning (docs/benchmarks.md, "deploy"). A set of several kinds ranks as its
    /// kinds do (the mean where it holds filters): LRP's and Taylor's raw scores are relevance
    /// mass on one scale whatever the kind, and on SmolLM2 at equal parameters the raw ranking of
    /// neurons and heads beat the per-layer mean (docs/benchmarks.md, "llm").
    pub fn default_for(kinds: &Components, purpose: RankingUse) -> Self {
        match purpose {
            RankingUse::Deploy if kinds.contains(ComponentKind::Filters) => LayerNormalization::Mean,
            _ => LayerNormalization::None,
        }
    }
}

impl std::str::FromStr for LayerNormalization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(v, _)| *v)
            .ok_or_else(|| Error::invalid(format!("unknown normalisation `{s}`; use none, max, l2, sum, mean or lamp")))
    }
}

impl std::fmt::Display for LayerNormalization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `scores` scaled per component layer (scores are magnitudes; a layer of all zeros stays zero).
pub fn normalize_per_layer(scores: &Scores, comps: &ComponentSet, how: LayerNormalization) -> Scores {
    let mut values = scores.values.clone();
    if how == LayerNormalization::None {
        return Scores { values };
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
    Scores { values }
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
    use crate::prune::components::{ComponentKind, ComponentSet};
    use Scores;

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
