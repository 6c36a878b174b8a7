//! The objective: A_PR of the accuracy curve on the validation split, everything but the
//! attribution hyperparameters fixed (model, components, classes, references, rates).

use super::space::{Params, SearchSpace};
use crate::attribution::normalize::RankingUse;
use crate::data::{SplitName, Splits};
use crate::error::{Error, Result};
use crate::evaluate::{estimate_a_pr, RateVisit};
use crate::experiment::{measure_curve_until, score, RunOptions, Task, TaskSpec};
use crate::graph::Graph;
use crate::prune::components::ComponentSet;
use std::collections::HashMap;
use std::ops::ControlFlow;

/// How a trial ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TrialOutcome {
    Complete(f64),
    /// Stopped early; the last intermediate value.
    Pruned(f64),
}

/// Something a study maximises. `report(step, value)` records an intermediate value and
/// answers whether to stop (prune) the trial.
pub trait Objective {
    fn evaluate(&mut self, params: &Params, report: &mut dyn FnMut(i64, f64) -> bool) -> Result<TrialOutcome>;
}

/// A_PR on the validation split, averaged over reference draws. The rates are measured coarse
/// first ([`RateVisit::CoarseFirst`]); the intermediate value at step s (after s + 1 rates) is
/// the first draw's A_PR estimated from the rates measured so far ([`estimate_a_pr`]), so a
/// early stopping compares trials on the same points of the whole grid, like with like.
pub struct PruningObjective<'a> {
    pub graph: &'a mut Graph,
    pub components: ComponentSet,
    pub splits: &'a Splits,
    pub num_classes: i64,
    /// The task; its split is forced to validation.
    pub task: TaskSpec,
    pub opts: RunOptions,
    /// Reference draws the objective averages (see [`Task::with_reference_draw`]); `[0]`: the
    /// task's own references only.
    pub draws: Vec<usize>,
    /// Prepared tasks by (references per class, draw).
    tasks: HashMap<(usize, usize), Task>,
}

impl<'a> PruningObjective<'a> {
    pub fn new(
        graph: &'a mut Graph,
        components: ComponentSet,
        splits: &'a Splits,
        num_classes: i64,
        mut task: TaskSpec,
        opts: RunOptions,
    ) -> Result<Self> {
        task.split = SplitName::Val;
        let opts = RunOptions { visit: RateVisit::CoarseFirst, ..opts };
        let mut o = PruningObjective {
            graph,
            components,
            splits,
            num_classes,
            task,
            opts,
            draws: vec![0],
            tasks: HashMap::new(),
        };
        o.task_for(None, 0)?;
        Ok(o)
    }

    /// Averages the objective over the reference draws `draws` (none given: draw 0). Every
    /// draw's task is prepared here, so a bad draw fails before the first trial.
    pub fn with_draws(mut self, draws: Vec<usize>) -> Result<Self> {
        self.draws = if draws.is_empty() { vec![0] } else { draws };
        for d in self.draws.clone() {
            self.task_for(None, d)?;
        }
        Ok(self)
    }

    fn task_for(&mut self, refs: Option<usize>, draw: usize) -> Result<&Task> {
        let k = refs.unwrap_or(self.task.refs_per_class);
        if !self.tasks.contains_key(&(k, 0)) {
            let spec = TaskSpec { refs_per_class: k, ..self.task.clone() };
            let t = Task::prepare(self.splits, self.num_classes, &spec)?;
            self.tasks.insert((k, 0), t);
        }
        if !self.tasks.contains_key(&(k, draw)) {
            let t = self.tasks[&(k, 0)].with_reference_draw(self.splits, draw)?;
            self.tasks.insert((k, draw), t);
        }
        Ok(&self.tasks[&(k, draw)])
    }

    /// The number of validation samples each of the objective's curves evaluates.
    pub fn eval_samples(&self) -> usize {
        self.tasks[&(self.task.refs_per_class, 0)].eval.len()
    }

    /// The run options of a trial: the objective's, in the trial's selection order if it chose one.
    fn trial_options(&self, params: &Params) -> Result<RunOptions> {
        Ok(match SearchSpace::selection(params)? {
            Some(selection) => RunOptions { selection, ..self.opts.clone() },
            None => self.opts.clone(),
        })
    }

    /// The validation A_PR of `params` on each reference draw of `draws` (no pruning).
    pub fn per_draw(&mut self, params: &Params, draws: &[usize]) -> Result<Vec<f64>> {
        let (spec, refs) = SearchSpace::criterion(params)?;
        let opts = self.trial_options(params)?;
        let mut values = Vec::with_capacity(draws.len());
        for &d in draws {
            self.task_for(refs, d)?;
            let task = &self.tasks[&(refs.unwrap_or(self.task.refs_per_class), d)];
            let scores = score(self.graph, &self.components, task, &spec, self.opts.attribution_batch)?;
            let scores = spec.ranking_scores(&scores, &self.components, RankingUse::Curve);
            let curve = measure_curve_until(self.graph, &self.components, &scores, task, &opts, &mut |_, _| {
                ControlFlow::Continue(())
            })?;
            values.push(curve.summary.a_pr);
        }
        Ok(values)
    }
}

impl Objective for PruningObjective<'_> {
    fn evaluate(&mut self, params: &Params, report: &mut dyn FnMut(i64, f64) -> bool) -> Result<TrialOutcome> {
        let (spec, refs) = SearchSpace::criterion(params)?;
        let opts = self.trial_options(params)?;
        let first = self.draws[0];
        self.task_for(refs, first)?;
        let k = refs.unwrap_or(self.task.refs_per_class);
        let task = &self.tasks[&(k, first)];
        let scores = score(self.graph, &self.components, task, &spec, self.opts.attribution_batch)?;
        let scores = spec.ranking_scores(&scores, &self.components, RankingUse::Curve);
        let n = self.opts.rates.len();
        let (mut known, mut last) = (std::collections::BTreeMap::new(), 0.0);
        let r = measure_curve_until(self.graph, &self.components, &scores, task, &opts, &mut |i, acc| {
            known.insert(i, acc);
            last = estimate_a_pr(n, &known);
            if report(known.len() as i64 - 1, last) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        match r {
            Ok(curve) => {
                // The other draws run whole: early stopping has judged the trial on the first.
                let rest = self.draws[1..].to_vec();
                let others = self.per_draw(params, &rest)?;
                let total = curve.summary.a_pr + others.iter().sum::<f64>();
                Ok(TrialOutcome::Complete(total / self.draws.len() as f64))
            }
            Err(Error::Interrupted(_)) => Ok(TrialOutcome::Pruned(last)),
            Err(e) => Err(e),
        }
    }
}
