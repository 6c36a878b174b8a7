//! The objective: A_PR of the accuracy curve on the validation split, everything but the
//! attribution hyperparameters fixed (model, components, classes, references, rates).

use super::space::{Params, SearchSpace};
use crate::components::ComponentSet;
use crate::data::{SplitName, Splits};
use crate::error::{Error, Result};
use crate::experiment::{measure_curve_until, score, RunOptions, Task, TaskSpec};
use crate::graph::Graph;
use std::collections::HashMap;
use std::ops::ControlFlow;

/// How a trial ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TrialOutcome {
    Complete(f64),
    /// Stopped by the pruner; the last intermediate value.
    Pruned(f64),
}

/// Something a study maximises. `report(step, value)` records an intermediate value and
/// answers whether to stop (prune) the trial.
pub trait Objective {
    fn evaluate(&mut self, params: &Params, report: &mut dyn FnMut(i64, f64) -> bool) -> Result<TrialOutcome>;
}

/// A_PR on the validation split; intermediate value after rate i = mean accuracy over rates 0..=i.
pub struct PruningObjective<'a> {
    pub graph: &'a mut Graph,
    pub components: ComponentSet,
    pub splits: &'a Splits,
    pub num_classes: i64,
    /// The task; its split is forced to validation.
    pub task: TaskSpec,
    pub opts: RunOptions,
    tasks: HashMap<usize, Task>,
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
        let mut o = PruningObjective { graph, components, splits, num_classes, task, opts, tasks: HashMap::new() };
        o.task_for(None)?;
        Ok(o)
    }

    fn task_for(&mut self, refs: Option<usize>) -> Result<&Task> {
        let k = refs.unwrap_or(self.task.refs_per_class);
        if !self.tasks.contains_key(&k) {
            let spec = TaskSpec { refs_per_class: k, ..self.task.clone() };
            let t = Task::prepare(self.splits, self.num_classes, &spec)?;
            self.tasks.insert(k, t);
        }
        Ok(&self.tasks[&k])
    }
}

impl Objective for PruningObjective<'_> {
    fn evaluate(&mut self, params: &Params, report: &mut dyn FnMut(i64, f64) -> bool) -> Result<TrialOutcome> {
        let (spec, refs) = SearchSpace::criterion(params)?;
        self.task_for(refs)?;
        let k = refs.unwrap_or(self.task.refs_per_class);
        let task = &self.tasks[&k];
        let scores = score(self.graph, &self.components, task, &spec, self.opts.attribution_batch)?;
        let (mut sum, mut last) = (0.0, 0.0);
        let r = measure_curve_until(self.graph, &self.components, &scores, task, &self.opts, &mut |i, acc| {
            sum += acc;
            last = sum / (i + 1) as f64;
            if report(i as i64, last) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        match r {
            Ok(curve) => Ok(TrialOutcome::Complete(curve.summary.a_pr)),
            Err(Error::Interrupted(_)) => Ok(TrialOutcome::Pruned(last)),
            Err(e) => Err(e),
        }
    }
}
