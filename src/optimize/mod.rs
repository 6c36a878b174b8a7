//! Optimising the attribution method for pruning: a search space (plain data), samplers (TPE,
//! a Gaussian-process optimiser, random, grid), early stopping of trials (Optuna calls these
//! "pruners"; here pruning means the network's), an objective (A_PR on the
//! validation split), and studies stored in SQLite or PostgreSQL so that runs resume after a
//! crash and several workers share one study.
//!
//! The samplers are implemented here rather than taken from a crate: no maintained Rust crate
//! offers TPE with categorical, conditional parameters and a shared trial history (the `tpe`
//! crate samples one independent parameter at a time and keeps no study). The algorithms follow
//! Optuna's defaults and are pinned by tests (`tests/optimize.rs`).

mod gp;
pub mod importance;
pub mod objective;
mod postgres;
pub mod sampler;
pub mod space;
mod sql;
mod sqlite;
pub mod storage;
pub mod study_report;
mod tpe;

pub use objective::{Objective, TrialOutcome};
pub use sampler::{Sampler, SamplerKind};

impl SamplerKind {
    /// The sampler, seeded (defined here, above the samplers it builds).
    pub fn build(self, seed: u64) -> Box<dyn Sampler> {
        match self {
            SamplerKind::Tpe => Box::new(tpe::Tpe::new(seed)),
            SamplerKind::Gp => Box::new(gp::GpSampler::new(seed)),
            SamplerKind::Random => Box::new(sampler::RandomSampler { seed }),
            SamplerKind::Grid => Box::new(sampler::GridSampler),
        }
    }
}
pub use space::{ModelTraits, Params, SearchSpace};
pub use storage::{connect, connect_existing, StudyDefinition, StudyStore};

use crate::error::Result;
use serde::{Deserialize, Serialize};

/// Where a trial stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Running,
    Complete,
    /// Stopped early (Optuna's "pruned"); its value is the last intermediate value.
    Pruned,
    /// The objective raised an error (recorded with its message); counts toward the budget.
    Failed,
    /// Its worker died; does not count toward the budget, so the study re-runs it.
    Interrupted,
}

impl TrialState {
    pub fn name(self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
            TrialState::Interrupted => "interrupted",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => TrialState::Running,
            "complete" => TrialState::Complete,
            "pruned" => TrialState::Pruned,
            "failed" => TrialState::Failed,
            "interrupted" => TrialState::Interrupted,
            other => crate::bail!("unknown trial state `{other}` in storage"),
        })
    }
}

/// One trial of a study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trial {
    pub id: i64,
    pub number: i64,
    pub state: TrialState,
    pub params: Params,
    /// The objective (A_PR on validation) when complete; the last intermediate value when pruned.
    pub value: Option<f64>,
    pub message: Option<String>,
    pub worker: String,
    pub started: i64,
    pub finished: Option<i64>,
    /// (step, value): the running mean accuracy after each rate.
    pub intermediate: Vec<(i64, f64)>,
}

/// Median stopping rule: after `warmup_steps` rates, stop a trial whose running value is below
/// the median of the completed trials' values at the same step (once `startup_trials` exist).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct MedianStop {
    pub startup_trials: usize,
    pub warmup_steps: i64,
}

impl Default for MedianStop {
    fn default() -> Self {
        MedianStop { startup_trials: 5, warmup_steps: 3 }
    }
}

impl MedianStop {
    pub fn should_stop(&self, step: i64, value: f64, history: &[Trial]) -> bool {
        if step < self.warmup_steps {
            return false;
        }
        let mut at: Vec<f64> = history
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .filter_map(|t| t.intermediate.iter().find(|(s, _)| *s == step).map(|(_, v)| *v))
            .collect();
        if at.len() < self.startup_trials {
            return false;
        }
        at.sort_by(f64::total_cmp);
        let n = at.len();
        let median = if n % 2 == 1 { at[n / 2] } else { (at[n / 2 - 1] + at[n / 2]) / 2.0 };
        value < median
    }
}

/// Successive halving over the rate grid (asynchronous, as Optuna's `SuccessiveHalvingPruner`):
/// the partial curve is the low fidelity. Rungs sit after `min_steps`·ηᵏ rates; a trial reaching
/// a rung goes on only if its value there is among the best 1/η of every trial that reached it
/// (at least the best one), so most configurations cost a few rates and the best run the whole
/// curve. Decisions use only the stored intermediate values, so a resumed study decides as an
/// uninterrupted one would.
#[derive(Clone, Copy, Debug)]
pub struct SuccessiveHalving {
    /// Rates evaluated before the first rung.
    pub min_steps: i64,
    /// Reduction factor η (≥ 2).
    pub eta: i64,
}

impl Default for SuccessiveHalving {
    fn default() -> Self {
        SuccessiveHalving { min_steps: 3, eta: 3 }
    }
}

impl SuccessiveHalving {
    /// Whether `step` (0-based rate index) is a rung: `min_steps`·ηᵏ − 1.
    pub fn is_rung(&self, step: i64) -> bool {
        let mut r = self.min_steps.max(1);
        while r - 1 < step {
            r *= self.eta.max(2);
        }
        r - 1 == step
    }

    pub fn should_stop(&self, step: i64, value: f64, history: &[Trial]) -> bool {
        if !self.is_rung(step) {
            return false;
        }
        let mut at: Vec<f64> =
            history.iter().filter_map(|t| t.intermediate.iter().find(|(s, _)| *s == step).map(|(_, v)| *v)).collect();
        at.push(value);
        at.sort_by(|a, b| b.total_cmp(a));
        let keep = (at.len() as i64 / self.eta.max(2)).max(1) as usize;
        value < at[keep - 1]
    }
}

/// When a trial is stopped on its partial curve.
#[derive(Clone, Copy, Debug)]
pub enum EarlyStop {
    /// Below the median of the completed trials at the same rate (Optuna's default).
    Median(MedianStop),
    /// Successive halving: multi-fidelity over the rate grid.
    Halving(SuccessiveHalving),
}

impl EarlyStop {
    pub fn should_stop(&self, step: i64, value: f64, history: &[Trial]) -> bool {
        match self {
            EarlyStop::Median(p) => p.should_stop(step, value, history),
            EarlyStop::Halving(p) => p.should_stop(step, value, history),
        }
    }
}

/// What one worker did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerSummary {
    pub completed: usize,
    pub pruned: usize,
    pub failed: usize,
}

/// Progress callbacks of a worker.
pub trait StudyObserver {
    fn trial_started(&mut self, _trial: &Trial) {}
    fn trial_finished(&mut self, _trial: &Trial, _state: TrialState, _value: Option<f64>, _best: Option<f64>) {}
}

/// Further proposals a worker asks for while the sampler proposes a configuration another
/// trial holds (the last one is then evaluated, repeated or not).
const RESAMPLES: i64 = 16;

#[allow(clippy::too_many_arguments)] // each argument is one independent part of a study run
/// Runs trials until the study holds `budget` trials (interrupted ones excluded): claims a
/// trial (sampling its parameters with every finished trial in view), evaluates it with
/// intermediate reports, and records the outcome.
///
/// `seeds` (the stand-alone criteria of [`SearchSpace::seeds`]: plain LRP-ε first) are the
/// study's baselines, its first trials in order: each is evaluated exactly once per study,
/// whatever the kill pattern or sampler. Whichever worker claims a trial while no live or
/// finished trial holds a seed evaluates the first such seed (a seed's trial whose worker died
/// is interrupted and claimed again), and early stopping never stops one, so the best value is
/// never below the best baseline's.
pub fn run_worker(
    store: &mut StudyStore,
    space: &SearchSpace,
    sampler: &dyn Sampler,
    early_stop: Option<EarlyStop>,
    objective: &mut dyn Objective,
    budget: usize,
    seeds: &[Params],
    observer: &mut dyn StudyObserver,
) -> Result<WorkerSummary> {
    let mut summary = WorkerSummary::default();
    loop {
        let mut snapshot = Vec::new();
        let claimed = store.claim(budget, &mut |history, number| {
            snapshot = history.to_vec();
            let held = |p: &Params| history.iter().any(|t| t.state != TrialState::Interrupted && &t.params == p);
            if let Some(p) = seeds.iter().find(|p| !held(p)) {
                return Ok(p.clone());
            }
            // The objective is deterministic, so a proposal another trial holds would only
            // repeat it (likely where a branch of the space is small: gradient and Taylor take
            // two options). Draw again under derived numbers, which keeps the proposal a
            // function of the seed, the number and the history.
            let mut p = sampler.sample(space, history, number)?;
            for k in 1..=RESAMPLES {
                if !held(&p) {
                    break;
                }
                p = sampler.sample(space, history, number + (k << 32))?;
            }
            Ok(p)
        })?;
        let Some(trial) = claimed else { break };
        observer.trial_started(&trial);
        let baseline = seeds.contains(&trial.params);
        let mut report_err = None;
        let outcome = objective.evaluate(&trial.params, &mut |step, value| {
            if let Err(e) = store.report(trial.id, step, value) {
                report_err = Some(e);
                return true;
            }
            !baseline && early_stop.is_some_and(|p| p.should_stop(step, value, &snapshot))
        });
        if let Some(e) = report_err {
            return Err(e);
        }
        let (state, value, message) = match outcome {
            Ok(TrialOutcome::Complete(v) | TrialOutcome::Pruned(v)) if !v.is_finite() => {
                (TrialState::Failed, None, Some(format!("the objective's value {v} is not finite")))
            }
            Ok(TrialOutcome::Complete(v)) => (TrialState::Complete, Some(v), None),
            Ok(TrialOutcome::Pruned(v)) => (TrialState::Pruned, Some(v), None),
            Err(e) => (TrialState::Failed, None, Some(e.to_string())),
        };
        store.finish(trial.id, state, value, message)?;
        match state {
            TrialState::Complete => summary.completed += 1,
            TrialState::Pruned => summary.pruned += 1,
            _ => summary.failed += 1,
        }
        let best = best_trial(&store.trials()?).and_then(|t| t.value);
        observer.trial_finished(&trial, state, value, best);
    }
    Ok(summary)
}

/// The completed trial with the highest value (ties: the earliest).
pub fn best_trial(trials: &[Trial]) -> Option<&Trial> {
    trials.iter().filter(|t| t.state == TrialState::Complete && t.value.is_some()).fold(
        None,
        |best: Option<&Trial>, t| match best {
            Some(b) if b.value >= t.value => Some(b),
            _ => Some(t),
        },
    )
}
