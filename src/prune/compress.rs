//! From a trained model to the one a user ships: score, select under a budget (a rate, a MACs
//! or parameter target, or an accuracy budget), remove physically, fine-tune to recover; in one
//! step or in N equal steps with fine-tuning between (re-scoring the pruned model each time).
//! `relprune prune` is this function plus option parsing and reports.

use crate::attribution::{CriterionSpec, Scores};
use crate::data::{SplitName, Splits, Subset};
use crate::error::Result;
use crate::experiment::{score, Task, TaskSpec};
use crate::graph::Graph;
use crate::prune::budget::{order_by_cost, select_for_max_drop, select_for_target, unit_costs, BudgetChoice};
use crate::prune::budget::{Measure, Selection, Target};
use crate::prune::components::{ComponentSet, Components};
use crate::prune::plan::Plan;
use crate::prune::ranking::PruneOrder;
use crate::prune::surgery::{prune, GroupRanking, SurgeryReport};
use crate::recovery::{finetune, FinetuneConfig};
use crate::train::{TrainObserver, TrainReport};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How much to remove.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    /// A fraction of the components (the paper's rate).
    Rate(f64),
    /// Keep at most a fraction of the MACs or parameters.
    Target(Target),
    /// The largest removal within this many accuracy points on the validation split.
    MaxDrop(f64),
}

/// Everything `compress` needs besides the model and data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompressConfig {
    pub amount: Amount,
    pub selection: Selection,
    /// Keep every width a multiple of this (1: any).
    pub round_to: usize,
    pub order: PruneOrder,
    pub attribution_batch: usize,
    pub eval_batch: usize,
    /// Tokens per sample for MACs of token models.
    pub seq_len: i64,
    pub finetune: Option<FinetuneConfig>,
    /// Prune in this many equal steps (≥ 1), fine-tuning after each.
    pub steps: usize,
    /// Layers (or module prefixes) never pruned, with the layers coupled to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

/// Nothing removed until an amount is given; the paper's order, any width, one step, no
/// fine-tuning, batches of 64, 128 tokens per sample for token models' MACs.
impl Default for CompressConfig {
    fn default() -> Self {
        CompressConfig {
            amount: Amount::Rate(0.0),
            selection: Selection::Relevance,
            round_to: 1,
            order: PruneOrder::default(),
            attribution_batch: 64,
            eval_batch: 64,
            seq_len: 128,
            finetune: None,
            steps: 1,
            ignored: Vec::new(),
        }
    }
}

/// What one step did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    /// Components removed in this step, and left after it.
    pub removed_components: usize,
    pub components_left: usize,
    pub budget: Option<BudgetChoice>,
    pub surgery: SurgeryReport,
    /// On the task's evaluation samples: right after this step's surgery, and after its fine-tuning.
    pub accuracy_pruned: Option<f64>,
    pub accuracy_finetuned: Option<f64>,
    /// A language model's perplexity and next-token accuracy, measured in the same passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token_pruned: Option<crate::metrics::NextToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token_finetuned: Option<crate::metrics::NextToken>,
    pub training: Option<TrainReport>,
}

/// The result: the final model and every step's record.
pub struct Compressed {
    pub graph: Graph,
    /// The final structure right after its last surgery, before its fine-tuning (None when
    /// nothing was fine-tuned: then that is `graph` itself).
    pub pruned: Option<Graph>,
    pub steps: Vec<StepRecord>,
    /// Components of the unpruned model, and removed in all.
    pub total_components: usize,
    pub removed_components: usize,
    /// What all steps kept, in the unpruned model's numbering.
    pub plan: Plan,
}

/// The data a run scores, selects and fine-tunes on: the task (references and evaluation
/// samples) and the splits it came from.
pub struct TaskData<'a> {
    pub task: &'a Task,
    pub splits: &'a Splits,
}

/// Stages of a run, for progress reports.
pub trait CompressObserver: TrainObserver {
    fn stage(&mut self, _step: usize, _what: &str) {}
}

/// No progress reports.
impl CompressObserver for crate::train::Silent {}

/// The order in which `cfg` removes the units of `comps`: `raw` scores normalised as `spec`
/// ranks for deployment, widths rounded, ignored layers kept, in `cfg.selection`'s arrangement
/// (cost-aware: by relevance per unit of the budget's measure, MACs for a rate).
pub fn deploy_ranking(
    graph: &Graph,
    comps: &ComponentSet,
    spec: &CriterionSpec,
    raw: &Scores,
    cfg: &CompressConfig,
) -> Result<GroupRanking> {
    let scores = spec.ranking_scores(raw, comps, crate::attribution::normalize::RankingUse::Deploy);
    let mut ranking = GroupRanking::new(graph, comps, &scores, cfg.order)?
        .with_round_to(cfg.round_to)?
        .with_ignored(comps, &cfg.ignored)?;
    if cfg.selection == Selection::CostAware {
        let m = match cfg.amount {
            Amount::Target(t) => t.measure,
            _ => Measure::Macs,
        };
        let costs = unit_costs(graph, comps, &ranking, cfg.seq_len)?;
        order_by_cost(&mut ranking, &costs, m);
    }
    cfg.selection.arrange(ranking, graph, comps)
}

/// Prunes `graph` (not modified) as `cfg` says. Without data only data-free criteria can
/// score, and neither an accuracy budget nor fine-tuning is possible.
pub fn compress(
    graph: &Graph,
    kinds: &Components,
    spec: &CriterionSpec,
    data: Option<TaskData<'_>>,
    cfg: &CompressConfig,
    work_dir: &Path,
    observer: &mut dyn CompressObserver,
) -> Result<Compressed> {
    let steps = cfg.steps.max(1);
    if data.is_none() && (cfg.finetune.is_some() || matches!(cfg.amount, Amount::MaxDrop(_))) {
        crate::bail!("fine-tuning and an accuracy budget need data; give --data");
    }
    if steps > 1 && cfg.finetune.is_none() {
        crate::bail!("pruning in steps fine-tunes between them; give --finetune EPOCHS");
    }
    if steps > 1 && matches!(cfg.amount, Amount::MaxDrop(_)) {
        crate::bail!("an accuracy budget is searched in one step; drop --steps or give --rate / --target");
    }
    let total = ComponentSet::find(graph, kinds.clone())?.total;
    let measure0 = match cfg.amount {
        Amount::Target(t) => t.measure.of(graph, cfg.seq_len)?,
        _ => 0,
    };
    // The model each step starts from: the input until the first surgery (never copied).
    let mut current: Option<Graph> = None;
    let mut pruned_last = None;
    let mut records = Vec::new();
    for i in 1..=steps {
        let now = current.as_ref().unwrap_or(graph);
        observer.stage(i, "scoring");
        let comps = ComponentSet::find(now, kinds.clone())?;
        let scores = match &data {
            Some(d) => score(now, &comps, d.task, spec, cfg.attribution_batch)?,
            None => spec.build(cfg.attribution_batch)?.score(now, &comps, &Subset::empty())?,
        };
        let ranking = deploy_ranking(now, &comps, spec, &scores, cfg)?;
        observer.stage(i, "selecting");
        let removed_so_far = total - comps.total;
        let (sel, budget) = match cfg.amount {
            Amount::Rate(r) => {
                // Equal steps in components of the unpruned model.
                let goal = ((total as f64) * r * i as f64 / steps as f64 + 1e-9).floor() as usize;
                let step_rate = goal.saturating_sub(removed_so_far) as f64 / comps.total.max(1) as f64;
                (ranking.selection(step_rate.min(0.999_999))?, None)
            }
            Amount::Target(t) => {
                // Equal steps in the measure: after step i at most ratio + (1 − ratio)·(N − i)/N of
                // the unpruned model's (exactly the target after the last step).
                let fraction = t.ratio + (1.0 - t.ratio) * (steps - i) as f64 / steps as f64;
                // The first step starts from the unpruned model: its size is `measure0`.
                let size = if i == 1 { measure0 } else { t.measure.of(now, cfg.seq_len)? } as f64;
                let limit = measure0 as f64 * fraction;
                if size <= limit {
                    (Vec::new(), None)
                } else {
                    let ratio = if i == 1 { fraction } else { limit / size };
                    let step = Target { measure: t.measure, ratio };
                    let c = select_for_target(now, &comps, &ranking, step, cfg.seq_len)?;
                    (c.selection.clone(), Some(c))
                }
            }
            Amount::MaxDrop(points) => {
                let d = data.as_ref().expect("checked above");
                // Chosen on the validation split (the same classes), never on the split reported.
                let val_spec = TaskSpec { split: SplitName::Val, ..d.task.spec.clone() };
                let val = Task::prepare(d.splits, now.num_outputs().unwrap_or(0), &val_spec)?;
                let c = select_for_max_drop(
                    now,
                    &comps,
                    &ranking,
                    &val.eval,
                    &val.eval_options(cfg.eval_batch),
                    points,
                    cfg.seq_len,
                )?;
                (c.selection.clone(), Some(c))
            }
        };
        observer.stage(i, "removing");
        let (mut small, surgery) = prune(now, &comps, &ranking, &sel)?;
        let hits_pruned = match &data {
            Some(d) => {
                Some(crate::metrics::evaluate_split(&small, &d.task.eval, &d.task.eval_options(cfg.eval_batch))?)
            }
            None => None,
        };
        // Only the last step's pre-fine-tuning weights are reported; copied only when they change.
        if i == steps && cfg.finetune.is_some() {
            pruned_last = Some(small.deep_clone());
        }
        let (training, hits_finetuned) = match (&cfg.finetune, &data) {
            (Some(ft), Some(d)) => {
                observer.stage(i, "fine-tuning");
                // Keyed by what determines this step's model and recipe: a rerun resumes.
                let key = crate::util::derive_seed(
                    0,
                    &serde_json::json!([i, spec.label(), cfg, small.num_parameters(), sel]).to_string(),
                );
                let work = work_dir.join(format!("step{i}-{key:016x}"));
                let report = finetune(&mut small, graph, d.splits, d.task.classes.as_ref(), ft, &work, observer)?;
                let hits = crate::metrics::evaluate_split(&small, &d.task.eval, &d.task.eval_options(cfg.eval_batch))?;
                (Some(report), Some(hits))
            }
            _ => (None, None),
        };
        records.push(StepRecord {
            step: i,
            removed_components: surgery.removed_components,
            components_left: comps.total - surgery.removed_components,
            budget,
            surgery,
            accuracy_pruned: hits_pruned.map(|h| h.accuracy()),
            accuracy_finetuned: hits_finetuned.map(|h| h.accuracy()),
            next_token_pruned: hits_pruned.and_then(|h| h.next_token()),
            next_token_finetuned: hits_finetuned.and_then(|h| h.next_token()),
            training,
        });
        current = Some(small);
    }
    let left = records.last().map_or(total, |r| r.components_left);
    let plan = records.iter().fold(Plan::default(), |plan, r| plan.then(&r.surgery.plan));
    Ok(Compressed {
        pruned: pruned_last,
        graph: current.unwrap_or_else(|| graph.deep_clone()),
        steps: records,
        total_components: total,
        removed_components: total - left,
        plan,
    })
}
