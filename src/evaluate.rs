//! Accuracy-vs-rate curves: a model's accuracy with each rate's selection removed (masks,
//! surgery or budget prefixes), and their summaries. The single measurements they are made of
//! are [`crate::metrics`]'s, re-exported here under their old names.

use crate::data::Subset;
use crate::error::Result;
use crate::graph::Graph;
pub use crate::metrics::{accuracy, check_finite, count_correct, latency, random_inputs, EvalOptions, Latency};
use crate::metrics::{evaluate_split, Hits};

/// Summary figures of an accuracy-vs-rate curve: A_PR (the paper's objective), the trapezoid AUC
/// (what its released code printed) and Top-PR.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CurveSummary {
    /// Mean accuracy over the rate grid (the paper's objective, 0..1).
    pub a_pr: f64,
    /// Trapezoidal area under accuracy over the rate axis (what the paper's code printed).
    pub auc_trapezoid: f64,
    /// Highest rate up to which every accuracy is ≥ 95 % of the unpruned accuracy.
    pub top_pr_95: f64,
    /// Highest rate up to which every accuracy is within 1 point of the unpruned accuracy.
    pub top_pr_1pt: f64,
    /// Language models: the mean over the grid of ln(perplexity), each capped at ln(vocabulary)
    /// (a model worse than guessing uniformly counts as guessing). Reported beside A_PR, which
    /// for a language model is the mean next-token accuracy; see [`Curve::perplexities`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_log_perplexity: Option<f64>,
}

/// Accuracy at each pruning rate.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Curve {
    pub rates: Vec<f64>,
    pub accuracies: Vec<f64>,
    /// Components removed at each rate.
    pub pruned: Vec<usize>,
    /// Units removed from each component layer (in the component set's order) at each rate:
    /// where the global ranking takes its components from.
    #[serde(default)]
    pub pruned_per_layer: Vec<Vec<usize>>,
    pub unpruned_accuracy: f64,
    /// 1 / number of classes of the task.
    pub chance: f64,
    /// Index of the first rate filled with chance instead of measured, when stopped early.
    pub filled_from: Option<usize>,
    pub summary: CurveSummary,
    /// On a MACs / parameter axis: the fraction of the measure each point really keeps (the
    /// nested selections move in steps; where a criterion cannot remove enough, more is kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<f64>,
    /// What `rates` measure.
    #[serde(default)]
    pub axis: CurveAxis,
    /// Language models: next-token perplexity at each rate (`accuracies` are then next-token
    /// top-1 accuracies). Empty for classifiers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub perplexities: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpruned_perplexity: Option<f64>,
}

impl CurveAxis {
    /// The axis label of plots and tables.
    pub fn label(self) -> &'static str {
        match self {
            CurveAxis::Rate => "pruning rate",
            CurveAxis::Macs => "fraction of MACs removed",
            CurveAxis::Params => "fraction of parameters removed",
        }
    }
}

/// Summary of accuracies `acc` at `rates` relative to `unpruned`.
pub fn summarize(rates: &[f64], acc: &[f64], unpruned: f64) -> CurveSummary {
    let a_pr = acc.iter().sum::<f64>() / acc.len() as f64;
    let auc = rates.windows(2).zip(acc.windows(2)).map(|(r, a)| (r[1] - r[0]) * (a[0] + a[1]) / 2.0).sum();
    let top = |ok: &dyn Fn(f64) -> bool| {
        let mut best = 0.0;
        for (r, a) in rates.iter().zip(acc) {
            if !ok(*a) {
                break;
            }
            best = *r;
        }
        best
    };
    CurveSummary {
        a_pr,
        auc_trapezoid: auc,
        top_pr_95: top(&|a| a >= 0.95 * unpruned - 1e-12),
        top_pr_1pt: top(&|a| a >= unpruned - 0.01 - 1e-12),
        mean_log_perplexity: None,
    }
}

/// The mean over the grid of ln(perplexity), each capped at ln(`vocab`): bounded, so that a
/// few exploded points (perplexity 10⁴ or 10⁵ is noise among broken models) do not decide it.
pub fn mean_log_perplexity(perplexities: &[f64], vocab: usize) -> f64 {
    let cap = (vocab.max(2) as f64).ln();
    perplexities.iter().map(|p| if p.is_finite() { p.ln().min(cap) } else { cap }).sum::<f64>()
        / perplexities.len().max(1) as f64
}

/// A language model counts as broken (`stop_at_chance` stops its curve) once its perplexity is
/// this many times the unpruned one: 4.6 nats per token worse, where the literature's pruned
/// models stay within a few times the original and collapsed ones reach 10³–10⁵.
pub const BROKEN_PERPLEXITY_FACTOR: f64 = 100.0;

/// Options of a curve measurement.
#[derive(Clone, Debug)]
pub struct CurveOptions {
    pub rates: Vec<f64>,
    pub eval: EvalOptions,
    /// Stop once two consecutive rates are at chance (≤ chance + 1 point) and fill the rest
    /// with chance. A language model stops once two consecutive rates are broken (perplexity
    /// [`BROKEN_PERPLEXITY_FACTOR`] times the unpruned one) and fills the rest with the
    /// higher rate's measurement.
    pub stop_at_chance: bool,
    /// The order the rates are measured in.
    pub visit: RateVisit,
}

/// The order a curve's rates are measured in. The curve is the same; what differs is what is
/// known when a measurement is stopped early (an optimisation pruner's low fidelity).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateVisit {
    /// Lowest rate first (a partial curve is its low-rate end).
    #[default]
    Ascending,
    /// Both ends of the grid, then midpoints breadth-first (0, n−1, (n−1)/2, quarters, …): every
    /// prefix spans the whole grid, so a partial curve, interpolated, estimates the whole
    /// curve's A_PR. At low rates every criterion is at the unpruned accuracy, so the ascending
    /// prefix tells configurations apart only by noise.
    CoarseFirst,
}

impl RateVisit {
    /// The rate indices of an `n`-point grid in visiting order (a permutation of 0..n).
    pub fn order(self, n: usize) -> Vec<usize> {
        match self {
            RateVisit::Ascending => (0..n).collect(),
            RateVisit::CoarseFirst => {
                if n <= 2 {
                    return (0..n).collect();
                }
                let mut order = vec![0, n - 1];
                let mut intervals = std::collections::VecDeque::from([(0, n - 1)]);
                while let Some((a, b)) = intervals.pop_front() {
                    if b - a < 2 {
                        continue;
                    }
                    let m = (a + b) / 2;
                    order.push(m);
                    intervals.push_back((a, m));
                    intervals.push_back((m, b));
                }
                order
            }
        }
    }
}

/// The whole grid's A_PR (mean accuracy over its `n` rates) estimated from the measured points
/// `known` (rate index → accuracy): linear interpolation between measured indices, the nearest
/// measured value beyond them. Exact once every rate is measured.
pub fn estimate_a_pr(n: usize, known: &std::collections::BTreeMap<usize, f64>) -> f64 {
    if known.is_empty() || n == 0 {
        return f64::NAN;
    }
    let pts: Vec<(usize, f64)> = known.iter().map(|(&i, &a)| (i, a)).collect();
    let value = |i: usize| -> f64 {
        match pts.partition_point(|&(j, _)| j <= i) {
            0 => pts[0].1,
            k if k == pts.len() => pts[k - 1].1,
            k => {
                let ((j0, a0), (j1, a1)) = (pts[k - 1], pts[k]);
                a0 + (a1 - a0) * (i - j0) as f64 / (j1 - j0) as f64
            }
        }
    };
    (0..n).map(value).sum::<f64>() / n as f64
}

/// What a curve's grid measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveAxis {
    /// The fraction of components removed (the paper's pruning rate).
    #[default]
    Rate,
    /// The fraction of the unpruned model's MACs removed.
    Macs,
    /// The fraction of the unpruned model's parameters removed.
    Params,
}

crate::from_str_by_serde!(CurveAxis: "rate, macs or params");

// Defined with the curves, whose axes it reads: a budget mark is made below them (budget).
impl crate::prune::budget::BudgetMark {
    /// Where the mark sits on a curve's x axis.
    pub fn x(&self, axis: CurveAxis) -> f64 {
        match axis {
            CurveAxis::Rate => self.rate,
            CurveAxis::Macs => 1.0 - self.macs_kept,
            CurveAxis::Params => 1.0 - self.params_kept,
        }
    }
}

/// How a curve removes each grid point's selection.
pub enum CurvePruning<'a> {
    /// Masks on the ranked components, restored after each rate (the paper's protocol).
    Masks(&'a crate::prune::ranking::Ranking),
    /// Surgery on whole dependency groups (coupled channels go together, ranked by their mean
    /// score): a smaller graph per rate, faster at high rates. Its accuracies equal masking the
    /// same group-level selection.
    Physical(&'a crate::prune::surgery::GroupRanking),
    /// Surgery on the shortest prefix of the group order that removes at least the grid
    /// point's fraction of `measure` (MACs or parameters; token models counted at `seq_len`
    /// tokens). Where the criterion cannot remove that much, the curve stays at its largest
    /// removal.
    Budget { ranking: &'a crate::prune::surgery::GroupRanking, measure: crate::prune::budget::Measure, seq_len: i64 },
}

/// One grid point's selection.
struct PointSelection {
    /// Components removed (global indices, sorted).
    components: Vec<usize>,
    /// Group units removed (surgery).
    groups: Vec<(usize, usize)>,
    /// The measure kept, as a fraction of the unpruned model's (budget axes).
    kept: Option<f64>,
}

impl CurvePruning<'_> {
    /// The selection at grid value `x`.
    fn select(&self, graph: &Graph, comps: &crate::prune::components::ComponentSet, x: f64) -> Result<PointSelection> {
        Ok(match self {
            CurvePruning::Masks(r) => {
                let mut components = r.selection(x)?.to_vec();
                components.sort_unstable();
                PointSelection { components, groups: Vec::new(), kept: None }
            }
            CurvePruning::Physical(r) => {
                let groups = r.selection(x)?;
                PointSelection { components: r.component_indices(comps, &groups), groups, kept: None }
            }
            CurvePruning::Budget { ranking, measure, seq_len } => {
                if x <= 0.0 {
                    return Ok(PointSelection { components: Vec::new(), groups: Vec::new(), kept: Some(1.0) });
                }
                let target = crate::prune::budget::Target { measure: *measure, ratio: 1.0 - x };
                let (choice, _) = crate::prune::budget::select_at_most(graph, comps, ranking, target, *seq_len)?;
                PointSelection {
                    components: ranking.component_indices(comps, &choice.selection),
                    groups: choice.selection,
                    kept: Some(choice.ratio),
                }
            }
        })
    }

    /// Accuracy (and a language model's next-token scores) with a selection removed.
    fn measure(
        &self,
        graph: &mut Graph,
        comps: &crate::prune::components::ComponentSet,
        sel: &PointSelection,
        split: &Subset,
        eval: &EvalOptions,
    ) -> Result<Hits> {
        match self {
            CurvePruning::Masks(_) => {
                let guard = crate::prune::masking::apply_mask(graph, comps, &sel.components)?;
                evaluate_split(&guard, split, eval)
            }
            CurvePruning::Physical(r) | CurvePruning::Budget { ranking: r, .. } => {
                let (small, _) = crate::prune::surgery::prune(graph, comps, r, &sel.groups)?;
                evaluate_split(&small, split, eval)
            }
        }
    }
}

/// Measures accuracy at every rate, removing the selection as `pruning` says, visiting the
/// rates in `opts.visit`'s order. `progress(rate_index, accuracy)` is called after each
/// measured rate; returning `ControlFlow::Break` stops the measurement with
/// [`crate::Error::Interrupted`]. The curve does not depend on the visiting order (each rate's
/// selection is made from the ranking alone), except for which rates `stop_at_chance` fills.
pub fn accuracy_curve(
    graph: &mut Graph,
    comps: &crate::prune::components::ComponentSet,
    pruning: CurvePruning,
    split: &Subset,
    opts: &CurveOptions,
    progress: &mut dyn FnMut(usize, f64) -> std::ops::ControlFlow<()>,
) -> Result<Curve> {
    if split.is_empty() {
        crate::bail!("the evaluation split is empty (after class restriction?)");
    }
    if opts.rates.is_empty() {
        crate::bail!("no pruning rates given");
    }
    let classes = match &opts.eval.classes {
        Some(c) => c.classes().len(),
        None => graph.num_outputs().unwrap_or(1) as usize,
    };
    let chance = 1.0 / classes as f64;
    let text = split.data.next_token();
    let n = opts.rates.len();
    let mut points: Vec<Option<Point>> = vec![None; n];
    let mut pruned = vec![0; n];
    let mut pruned_per_layer = vec![Vec::new(); n];
    let mut kept: Vec<Option<f64>> = vec![None; n];
    // A language model's stopping rule is relative to the unpruned perplexity: measured first.
    let mut unpruned: Option<Point> =
        if text { Some(Point::of(&evaluate_split(graph, split, &opts.eval)?)) } else { None };
    let broken = |p: &Point, unpruned: &Option<Point>| p.is_broken(unpruned.as_ref(), chance);
    // Rates above `chance_from` are filled once two neighbouring measured rates (in rate order)
    // are both broken: ascending, the rule "two consecutive rates at chance".
    let mut chance_from: Option<usize> = None;
    for i in opts.visit.order(n) {
        let rate = opts.rates[i];
        let sel = pruning.select(graph, comps, rate)?;
        pruned[i] = sel.components.len();
        pruned_per_layer[i] = crate::prune::ranking::units_per_layer(comps, &sel.components);
        kept[i] = sel.kept;
        if opts.stop_at_chance && chance_from.is_some_and(|c| i > c) {
            continue;
        }
        let point = if sel.components.is_empty() {
            match unpruned {
                Some(u) => u,
                None => *unpruned.insert(Point::of(&evaluate_split(graph, split, &opts.eval)?)),
            }
        } else {
            Point::of(&pruning.measure(graph, comps, &sel, split, &opts.eval)?)
        };
        points[i] = Some(point);
        if progress(i, point.accuracy).is_break() {
            return Err(crate::Error::Interrupted(format!("curve stopped by the caller after rate {rate}")));
        }
        if broken(&point, &unpruned) {
            let below = (0..i).rev().find_map(|j| points[j].map(|p| (j, p)));
            let above = (i + 1..n).find_map(|j| points[j].map(|p| (j, p)));
            let pair_top = match (below, above) {
                (Some((_, p)), _) if broken(&p, &unpruned) => Some(i),
                (_, Some((j, p))) if broken(&p, &unpruned) => Some(j),
                _ => None,
            };
            if let Some(top) = pair_top {
                chance_from = Some(chance_from.map_or(top, |c| c.min(top)));
            }
        }
    }
    let filled_from = match chance_from {
        Some(c) if opts.stop_at_chance && c + 1 < n => Some(c + 1),
        _ => None,
    };
    // Classifiers fill with chance; a language model with its broken measurement at the fill's
    // start (chance means nothing over a vocabulary).
    let fill = match chance_from.filter(|_| text) {
        Some(c) => points[c].expect("the pair's top is measured"),
        None => Point { accuracy: chance, perplexity: None },
    };
    let points: Vec<Point> = points.into_iter().map(|p| p.unwrap_or(fill)).collect();
    let accuracies: Vec<f64> = points.iter().map(|p| p.accuracy).collect();
    let kept: Vec<f64> =
        if kept.iter().all(Option::is_some) { kept.into_iter().flatten().collect() } else { Vec::new() };
    let unpruned = match unpruned {
        Some(u) => u,
        None => Point::of(&evaluate_split(graph, split, &opts.eval)?),
    };
    let mut summary = summarize(&opts.rates, &accuracies, unpruned.accuracy);
    let perplexities: Vec<f64> =
        if text { points.iter().map(|p| p.perplexity.unwrap_or(f64::NAN)).collect() } else { Vec::new() };
    if text {
        summary.mean_log_perplexity = Some(mean_log_perplexity(&perplexities, classes));
    }
    Ok(Curve {
        rates: opts.rates.clone(),
        accuracies,
        pruned,
        pruned_per_layer,
        unpruned_accuracy: unpruned.accuracy,
        chance,
        filled_from,
        summary,
        kept,
        axis: CurveAxis::Rate,
        perplexities,
        unpruned_perplexity: unpruned.perplexity,
    })
}

/// One measured point of a curve.
#[derive(Clone, Copy, Debug)]
struct Point {
    accuracy: f64,
    perplexity: Option<f64>,
}

impl Point {
    fn of(hits: &Hits) -> Point {
        Point { accuracy: hits.accuracy(), perplexity: hits.next_token().map(|s| s.perplexity) }
    }

    /// Whether the model is broken at this point: a classifier at chance (within a point), a
    /// language model at [`BROKEN_PERPLEXITY_FACTOR`] times its unpruned perplexity (or a
    /// non-finite one).
    fn is_broken(&self, unpruned: Option<&Point>, chance: f64) -> bool {
        match (self.perplexity, unpruned.and_then(|u| u.perplexity)) {
            (Some(ppl), Some(base)) => ppl.is_nan() || ppl >= BROKEN_PERPLEXITY_FACTOR * base,
            _ => self.accuracy <= chance + 0.01,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn coarse_first_is_a_permutation_whose_prefixes_span_the_grid() {
        for n in 0..40 {
            let order = RateVisit::CoarseFirst.order(n);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "n = {n}");
            if n >= 3 {
                assert_eq!(&order[..3], &[0, n - 1, (n - 1) / 2]);
            }
        }
        assert_eq!(RateVisit::CoarseFirst.order(20)[..9], [0, 19, 9, 4, 14, 2, 6, 11, 16]);
        assert_eq!(RateVisit::Ascending.order(4), vec![0, 1, 2, 3]);
    }

    #[test]
    fn broken_means_chance_for_classifiers_and_exploded_perplexity_for_language_models() {
        let class = |a| Point { accuracy: a, perplexity: None };
        assert!(class(0.105).is_broken(None, 0.1) && !class(0.12).is_broken(None, 0.1));
        let lm = |a, p| Point { accuracy: a, perplexity: Some(p) };
        let base = lm(0.4, 20.0);
        // Next-token accuracy near 1 / vocabulary is never reached; perplexity decides.
        assert!(!lm(0.05, 1999.0).is_broken(Some(&base), 1e-5));
        assert!(lm(0.05, 2000.0).is_broken(Some(&base), 1e-5));
        assert!(lm(0.05, f64::NAN).is_broken(Some(&base), 1e-5));
        assert!(
            (mean_log_perplexity(&[20.0, 1e9, f64::INFINITY], 64) - (20f64.ln() + 2.0 * 64f64.ln()) / 3.0).abs()
                < 1e-12
        );
    }

    #[test]
    fn a_pr_estimate_interpolates_and_is_exact_when_complete() {
        let acc = [0.9, 0.88, 0.8, 0.6, 0.3];
        let all: BTreeMap<usize, f64> = acc.iter().copied().enumerate().collect();
        let exact = acc.iter().sum::<f64>() / 5.0;
        assert!((estimate_a_pr(5, &all) - exact).abs() < 1e-15);
        // Ends and middle: 0.9, (0.9+0.8)/2, 0.8, (0.8+0.3)/2, 0.3.
        let coarse: BTreeMap<usize, f64> = [(0, 0.9), (2, 0.8), (4, 0.3)].into();
        assert!((estimate_a_pr(5, &coarse) - (0.9 + 0.85 + 0.8 + 0.55 + 0.3) / 5.0).abs() < 1e-15);
        // Beyond the measured points, the nearest one.
        let low: BTreeMap<usize, f64> = [(1, 0.7)].into();
        assert!((estimate_a_pr(5, &low) - 0.7).abs() < 1e-15);
        assert!(estimate_a_pr(5, &BTreeMap::new()).is_nan());
    }
}
