//! One pruning experiment end to end: task (class subset, reference samples, evaluation split)
//! → scores → global ranking → accuracy curve. The CLI, the optimiser and the benchmarks all
//! go through here.

use crate::attribution::normalize::RankingUse;
use crate::attribution::{CriterionSpec, Scores};
use crate::data::{select_references, ClassSubset, SplitName, Splits, Subset};
use crate::error::Result;
use crate::evaluate::{accuracy_curve, Curve, CurveAxis, CurveOptions, CurvePruning, EvalOptions};
use crate::graph::Graph;
use crate::prune::components::{ComponentKind, ComponentSet, Components};
use crate::prune::ranking::{PruneOrder, Ranking};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What is fixed for an experiment: the task and the data it is scored and measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Restrict the task to this many classes, drawn by `seed` (None: all classes).
    pub classes: Option<usize>,
    /// Seed of the class draw, the reference draw and the random criterion.
    pub seed: u64,
    pub refs_per_class: usize,
    /// Split the accuracy is measured on.
    pub split: SplitName,
    /// Evaluate on the first n samples of the (class-filtered) split; 0 = all.
    pub eval_samples: usize,
}

impl Default for TaskSpec {
    fn default() -> Self {
        TaskSpec { classes: None, seed: 0, refs_per_class: 10, split: SplitName::Test, eval_samples: 2000 }
    }
}

/// A prepared task.
pub struct Task {
    pub spec: TaskSpec,
    pub classes: Option<ClassSubset>,
    /// Reference samples (from the train split).
    pub refs: Subset,
    /// Evaluation samples (filtered to the task's classes).
    pub eval: Subset,
}

impl Task {
    /// Draws the classes and references and cuts the evaluation split.
    pub fn prepare(splits: &Splits, num_classes: i64, spec: &TaskSpec) -> Result<Task> {
        if splits.train.data.next_token() {
            // Text for a language model: references are sequences drawn from the reference
            // part, and there are no classes to restrict.
            if spec.classes.is_some() {
                crate::bail!("--classes restricts a classifier's classes; a language model's text has none");
            }
            let refs = crate::data::references::select_sequences(&splits.train, spec.refs_per_class, spec.seed)?;
            let mut eval = splits.get(spec.split).clone();
            if spec.eval_samples > 0 {
                eval = eval.head(spec.eval_samples);
            }
            return Ok(Task { spec: spec.clone(), classes: None, refs, eval });
        }
        let data_classes = splits.train.data.class_names().len() as i64;
        if data_classes != num_classes {
            crate::bail!(
                "the model has {num_classes} outputs but the data has {data_classes} classes ({}); give data with \
                 the model's classes, or a model trained for this data",
                splits.train.data.describe()
            );
        }
        let classes = match spec.classes {
            Some(k) if k as i64 == num_classes => None,
            Some(k) => Some(ClassSubset::random(k, num_classes, spec.seed)?),
            None => None,
        };
        let refs = select_references(&splits.train, spec.refs_per_class, spec.seed, classes.as_ref())?;
        let mut eval = splits.get(spec.split).clone();
        if let Some(c) = &classes {
            eval = c.filter(&eval);
        }
        if spec.eval_samples > 0 {
            eval = eval.head(spec.eval_samples);
        }
        if eval.is_empty() {
            crate::bail!("the {:?} split has no samples of the task's classes", spec.split);
        }
        Ok(Task { spec: spec.clone(), classes, refs, eval })
    }

    /// Checks the unpruned model once per run: the data's sample shape must fit its input
    /// ([`crate::data::check_model_inputs`], before any sample is read), and its outputs on a few
    /// evaluation samples must be finite (see [`crate::evaluate::check_finite`]).
    pub fn check_model(&self, graph: &Graph) -> Result<()> {
        crate::data::check_model_inputs(graph, self.eval.data.as_ref())?;
        // Two sequences of text are as telling as 16 samples, and far larger.
        let n = if self.eval.data.next_token() { 2 } else { 16 };
        let batch = self.eval.head(n).full_batch()?;
        crate::evaluate::check_finite(graph, &batch.inputs)
    }

    /// The same task with reference draw `draw`: draw 0 is this task's own references, draw
    /// d ≥ 1 draws them afresh (same classes, same count per class) with a seed derived from
    /// the task's seed and d. The evaluation samples stay the same, so draws differ only in
    /// what the attribution sees (the objective's noise from the reference choice).
    pub fn with_reference_draw(&self, splits: &Splits, draw: usize) -> Result<Task> {
        let refs = if draw == 0 {
            self.refs.clone()
        } else {
            let seed = crate::util::derive_seed(self.spec.seed, &format!("reference-draw-{draw}"));
            if splits.train.data.next_token() {
                crate::data::references::select_sequences(&splits.train, self.spec.refs_per_class, seed)?
            } else {
                select_references(&splits.train, self.spec.refs_per_class, seed, self.classes.as_ref())?
            }
        };
        Ok(Task { spec: self.spec.clone(), classes: self.classes.clone(), refs, eval: self.eval.clone() })
    }

    pub fn eval_options(&self, batch_size: usize) -> EvalOptions {
        EvalOptions { batch_size, classes: self.classes.clone() }
    }
}

/// Settings of a curve run beyond the task.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub rates: Vec<f64>,
    pub stop_at_chance: bool,
    pub order: PruneOrder,
    /// Samples per batch for attribution.
    pub attribution_batch: usize,
    /// Samples per batch for evaluation. 64 rather than larger: on CPU, curves on the zoo ResNet
    /// ran 1.3x faster at 64 than at 256 (activations stay in cache; `examples/cost.rs`).
    pub eval_batch: usize,
    /// Measure the curve on physically pruned graphs (group-level selection; see
    /// [`CurvePruning::Physical`]) instead of masks.
    pub physical: bool,
    /// What the rate grid measures: components (the paper's), or MACs / parameters removed
    /// (always physically, by bisection on the group order).
    pub axis: CurveAxis,
    /// The group order on a MACs / parameter axis, and for the marks.
    pub selection: crate::prune::budget::Selection,
    /// Budget targets to mark on the curve (`curve --target macs=0.5`): each is measured once,
    /// after the curve, on the model `prune --target` would give (see [`mark_targets`]).
    pub marks: Vec<crate::prune::budget::Target>,
    /// The order the rates are measured in (the optimisation objective measures coarse first,
    /// so that its pruner judges trials on the whole grid).
    pub visit: crate::evaluate::RateVisit,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            rates: crate::prune::ranking::default_rates(),
            stop_at_chance: false,
            order: PruneOrder::default(),
            attribution_batch: 64,
            eval_batch: 64,
            physical: false,
            axis: CurveAxis::Rate,
            selection: crate::prune::budget::Selection::Relevance,
            marks: Vec::new(),
            visit: crate::evaluate::RateVisit::Ascending,
        }
    }
}

/// Wall-clock seconds of the two stages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Timings {
    pub scoring_seconds: f64,
    pub curve_seconds: f64,
}

/// One criterion's outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurveResult {
    pub criterion: String,
    pub spec: CriterionSpec,
    pub component: Components,
    pub components: usize,
    /// The component layers (name, depth group, units), in the order of
    /// [`Curve::pruned_per_layer`].
    #[serde(default)]
    pub layers: Vec<LayerUnits>,
    pub curve: Curve,
    /// The budget targets of [`RunOptions::marks`], measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<crate::prune::budget::BudgetMark>,
    pub timings: Timings,
}

/// One component layer as reports list it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerUnits {
    pub name: String,
    pub group: crate::prune::components::DepthGroup,
    pub units: usize,
}

impl LayerUnits {
    pub fn of(comps: &ComponentSet) -> Vec<LayerUnits> {
        comps.layers.iter().map(|l| LayerUnits { name: l.name.clone(), group: l.group, units: l.count }).collect()
    }
}

/// Progress of a run.
pub enum Stage {
    Scoring,
    Rate { index: usize, rate: f64, accuracy: f64 },
}

/// Scores every component of `comps` with `spec` on the task's references (normalised as the
/// criterion fixes; see [`CriterionSpec::ranking_scores`] for the ranking's default).
pub fn score(graph: &Graph, comps: &ComponentSet, task: &Task, spec: &CriterionSpec, batch: usize) -> Result<Scores> {
    let criterion = spec.build(batch)?;
    criterion.score(graph, comps, &task.refs)
}

/// Scores, ranks and measures the curve for one criterion.
pub fn run_criterion(
    graph: &mut Graph,
    comps: &ComponentSet,
    task: &Task,
    spec: &CriterionSpec,
    opts: &RunOptions,
    progress: &mut dyn FnMut(Stage),
) -> Result<CurveResult> {
    progress(Stage::Scoring);
    let t0 = Instant::now();
    let scores = score(graph, comps, task, spec, opts.attribution_batch)?;
    let scoring_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    // The curve ranks as the paper does where the criterion leaves its normalisation open; the
    // marks are the models `prune --target` ships, so they rank as `prune` does.
    let curve =
        measure_curve(graph, comps, &spec.ranking_scores(&scores, comps, RankingUse::Curve), task, opts, progress)?;
    let marks = if opts.marks.is_empty() {
        Vec::new()
    } else {
        mark_targets(graph, comps, &spec.ranking_scores(&scores, comps, RankingUse::Deploy), task, opts)?
    };
    Ok(CurveResult {
        criterion: spec.label(),
        spec: spec.clone(),
        component: comps.kinds.clone(),
        components: comps.total,
        layers: LayerUnits::of(comps),
        curve,
        marks,
        timings: Timings { scoring_seconds, curve_seconds: t1.elapsed().as_secs_f64() },
    })
}

/// The accuracy curve for given scores.
pub fn measure_curve(
    graph: &mut Graph,
    comps: &ComponentSet,
    scores: &Scores,
    task: &Task,
    opts: &RunOptions,
    progress: &mut dyn FnMut(Stage),
) -> Result<Curve> {
    measure_curve_until(graph, comps, scores, task, opts, &mut |index, accuracy| {
        progress(Stage::Rate { index, rate: opts.rates[index], accuracy });
        std::ops::ControlFlow::Continue(())
    })
}

/// Measures each budget target of `opts.marks` on the scores' group order (ordered by relevance
/// per unit of the target's measure with `opts.selection` cost-aware), on the task's evaluation
/// samples. On a rate axis with masks, a mark is the physical model of a group-level selection,
/// so it may sit slightly off the masked curve: it is what `prune --target` ships.
pub fn mark_targets(
    graph: &Graph,
    comps: &ComponentSet,
    scores: &Scores,
    task: &Task,
    opts: &RunOptions,
) -> Result<Vec<crate::prune::budget::BudgetMark>> {
    let mut marks = Vec::with_capacity(opts.marks.len());
    if opts.marks.is_empty() {
        return Ok(marks);
    }
    let eval = task.eval_options(opts.eval_batch);
    // Unit costs (one surgery per group) depend on the groups, not on the target: measured once.
    let costs = match opts.selection {
        crate::prune::budget::Selection::CostAware => {
            let ranking = crate::prune::surgery::GroupRanking::new(graph, comps, scores, opts.order)?;
            Some(crate::prune::budget::unit_costs(graph, comps, &ranking, CURVE_SEQ_LEN)?)
        }
        _ => None,
    };
    for &target in &opts.marks {
        let mut ranking = crate::prune::surgery::GroupRanking::new(graph, comps, scores, opts.order)?;
        if let Some(costs) = &costs {
            crate::prune::budget::order_by_cost(&mut ranking, costs, target.measure);
        }
        let ranking = opts.selection.arrange(ranking, graph, comps)?;
        marks.push(crate::prune::budget::BudgetMark::measure(
            graph,
            comps,
            &ranking,
            target,
            &task.eval,
            &eval,
            CURVE_SEQ_LEN,
        )?);
    }
    Ok(marks)
}

/// Tokens per sample at which a MACs axis counts token models (capped at the model's positions).
pub const CURVE_SEQ_LEN: i64 = 128;

/// Like [`measure_curve`], but `step(rate_index, accuracy)` may stop the measurement early
/// (it then returns [`crate::Error::Interrupted`]).
pub fn measure_curve_until(
    graph: &mut Graph,
    comps: &ComponentSet,
    scores: &Scores,
    task: &Task,
    opts: &RunOptions,
    step: &mut dyn FnMut(usize, f64) -> std::ops::ControlFlow<()>,
) -> Result<Curve> {
    let copts = CurveOptions {
        rates: opts.rates.clone(),
        eval: task.eval_options(opts.eval_batch),
        stop_at_chance: opts.stop_at_chance,
        visit: opts.visit,
    };
    // A gated MLP's neuron is one unit counted in two layers (its gate and up projections, one
    // dependency group): component-level masks would rank the two apart (a gate that LRP's
    // constant gate rule gives no relevance would go first, everywhere), so such a set is
    // measured at group level, as `prune` ranks it.
    let grouped = opts.selection.by_groups()
        || (comps.kinds.contains(ComponentKind::Neurons)
            && crate::prune::components::coupled_groups(graph, comps)?.iter().any(|g| g.members.len() > 1));
    let measure = match opts.axis {
        CurveAxis::Rate => None,
        CurveAxis::Macs => Some(crate::prune::budget::Measure::Macs),
        CurveAxis::Params => Some(crate::prune::budget::Measure::Params),
    };
    if let Some(measure) = measure {
        let mut ranking = crate::prune::surgery::GroupRanking::new(graph, comps, scores, opts.order)?;
        if opts.selection == crate::prune::budget::Selection::CostAware {
            let costs = crate::prune::budget::unit_costs(graph, comps, &ranking, CURVE_SEQ_LEN)?;
            crate::prune::budget::order_by_cost(&mut ranking, &costs, measure);
        }
        let ranking = opts.selection.arrange(ranking, graph, comps)?;
        let pruning = CurvePruning::Budget { ranking: &ranking, measure, seq_len: CURVE_SEQ_LEN };
        let mut curve = accuracy_curve(graph, comps, pruning, &task.eval, &copts, step)?;
        curve.axis = opts.axis;
        Ok(curve)
    } else if opts.physical || grouped {
        // A selection made per group is measured on the physically pruned models.
        let ranking = crate::prune::surgery::GroupRanking::new(graph, comps, scores, opts.order)?;
        let ranking = opts.selection.arrange(ranking, graph, comps)?;
        accuracy_curve(graph, comps, CurvePruning::Physical(&ranking), &task.eval, &copts, step)
    } else {
        let ranking = Ranking::new(scores, opts.order);
        accuracy_curve(graph, comps, CurvePruning::Masks(&ranking), &task.eval, &copts, step)
    }
}
