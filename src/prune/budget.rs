//! Pruning to a user's budget: "half the MACs", "at most one point of accuracy lost".
//!
//! Two layers, Torch-Pruning style:
//! - **Orders.** The paper's order removes the least relevant units first ([`Selection::Relevance`]).
//!   The cost-aware order ([`Selection::CostAware`]) removes first the units that cost the least
//!   relevance per MAC (or parameter) they save: a greedy knapsack. A unit's saving is measured
//!   on the graph itself, by removing one unit of its dependency group: that counts its own
//!   filter, its BatchNorm entry, the next layers' input channels and every coupled member, so
//!   deep filters (many parameters, few MACs) and early ones (few parameters, many MACs) are
//!   charged what they really cost.
//! - **Targets.** Every order gives nested selections (prefixes). MACs and parameters only fall
//!   as a prefix grows, so the smallest prefix meeting a target is found by bisection over its
//!   length, each step a real surgery; the result is within one unit's saving of the target.
//!   An accuracy budget (`max_drop`) bisects on the validation split, never the test split, and
//!   keeps only prefixes it has measured within the budget.

use crate::error::Result;
use crate::graph::{stats, Graph};
use crate::metrics::{accuracy, EvalOptions};
use crate::prune::components::ComponentSet;
use crate::prune::surgery::{prune, GroupRanking};
use serde::{Deserialize, Serialize};

/// How group units are ordered for removal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Least relevant first (the paper's global ranking).
    #[default]
    Relevance,
    /// Least relevance per unit of cost saved first (cost: the target's measure, MACs by default).
    CostAware,
    /// Every layer loses the same share of its units, each its own least relevant
    /// (Torch-Pruning's local pruning): equal widths stay equal, so a decoder pruned this way
    /// keeps a stock configuration. See [`GroupRanking::with_uniform`].
    Uniform,
    /// Whole key/value groups of grouped-query attention (a key/value head with every query
    /// head that reads it), least relevant first by the mean of their query heads; units
    /// without such blocks go one by one. See [`GroupRanking::with_whole_blocks`].
    KvGroups,
    /// Whole layers: a dependency group goes with all its units (an MLP's every neuron, an
    /// attention module's every head: the sub-blocks ShortGPT and SLEB remove), least relevant
    /// first by the mean of its units. Conv layers keep a channel, so they cannot go whole.
    Layers,
}

crate::from_str_by_serde!(Selection: "relevance, cost-aware, uniform, kv-groups or layers");

/// The name `--selection` takes (`cost-aware`).
impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(|s| s.replace('_', "-")));
        f.write_str(&name.unwrap_or_default())
    }
}

impl Selection {
    /// Whether the selection is made per dependency group (whole blocks, equal shares), so a
    /// curve measures it on physically pruned models rather than on component masks.
    pub fn by_groups(self) -> bool {
        matches!(self, Selection::Uniform | Selection::KvGroups | Selection::Layers)
    }

    /// `ranking` arranged as this selection says where no costs are needed (uniform removal,
    /// whole key/value groups or layers); the cost-aware order is [`order_by_cost`]'s.
    pub fn arrange(self, ranking: GroupRanking, graph: &Graph, comps: &ComponentSet) -> Result<GroupRanking> {
        Ok(match self {
            Selection::Uniform => ranking.with_uniform(graph, comps),
            Selection::KvGroups => ranking.with_whole_blocks(graph, comps, false),
            Selection::Layers if comps.kinds.contains(crate::prune::components::ComponentKind::Filters) => {
                crate::bail!(
                    "--selection layers removes whole MLPs (--component neurons) or attention modules (--component \
                 heads); a conv layer keeps at least one channel, so it cannot go whole"
                )
            }
            Selection::Layers => ranking.with_whole_blocks(graph, comps, true),
            Selection::Relevance | Selection::CostAware => ranking,
        })
    }
}

/// What a budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Multiply-accumulates of one forward pass on one sample.
    Macs,
    /// Trainable parameters.
    Params,
    /// Median eval-mode forward latency at this batch size, in microseconds (measured: noisy
    /// on a busy machine, so the search uses the median of 10 timed runs).
    Latency { batch: i64 },
}

impl Measure {
    /// The measure of `graph` (token models: `seq_len` tokens).
    pub fn of(self, graph: &Graph, seq_len: i64) -> Result<i64> {
        match self {
            Measure::Macs => stats::macs(graph, seq_len),
            Measure::Params => Ok(graph.num_parameters()),
            Measure::Latency { batch } => {
                let inputs = crate::metrics::random_inputs(graph, batch, seq_len);
                let l = crate::metrics::latency(graph, &inputs, 2, 10)?;
                Ok((l.median_ms * 1e3).round() as i64)
            }
        }
    }

    /// What the measure is called in messages.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Macs => "MACs",
            Measure::Params => "parameters",
            Measure::Latency { .. } => "latency",
        }
    }
}

/// A size target: keep at most `ratio` of the unpruned model's measure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub measure: Measure,
    pub ratio: f64,
}

impl std::str::FromStr for Target {
    type Err = crate::Error;
    /// `macs=0.5`, `params=0.5` or `latency=0.6[@BATCH]` (batch 1 unless given): the fraction of
    /// the unpruned model's MACs, parameters or measured latency to keep, in (0, 1).
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s).map_err(crate::Error::invalid)
    }
}

impl Target {
    fn parse(s: &str) -> std::result::Result<Self, String> {
        const HELP: &str = "use macs=FRACTION, params=FRACTION or latency=FRACTION[@BATCH]";
        let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}`: {HELP}"))?;
        let (v, batch) = match v.split_once('@') {
            Some((v, b)) => {
                let b: i64 =
                    b.trim().parse().ok().filter(|b| (1..=4096).contains(b)).ok_or_else(|| {
                        format!("`@{b}`: the latency batch size must be a whole number from 1 to 4096")
                    })?;
                (v, Some(b))
            }
            None => (v, None),
        };
        let measure = match (k.trim(), batch) {
            ("macs", None) => Measure::Macs,
            ("params", None) => Measure::Params,
            ("latency", b) => Measure::Latency { batch: b.unwrap_or(1) },
            ("macs" | "params", Some(_)) => return Err(format!("`{s}`: only latency takes @BATCH")),
            (other, _) => return Err(format!("unknown target `{other}`; {HELP}")),
        };
        let ratio: f64 = v.trim().parse().map_err(|_| format!("`{v}` is not a number"))?;
        if !(ratio > 0.0 && ratio < 1.0) {
            return Err(format!("{k}={v}: the fraction to keep must be between 0 and 1 (exclusive)"));
        }
        Ok(Target { measure, ratio })
    }
}

/// What one unit of each dependency group saves when removed from the unpruned model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitCost {
    pub macs: i64,
    pub params: i64,
}

impl UnitCost {
    fn get(&self, m: Measure) -> i64 {
        match m {
            Measure::Macs => self.macs,
            // Latency is not additive per unit; the cost-aware order charges MACs for it.
            Measure::Params => self.params,
            Measure::Latency { .. } => self.macs,
        }
    }
}

/// Each group's per-unit saving, measured by removing one unit of it (blocked groups: zero).
pub fn unit_costs(graph: &Graph, comps: &ComponentSet, ranking: &GroupRanking, seq_len: i64) -> Result<Vec<UnitCost>> {
    let (macs0, params0) = (stats::macs(graph, seq_len)?, graph.num_parameters());
    let mut costs = vec![UnitCost::default(); ranking.groups.len()];
    for (g, cost) in costs.iter_mut().enumerate() {
        // Any unit the ranking offers stands for the group: every unit of a group has the same shape.
        let Some(&(_, u)) = ranking.order.iter().find(|(gg, _)| *gg == g) else { continue };
        let (small, _) = prune(graph, comps, ranking, &[(g, u)])?;
        *cost = UnitCost { macs: macs0 - stats::macs(&small, seq_len)?, params: params0 - small.num_parameters() };
    }
    Ok(costs)
}

/// Reorders `ranking` by relevance per unit of `measure` saved (ascending): a unit's relevance
/// is its pooled score times its group's member count (the relevance removed with it). Units
/// that save nothing go last. Ties keep the relevance order.
pub fn order_by_cost(ranking: &mut GroupRanking, costs: &[UnitCost], measure: Measure) {
    let key = |&(g, u): &(usize, usize)| {
        let relevance = ranking.pooled[g][u] * ranking.groups[g].members.len() as f64;
        let cost = costs[g].get(measure);
        if cost > 0 {
            relevance / cost as f64
        } else {
            f64::INFINITY
        }
    };
    let mut keyed: Vec<(f64, usize, (usize, usize))> =
        ranking.order.iter().enumerate().map(|(i, gu)| (key(gu), i, *gu)).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    ranking.order = keyed.into_iter().map(|(_, _, gu)| gu).collect();
}

/// The selection a budget search settled on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BudgetChoice {
    /// Units (of the order) removed.
    pub units: usize,
    /// Components removed, and as a fraction of all (the equivalent pruning rate).
    pub components: usize,
    pub rate: f64,
    /// The measure before and after, and their ratio (for `max_drop`: MACs).
    pub before: i64,
    pub after: i64,
    pub ratio: f64,
    /// Surgeries the search ran.
    pub evaluations: usize,
    /// Validation accuracy before and at the choice (`max_drop` only).
    pub val_accuracy: Option<(f64, f64)>,
    #[serde(skip)]
    pub selection: Vec<(usize, usize)>,
}

impl BudgetChoice {
    /// The choice of the first `units` of `ranking`'s order, with the measure before and after.
    fn of_prefix(
        ranking: &GroupRanking,
        units: usize,
        (before, after): (i64, i64),
        evaluations: usize,
        val_accuracy: Option<(f64, f64)>,
    ) -> Self {
        let selection = ranking.prefix(units);
        let components = ranking.components_in(&selection);
        BudgetChoice {
            units,
            components,
            rate: components as f64 / ranking.total_components.max(1) as f64,
            before,
            after,
            ratio: after as f64 / before as f64,
            evaluations,
            val_accuracy,
            selection,
        }
    }
}

/// The smallest prefix of `ranking`'s order that keeps at most `target.ratio` of the measure.
pub fn select_for_target(
    graph: &Graph,
    comps: &ComponentSet,
    ranking: &GroupRanking,
    target: Target,
    seq_len: i64,
) -> Result<BudgetChoice> {
    let (choice, reached) = select_at_most(graph, comps, ranking, target, seq_len)?;
    if !reached {
        crate::bail!(
            "target {}={}: removing every unit this criterion may remove leaves {:.3} of the model's {}; \
             every layer keeps at least one unit, coupled units go together, and layers without \
             components of this kind (--component) are not pruned{}. Choose a larger fraction",
            target.measure.name(),
            target.ratio,
            choice.ratio,
            target.measure.name(),
            if ranking.round_to > 1 {
                format!(", and widths stay multiples of {} (--round-to)", ranking.round_to)
            } else {
                String::new()
            }
        );
    }
    Ok(choice)
}

/// A budget target marked on a curve: the model `prune --target` would give for this criterion
/// (the shortest prefix of its group order within the target, removed physically), and its
/// accuracy on the curve's evaluation samples.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BudgetMark {
    pub target: Target,
    /// Whether the order can remove that much; if not, the mark is at its largest removal.
    pub reached: bool,
    /// Components removed, as a fraction of all (the equivalent pruning rate).
    pub rate: f64,
    /// Fractions of the unpruned model's MACs and parameters kept.
    pub macs_kept: f64,
    pub params_kept: f64,
    pub accuracy: f64,
}

impl BudgetMark {
    /// Measures `target` on `ranking`'s order: the selection, the physical model's size and its
    /// accuracy on `split` (token models counted at `seq_len` tokens).
    pub fn measure(
        graph: &Graph,
        comps: &ComponentSet,
        ranking: &GroupRanking,
        target: Target,
        split: &crate::data::Subset,
        eval: &EvalOptions,
        seq_len: i64,
    ) -> Result<Self> {
        let (choice, reached) = select_at_most(graph, comps, ranking, target, seq_len)?;
        let (small, _) = prune(graph, comps, ranking, &choice.selection)?;
        let ratio = |after: i64, before: i64| after as f64 / before.max(1) as f64;
        Ok(BudgetMark {
            target,
            reached,
            rate: choice.rate,
            macs_kept: ratio(stats::macs(&small, seq_len)?, stats::macs(graph, seq_len)?),
            params_kept: ratio(small.num_parameters(), graph.num_parameters()),
            accuracy: accuracy(&small, split, eval)?,
        })
    }

    /// `macs=0.5` (the target's own syntax), for labels.
    pub fn label(&self) -> String {
        self.target.to_string()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.measure {
            Measure::Macs => write!(f, "macs={}", self.ratio),
            Measure::Params => write!(f, "params={}", self.ratio),
            Measure::Latency { batch } => write!(f, "latency={}@{batch}", self.ratio),
        }
    }
}

/// Like [`select_for_target`], but a target that cannot be met gives the whole order (every
/// removable unit) and `false`: curves on a MACs axis flatten there instead of failing.
pub fn select_at_most(
    graph: &Graph,
    comps: &ComponentSet,
    ranking: &GroupRanking,
    target: Target,
    seq_len: i64,
) -> Result<(BudgetChoice, bool)> {
    let before = target.measure.of(graph, seq_len)?;
    let limit = (before as f64 * target.ratio).floor() as i64;
    let mut evaluations = 0;
    let mut measure_at = |k: usize| -> Result<i64> {
        evaluations += 1;
        let (small, _) = prune(graph, comps, ranking, &ranking.prefix(k))?;
        target.measure.of(&small, seq_len)
    };
    if before <= limit {
        return Ok((BudgetChoice::of_prefix(ranking, 0, (before, before), 0, None), true));
    }
    let n = ranking.order.len();
    let at_most = measure_at(n)?;
    if at_most > limit {
        return Ok((BudgetChoice::of_prefix(ranking, n, (before, at_most), evaluations, None), false));
    }
    // Invariant: measure(lo) > limit (or lo = 0), measure(hi) ≤ limit.
    let (mut lo, mut hi, mut at_hi) = (0usize, n, at_most);
    while hi > lo + 1 {
        let mid = (lo + hi) / 2;
        let m = measure_at(mid)?;
        if m <= limit {
            hi = mid;
            at_hi = m;
        } else {
            lo = mid;
        }
    }
    Ok((BudgetChoice::of_prefix(ranking, hi, (before, at_hi), evaluations, None), true))
}

/// The largest prefix whose accuracy on `val` stays within `max_drop_points` (percentage points)
/// of the unpruned model's; only measured prefixes are ever chosen, so the drop on `val` never
/// exceeds the budget.
pub fn select_for_max_drop(
    graph: &Graph,
    comps: &ComponentSet,
    ranking: &GroupRanking,
    val: &crate::data::Subset,
    eval: &EvalOptions,
    max_drop_points: f64,
    seq_len: i64,
) -> Result<BudgetChoice> {
    if !(max_drop_points >= 0.0 && max_drop_points.is_finite()) {
        crate::bail!("--max-drop {max_drop_points}: give a number of percentage points ≥ 0");
    }
    let base = accuracy(graph, val, eval)?;
    let floor = base - max_drop_points / 100.0;
    let mut evaluations = 0;
    let mut acc_at = |k: usize| -> Result<f64> {
        evaluations += 1;
        let (small, _) = prune(graph, comps, ranking, &ranking.prefix(k))?;
        accuracy(&small, val, eval)
    };
    // Accuracy is not strictly monotone in the prefix; bisection treats it as such and keeps
    // only prefixes it measured within the budget (k = 0 always is).
    let (mut lo, mut hi, mut acc_lo) = (0usize, ranking.order.len() + 1, base);
    while hi > lo + 1 {
        let mid = (lo + hi) / 2;
        let a = acc_at(mid)?;
        if a >= floor {
            lo = mid;
            acc_lo = a;
        } else {
            hi = mid;
        }
    }
    let (small, _) = prune(graph, comps, ranking, &ranking.prefix(lo))?;
    let macs = (stats::macs(graph, seq_len)?, stats::macs(&small, seq_len)?);
    Ok(BudgetChoice::of_prefix(ranking, lo, macs, evaluations, Some((base, acc_lo))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_clear_errors() {
        assert_eq!("macs=0.5".parse::<Target>().unwrap(), Target { measure: Measure::Macs, ratio: 0.5 });
        assert_eq!("params=0.25".parse::<Target>().unwrap().measure, Measure::Params);
        assert_eq!("latency=0.6".parse::<Target>().unwrap().measure, Measure::Latency { batch: 1 });
        assert_eq!("latency=0.6@64".parse::<Target>().unwrap().measure, Measure::Latency { batch: 64 });
        for bad in ["latency=0.6@0", "macs=0.5@8", "latency=1.2"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
        for bad in ["macs", "flops=0.5", "macs=1", "macs=0", "macs=x", "macs=NaN", "params=-0.1"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }
}
