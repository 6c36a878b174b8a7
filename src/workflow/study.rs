//! A study: Bayesian optimisation of the attribution method for pruning on the validation
//! split, then the winner's curve on the test split next to LRP-ε and the baselines —
//! `relprune optimize` and the demo's step 3.

use super::curves::{curves, CurveObserver};
use super::source::Session;
use crate::attribution::normalize::LayerNormalization;
use crate::attribution::CriterionSpec;
use crate::data::SplitName;
use crate::error::Result;
use crate::evaluate::{CurveAxis, RateVisit};
use crate::experiment::{CurveResult, RunOptions, Task, TaskSpec};
use crate::optimize::objective::PruningObjective;
use crate::optimize::storage::redact;
use crate::optimize::study_report::{self, ObjectiveNoise};
use crate::optimize::{
    best_trial, connect, importance, run_worker, EarlyStop, MedianStop, ModelTraits, SamplerKind, SearchSpace,
    StudyDefinition, StudyObserver, StudyStore, SuccessiveHalving, Trial, TrialState, WorkerSummary,
};
use crate::report::{bar_plot, write_curves, RunHeader};
use crate::util::OutputDir;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How trials are stopped on their partial curve (Optuna's "pruners": early stopping of
/// trials, not network pruning).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EarlyStopping {
    /// Below the median of completed trials at the same step.
    #[default]
    Median,
    /// Successive halving over the rate grid.
    Halving,
    /// Every trial runs its whole curve.
    None,
}

crate::from_str_by_serde!(EarlyStopping: "median, halving or none");

impl EarlyStopping {
    fn build(self) -> Option<EarlyStop> {
        match self {
            EarlyStopping::Median => Some(EarlyStop::Median(MedianStop::default())),
            EarlyStopping::Halving => Some(EarlyStop::Halving(SuccessiveHalving::default())),
            EarlyStopping::None => None,
        }
    }
}

/// The study's name.
#[derive(Clone, Debug, Default)]
pub enum StudyName {
    /// `{model}-{component}-c{classes}-s{seed}`.
    #[default]
    Derived,
    /// This name.
    Given(String),
    /// `{prefix}-{hash of the definition}`: a run whose definition changed (a later relprune's
    /// default space) starts a study of its own beside the old one instead of being refused.
    Keyed(String),
}

/// Everything a study needs besides the session (model, data, task, components).
#[derive(Clone, Debug)]
pub struct StudyConfig {
    /// The curve settings of the objective and of the test comparison.
    pub opts: RunOptions,
    /// The search space (None: the default for the model).
    pub space: Option<SearchSpace>,
    /// Fix the per-layer normalisation in every trial (replacing a searched one).
    pub normalize: Option<LayerNormalization>,
    /// Search the selection order too (relevance or cost-aware) where the default space is used
    /// on a MACs or parameter axis; otherwise every trial uses `opts.selection`.
    pub search_selection: bool,
    /// Trial budget of the study (all workers together).
    pub trials: usize,
    pub sampler: SamplerKind,
    /// Seed of the sampler (None: the task's seed).
    pub sampler_seed: Option<u64>,
    pub early_stopping: EarlyStopping,
    /// Validation samples the objective evaluates on (0: the whole validation split).
    pub val_samples: usize,
    /// Reference draws the objective averages.
    pub objective_draws: usize,
    /// Held-out draws on which LRP-ε and the winner are measured after the study (0: skip).
    pub noise_draws: usize,
    /// `sqlite:PATH` or `postgresql://…` (None: `OUT/study.sqlite`).
    pub storage: Option<String>,
    pub name: StudyName,
    /// Criteria the winner is compared with on the test split (empty: no test comparison).
    pub report: Vec<CriterionSpec>,
    /// Output folder: best-rules.yaml, plots, summary.json, test-compare.*.
    pub out: PathBuf,
}

impl Default for StudyConfig {
    fn default() -> Self {
        StudyConfig {
            opts: RunOptions::default(),
            space: None,
            normalize: None,
            search_selection: false,
            trials: 30,
            sampler: SamplerKind::Tpe,
            sampler_seed: None,
            early_stopping: EarlyStopping::Median,
            val_samples: 0,
            // With one draw, the winner of fmnist-resnet18's study was worse than LRP-ε on the
            // draws it had not seen (docs/benchmarks.md, "optimize").
            objective_draws: 3,
            noise_draws: 5,
            storage: None,
            name: StudyName::Derived,
            report: Vec::new(),
            out: PathBuf::from("out/optimize"),
        }
    }
}

/// The best trial.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BestTrial {
    pub trial: i64,
    pub validation_a_pr: Option<f64>,
    pub params: crate::optimize::space::Params,
    pub criterion: CriterionSpec,
    /// Its selection order, where the space searched one (not part of the rules file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<crate::prune::budget::Selection>,
}

/// The winner's curve on the test split next to the report's criteria.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TestComparison {
    pub header: Option<RunHeader>,
    pub results: Vec<CurveResult>,
}

/// Everything a study reports: the content of `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StudyOutcome {
    pub study: String,
    /// The storage URL, password redacted.
    pub storage: String,
    pub device: String,
    pub sampler: SamplerKind,
    pub budget: usize,
    pub definition: StudyDefinition,
    pub best: BestTrial,
    /// The stand-alone criteria the study started from ([`SearchSpace::seeds`]), with their
    /// validation values: the best trial is never below the best of them.
    pub seeds: Vec<SeedTrial>,
    pub importance: Vec<(String, f64)>,
    pub noise: Option<ObjectiveNoise>,
    pub trials: Vec<Trial>,
    pub test: TestComparison,
    /// What this worker did.
    pub worker: WorkerSummary,
    /// Validation samples each of the objective's curves evaluated.
    pub validation_samples: usize,
    /// The winner's rules file (for `--rules FILE` or `prune --criterion file:FILE`).
    pub rules_file: PathBuf,
}

/// A stand-alone criterion evaluated as one of a study's first trials.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeedTrial {
    /// The criterion's name (`taylor`, `lrp-epsilon`).
    pub criterion: String,
    pub trial: i64,
    /// Its objective on the validation split (None if it failed or has not finished).
    pub validation_a_pr: Option<f64>,
}

/// What a study says while it runs.
pub trait StudyProgress: StudyObserver + CurveObserver {
    /// The study is open: its name, storage (redacted), trials done so far, the sampler's name.
    fn opened(&mut self, _name: &str, _storage: &str, _done: usize, _sampler: &str) {}
    /// The objective's noise was measured.
    fn noise(&mut self, _noise: &ObjectiveNoise) {}
}

/// No progress reports.
impl StudyProgress for () {}
impl StudyObserver for () {}

/// The default search space for the session's model (the softmax treatment where it has
/// attention, the gate rule where it has multiplicative gates), with `normalize` fixed, and the
/// selection order searched where `cfg.search_selection` asks on a MACs or parameter axis (on
/// the rate axis the order does not change a curve).
pub fn space_for(session: &Session, cfg: &StudyConfig) -> Result<SearchSpace> {
    let g = &session.model.graph;
    let space = match &cfg.space {
        Some(s) => s.clone(),
        None if cfg.search_selection && cfg.opts.axis != crate::evaluate::CurveAxis::Rate => {
            SearchSpace::default_for(ModelTraits::of(g)).with_selection_choice()?
        }
        None => SearchSpace::default_for(ModelTraits::of(g)),
    };
    space.with_fixed_normalization(cfg.normalize)
}

/// What defines the objective: a study cannot be resumed under another model, task, grid or
/// setting that changes the objective's value.
fn definition(session: &Session, cfg: &StudyConfig, space: SearchSpace) -> Result<StudyDefinition> {
    let task = val_task(session, cfg)?;
    let model = &session.model;
    let mut objective = serde_json::json!({
        "model": model.name, "origin": model.origin, "component": session.comps.kinds, "task": task,
        "rates": rates_text(&cfg.opts.rates), "objective": "A_PR on the validation split",
        // Intermediate values are A_PR estimates from coarse-first rates; studies from before
        // (ascending running means) cannot be mixed with them, so the order is part of the key.
        "rate_order": RateVisit::CoarseFirst,
    });
    // Recorded only when not the default, so studies written before these options existed
    // still resume.
    let o = &cfg.opts;
    for (key, value, default) in [
        ("reference_draws", serde_json::json!(cfg.objective_draws), cfg.objective_draws == 1),
        ("axis", serde_json::json!(o.axis), o.axis == CurveAxis::Rate),
        ("selection", serde_json::json!(o.selection), o.selection == crate::prune::budget::Selection::Relevance),
        // Also fixed in the space; recorded here too so that a resume under another one names it.
        ("normalize", serde_json::json!(cfg.normalize), cfg.normalize.is_none()),
        ("stop_at_chance", serde_json::json!(o.stop_at_chance), !o.stop_at_chance),
    ] {
        if !default {
            objective[key] = value;
        }
    }
    Ok(StudyDefinition { space, objective })
}

/// The rates as the CLI's default grid text wrote them into earlier definitions (so that studies
/// written before the workflow moved into the library still resume).
fn rates_text(rates: &[f64]) -> String {
    if rates == crate::prune::ranking::default_rates() {
        return "0:0.95:0.05".into();
    }
    rates.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",")
}

fn val_task(session: &Session, cfg: &StudyConfig) -> Result<TaskSpec> {
    let mut task = session.data()?.task.spec.clone();
    task.split = SplitName::Val;
    task.eval_samples = cfg.val_samples;
    Ok(task)
}

/// Runs (or resumes) the study, then reports the winner: its rules file, plots, the objective's
/// noise on held-out draws, and its test curve next to `cfg.report`, written into `cfg.out`
/// together with `summary.json` (everything checked before the first trial: the output folder
/// and the storage).
pub fn run_study(session: &mut Session, cfg: &StudyConfig, progress: &mut dyn StudyProgress) -> Result<StudyOutcome> {
    let outdir = OutputDir::new(&cfg.out)?;
    let storage = cfg.storage.clone().unwrap_or_else(|| format!("sqlite:{}", cfg.out.join("study.sqlite").display()));
    crate::optimize::storage::check_url(&storage)?;
    let space = space_for(session, cfg)?;
    let def = definition(session, cfg, space.clone())?;
    let data = session.data()?;
    let (num_classes, task_spec) = (data.num_classes, data.task.spec.clone());
    let name = match &cfg.name {
        StudyName::Given(n) => n.clone(),
        StudyName::Derived => format!(
            "{}-{}-c{}-s{}",
            session.model.name,
            session.comps.kinds,
            task_spec.classes.map(|c| c.to_string()).unwrap_or("all".into()),
            task_spec.seed
        ),
        StudyName::Keyed(prefix) => {
            let text = serde_json::to_string(&(&def.space, &def.objective)).map_err(crate::Error::json("study"))?;
            format!("{prefix}-{:08x}", crate::util::derive_seed(0, &text) as u32)
        }
    };
    let mut store = StudyStore::open(connect(&storage)?, &name, &def)?;
    // A stored trial whose parameters no longer describe a criterion would fail the study at its
    // end (as the winner, or in the history): named now, before any work.
    for t in store.trials()? {
        SearchSpace::criterion(&t.params).map_err(|e| {
            crate::Error::invalid(format!(
                "trial {} of study `{name}` has stored parameters that are not a valid criterion ({e}); use \
                 another --study name",
                t.number
            ))
        })?;
    }
    let sampler = cfg.sampler.build(cfg.sampler_seed.unwrap_or(task_spec.seed));
    let done =
        store.trials()?.iter().filter(|t| !matches!(t.state, TrialState::Interrupted | TrialState::Running)).count();
    progress.opened(&name, &redact(&storage), done, &sampler.name());
    let seeds = space.seeds();
    let seed_params: Vec<crate::optimize::space::Params> = seeds.iter().map(|(_, p)| p.clone()).collect();
    let first = space.default_params();
    let val = val_task(session, cfg)?;
    let data = session.data.as_ref().expect("checked by val_task");
    let (worker, validation_samples) = {
        let mut objective = PruningObjective::new(
            &mut session.model.graph,
            session.comps.clone(),
            &data.splits,
            num_classes,
            val.clone(),
            cfg.opts.clone(),
        )?
        .with_draws((0..cfg.objective_draws).collect())?;
        let w = run_worker(
            &mut store,
            &space,
            sampler.as_ref(),
            cfg.early_stopping.build(),
            &mut objective,
            cfg.trials,
            &seed_params,
            progress,
        )?;
        (w, objective.eval_samples())
    };
    let trials = store.trials()?;
    let best = best_trial(&trials).ok_or_else(|| {
        // Every trial failing usually means one cause (a setting the model cannot take): say it.
        let why = trials.iter().rev().find_map(|t| t.message.as_deref().filter(|_| t.state == TrialState::Failed));
        crate::Error::invalid(match why {
            Some(m) => format!("no trial of study `{name}` completed; the last failed with: {m}"),
            None => format!("no trial of study `{name}` completed; see `relprune study show`"),
        })
    })?;
    let (best_spec, best_refs) = SearchSpace::criterion(&best.params)?;
    best_spec.to_file(&outdir.path().join("best-rules.yaml"))?;
    let noise = if cfg.noise_draws > 0 {
        let mut objective = PruningObjective::new(
            &mut session.model.graph,
            session.comps.clone(),
            &data.splits,
            num_classes,
            val,
            cfg.opts.clone(),
        )?;
        let n =
            study_report::objective_noise(&mut objective, &first, &best.params, cfg.objective_draws, cfg.noise_draws)?;
        progress.noise(&n);
        Some(n)
    } else {
        None
    };
    study_report::write_history_plot(&outdir.path().join("history.png"), &name, &trials)?;
    study_report::write_gain_plot(&outdir.path().join("gain.png"), &name, &trials, noise.as_ref())?;
    study_report::write_parallel_plot(&outdir.path().join("parallel.png"), &name, &space, &trials)?;
    let imp = importance::importances(&space, &trials);
    bar_plot(&outdir.path().join("importance.png"), &format!("{name}: parameter importance (η²)"), &imp)?;
    let test = test_comparison(session, cfg, &best_spec, best_refs, &outdir, progress)?;
    let outcome = StudyOutcome {
        study: name,
        storage: redact(&storage),
        device: crate::device::name(session.model.graph.device()),
        sampler: cfg.sampler,
        budget: cfg.trials,
        definition: def,
        best: BestTrial {
            trial: best.number,
            validation_a_pr: best.value,
            params: best.params.clone(),
            criterion: best_spec,
            selection: SearchSpace::selection(&best.params)?,
        },
        seeds: seeds
            .iter()
            .filter_map(|(criterion, p)| {
                let t = trials.iter().find(|t| t.state != TrialState::Interrupted && &t.params == p)?;
                Some(SeedTrial {
                    criterion: criterion.clone(),
                    trial: t.number,
                    validation_a_pr: t.value.filter(|_| t.state == TrialState::Complete),
                })
            })
            .collect(),
        importance: imp,
        noise,
        trials: trials.clone(),
        test,
        worker,
        validation_samples,
        rules_file: outdir.final_path("best-rules.yaml"),
    };
    crate::util::write_json_atomic(&outdir.path().join("summary.json"), &outcome)?;
    outdir.commit(&[
        "best-rules.yaml",
        "history.png",
        "gain.png",
        "parallel.png",
        "importance.png",
        "summary.json",
        "test-compare.json",
        "test-compare.png",
        "test-compare-perplexity.png",
    ])?;
    Ok(outcome)
}

/// The winner (labelled `lrp-optimised`) and `cfg.report` on the test split, best first.
fn test_comparison(
    session: &mut Session,
    cfg: &StudyConfig,
    best: &CriterionSpec,
    best_refs: Option<usize>,
    outdir: &OutputDir,
    progress: &mut dyn StudyProgress,
) -> Result<TestComparison> {
    if cfg.report.is_empty() {
        return Ok(TestComparison::default());
    }
    let data = session.data()?;
    let mut spec = data.task.spec.clone();
    spec.split = SplitName::Test;
    if let Some(r) = best_refs {
        spec.refs_per_class = r;
    }
    let task = Task::prepare(&data.splits, data.num_classes, &spec)?;
    // The winner may be a reported criterion itself (a seed: gradient, Taylor): listed once.
    let mut specs = vec![best.clone().labelled("lrp-optimised")];
    specs.extend(cfg.report.iter().filter(|s| (*s).clone().labelled("x") != best.clone().labelled("x")).cloned());
    // The test task replaces the session's for the comparison only.
    let own = std::mem::replace(&mut session.data.as_mut().expect("checked").task, task);
    let report = curves(session, &specs, &cfg.opts, progress);
    session.data.as_mut().expect("checked").task = own;
    let report = report?;
    write_curves(outdir.path(), "test-compare", &report)?;
    Ok(TestComparison { header: Some(report.header), results: report.results })
}

/// Which trial `study rules` writes.
#[derive(Clone, Copy, Debug)]
pub enum TrialChoice {
    /// This trial (it must have completed).
    Number(usize),
    /// The best completed trial among trials 0 … N−1 (what a budget of N would have chosen).
    BestOfFirst(usize),
    /// The best completed trial.
    Best,
}

/// A stored study: its definition and trials (`relprune study show`).
#[derive(Clone, Debug, Serialize)]
pub struct StoredStudy {
    pub study: String,
    pub definition: StudyDefinition,
    pub trials: Vec<Trial>,
}

/// Reads a stored study (`storage`: `sqlite:PATH` or `postgresql://…`; it must exist).
pub fn stored_study(storage: &str, study: &str) -> Result<StoredStudy> {
    let (mut store, definition) = StudyStore::attach(crate::optimize::connect_existing(storage)?, study)
        .map_err(|e| crate::Error::invalid(format!("{}: {e}", redact(storage))))?;
    Ok(StoredStudy { study: study.into(), definition, trials: store.trials()? })
}

/// One trial's composite written as a rules file (`relprune study rules`).
#[derive(Clone, Debug, Serialize)]
pub struct TrialRules {
    pub study: String,
    pub trial: i64,
    pub validation_a_pr: Option<f64>,
    /// References per class the trial was measured with, where the space searched it.
    pub refs_per_class: Option<usize>,
    /// The rules file written.
    pub rules: PathBuf,
}

/// Writes the composite of the chosen trial of a stored study to `path` (.yaml, or .json).
pub fn write_trial_rules(
    storage: &str,
    study: &str,
    choice: TrialChoice,
    path: &std::path::Path,
) -> Result<TrialRules> {
    let mut trials = stored_study(storage, study)?.trials;
    let chosen = match choice {
        TrialChoice::Number(n) => {
            let t = trials.iter().find(|t| t.number == n as i64).ok_or_else(|| {
                crate::Error::invalid(format!("study `{study}` has no trial {n} ({} trials)", trials.len()))
            })?;
            if t.state != TrialState::Complete {
                crate::bail!(
                    "trial {n} of study `{study}` is {}, not complete: its composite was not fully measured",
                    t.state.name()
                );
            }
            t
        }
        TrialChoice::BestOfFirst(_) | TrialChoice::Best => {
            if let TrialChoice::BestOfFirst(n) = choice {
                trials.retain(|t| t.number < n as i64);
            }
            best_trial(&trials).ok_or_else(|| {
                let among = match choice {
                    TrialChoice::BestOfFirst(n) => format!(" among its first {n}"),
                    _ => String::new(),
                };
                crate::Error::invalid(format!("no trial of study `{study}` completed{among}"))
            })?
        }
    };
    let (spec, refs) = SearchSpace::criterion(&chosen.params)
        .map_err(|e| crate::Error::invalid(format!("trial {} of study `{study}`: {e}", chosen.number)))?;
    spec.to_file(path)?;
    Ok(TrialRules {
        study: study.into(),
        trial: chosen.number,
        validation_a_pr: chosen.value,
        refs_per_class: refs,
        rules: path.to_path_buf(),
    })
}
