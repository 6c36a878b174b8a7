//! Prune: a genuinely smaller model — score, select under a budget, remove physically,
//! optionally fine-tune — with parameters, MACs, latency and accuracy before and after, saved as
//! a reloadable graph folder and as ONNX. `relprune prune` is [`prune`] plus option parsing.

use super::source::{DataSource, ModelSource, Session};
use super::study::{EarlyStopping, StudyConfig, StudyName};
use crate::attribution::normalize::{LayerNormalization, RankingUse};
use crate::attribution::CriterionSpec;
use crate::error::{Error, Result};
use crate::evaluate::{latency, random_inputs, Latency};
use crate::experiment::TaskSpec;
use crate::graph::{stats, Graph};
use crate::prune::budget::{BudgetChoice, Selection};
use crate::prune::choose::{choose, Choice, ChooseConfig};
use crate::prune::components::Components;
use crate::prune::compress::{compress, Amount, CompressConfig, CompressObserver, StepRecord, TaskData};
use crate::prune::plan::Plan;
use crate::prune::surgery::SurgeryReport;
use crate::recovery::FinetuneConfig;
use crate::train::TrainReport;
use crate::util::OutputDir;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a criterion cannot be chosen without data.
const CHOOSING_NEEDS_DATA: &str = "without --criterion the criterion is chosen on the validation split, which needs \
                                   --data; or give a data-free --criterion (weight)";

/// How the criterion is decided.
#[derive(Clone, Debug)]
pub enum CriterionChoice {
    /// This criterion (its normalisation, or the deployment default), in `compress.selection`.
    Given(CriterionSpec),
    /// The best candidate on the validation split at the budget: its criterion, normalisation
    /// and selection (`compress.selection` is replaced by the winner's). Where no choice is
    /// made — a language model, an accuracy budget, several steps — LRP-ε.
    Auto(ChooseConfig),
    /// The winner of a study on the validation split whose objective is the accuracy over
    /// removals up to the budget (see [`budget_study`]): the paper's method, in one command.
    Optimize(OptimizeConfig),
}

impl From<CriterionSpec> for CriterionChoice {
    fn from(spec: CriterionSpec) -> Self {
        CriterionChoice::Given(spec)
    }
}

/// A study for `prune --optimize`: `trials` trials of the default search space with successive
/// halving, on `val_samples` validation samples; its files (resumable) in `OUT/study/`.
#[derive(Clone, Debug)]
pub struct OptimizeConfig {
    pub trials: usize,
    pub val_samples: usize,
    /// A selection order the user fixed; None: on a MACs or parameter budget the study searches
    /// relevance against cost-aware, and `prune` uses the winner's.
    pub selection: Option<Selection>,
}

impl Default for OptimizeConfig {
    fn default() -> Self {
        OptimizeConfig { trials: 20, val_samples: 1000, selection: None }
    }
}

/// The study `prune --optimize` runs for `amount`: the accuracy curve's area over removals of
/// 0 up to the budget (in steps of 0.1, and the budget itself), on the budget's axis: MACs or
/// parameters removed for a size target, components for a rate. The winner's per-layer
/// normalisation is fixed to the raw ranking its curves were measured with, unless it fixes one.
pub fn budget_study(amount: Amount, opt: &OptimizeConfig, seed: u64, out: &Path) -> Result<StudyConfig> {
    use crate::evaluate::CurveAxis;
    let (axis, removed) = match amount {
        Amount::Rate(r) => (CurveAxis::Rate, r),
        Amount::Target(t) => match t.measure {
            crate::prune::budget::Measure::Macs => (CurveAxis::Macs, 1.0 - t.ratio),
            crate::prune::budget::Measure::Params => (CurveAxis::Params, 1.0 - t.ratio),
            _ => crate::bail!("--optimize needs a rate or a MACs or parameter target (a study cannot measure latency)"),
        },
        Amount::MaxDrop(_) => crate::bail!("--optimize needs a rate or a MACs or parameter target, not --max-drop"),
    };
    // The area up to the budget, not the accuracy at the budget alone: one rate under three
    // reference draws is the noisier objective (tried on fmnist-resnet18 at MACs 0.7, 20 trials:
    // its winner did worse on test).
    let mut rates: Vec<f64> = (0..).map(|i| i as f64 / 10.0).take_while(|r| *r < removed - 1e-9).collect();
    rates.push(removed);
    Ok(StudyConfig {
        opts: crate::experiment::RunOptions {
            rates,
            axis,
            selection: opt.selection.unwrap_or_default(),
            ..Default::default()
        },
        normalize: None,
        search_selection: opt.selection.is_none(),
        trials: opt.trials,
        sampler_seed: Some(seed),
        early_stopping: EarlyStopping::Halving,
        val_samples: opt.val_samples,
        noise_draws: 0,
        name: StudyName::Keyed("prune".into()),
        report: Vec::new(),
        out: out.to_path_buf(),
        ..Default::default()
    })
}

/// Everything [`prune`] needs besides the model and data.
#[derive(Clone, Debug)]
pub struct PruneConfig {
    /// How components are scored.
    pub criterion: CriterionChoice,
    /// How much to remove, in which order, in how many steps, with which fine-tuning.
    pub compress: CompressConfig,
    /// Timed forward passes for the batch-1 latency (after 3 warm-up passes); batch 64 uses a
    /// quarter of them (at least 3) after 1 warm-up pass. 0 skips the latency measurement
    /// (on a large model without a GPU it takes minutes).
    pub latency_runs: usize,
}

impl PruneConfig {
    /// `criterion` removing `amount`, everything else at its default.
    pub fn new(criterion: impl Into<CriterionChoice>, amount: Amount) -> Self {
        PruneConfig {
            criterion: criterion.into(),
            compress: CompressConfig { amount, ..Default::default() },
            latency_runs: 20,
        }
    }
}

/// Size and speed of one model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measures {
    pub parameters: i64,
    pub macs: i64,
    /// None when the latency was not measured (`latency_runs` 0).
    pub latency_batch1: Option<Latency>,
    pub latency_batch64: Option<Latency>,
    /// A language model's tokens per second on one sequence (from the batch-1 latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// On the task's evaluation samples (None without data); a language model's next-token
    /// accuracy.
    pub accuracy: Option<f64>,
    /// A language model's perplexity and next-token accuracy on the evaluation sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<crate::metrics::NextToken>,
}

/// What fine-tuning did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinetuneOutcome {
    pub config: FinetuneConfig,
    pub training: TrainReport,
    /// On the task's evaluation samples, after fine-tuning.
    pub accuracy: Option<f64>,
    /// A language model's perplexity and next-token accuracy after fine-tuning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<crate::metrics::NextToken>,
}

/// Everything `prune` reports: the content of `prune.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PruneReport {
    pub model: String,
    /// The device it was pruned, fine-tuned and measured on (`cpu`, `cuda:0`, …).
    pub device: String,
    pub criterion: String,
    /// The candidates tried and the one chosen, when the criterion was chosen on validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<Choice>,
    /// The study whose winner is the criterion, with `--optimize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study: Option<StudyChoice>,
    pub component: Components,
    /// Components of this kind in the unpruned model.
    pub components: usize,
    /// The fraction of components removed (given, or found for a budget).
    pub rate: f64,
    pub selection: Selection,
    /// The per-layer normalisation the ranking used (the criterion's, or the default).
    pub normalize: LayerNormalization,
    pub round_to: usize,
    /// The budget search, when a target or an accuracy budget was given.
    pub budget: Option<BudgetChoice>,
    /// Recovery fine-tuning, when asked for (`before`/`after` are before pruning and right after
    /// it; the saved model is the fine-tuned one).
    pub finetune: Option<FinetuneOutcome>,
    /// With several steps: every step's figures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    pub surgery: SurgeryReport,
    pub before: Measures,
    pub after: Measures,
    pub parameter_ratio: f64,
    pub macs_ratio: f64,
    pub latency_ratio_batch1: Option<f64>,
    pub latency_ratio_batch64: Option<f64>,
}

/// The study behind `prune --optimize`'s criterion.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StudyChoice {
    pub study: String,
    /// The winning trial and its validation A_PR over removals up to the budget.
    pub trial: i64,
    pub validation_a_pr: Option<f64>,
    pub trials: usize,
    /// Its rules (`--criterion file:` reproduces the choice, with `--selection` where it chose one).
    pub rules_file: PathBuf,
    /// The selection order it chose, where the study searched one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<Selection>,
}

/// The pruned model and its report.
pub struct Pruned {
    /// The final model (fine-tuned when asked for).
    pub graph: Graph,
    pub report: PruneReport,
    /// What was kept of each parameter and layer, in the unpruned model's numbering.
    pub plan: Plan,
}

/// Where [`prune`] wrote its outputs.
#[derive(Clone, Debug, Serialize)]
pub struct PruneFiles {
    /// The graph folder (`graph.json` + `model.safetensors`); reload it with `--model`.
    pub model_dir: PathBuf,
    /// `model.onnx`, or why ONNX cannot express the model.
    pub onnx: std::result::Result<PathBuf, String>,
    /// `prune.json`.
    pub report: PathBuf,
    /// `plan.json`: the [`Plan`], for slicing the unpruned model in another framework.
    pub plan: PathBuf,
    /// A decoder's model folder is also a Hugging Face folder (`from_pretrained`): its widths
    /// and whether it needs `trust_remote_code`.
    pub hf: Option<crate::export::hf::HfFolder>,
}

/// What [`prune`] did: the model, its report and its files.
pub struct PruneOutcome {
    pub pruned: Pruned,
    pub files: PruneFiles,
}

/// A whole `prune` run: where the model and data come from and where the outputs go.
#[derive(Clone, Debug)]
pub struct PruneRequest {
    pub model: ModelSource,
    pub data: DataSource,
    pub task: TaskSpec,
    /// Which components (None: the model's default kind).
    pub component: Option<Components>,
    pub config: PruneConfig,
    /// Output folder: `model/`, `model.onnx`, `prune.json`; fine-tuning checkpoints in
    /// `finetune-work/` until the model is in place.
    pub out: PathBuf,
}

/// Size and speed of `g`, with its accuracy measured elsewhere (None without data). A language
/// model is timed on one sequence only (64 sequences of its text length are no deployment
/// shape, and their logits alone would fill the memory), with its tokens per second.
pub fn measure(g: &Graph, accuracy: Option<f64>, seq_len: i64, runs: usize) -> Result<Measures> {
    let lm = g.is_language_model();
    let latency_batch1 = (runs > 0).then(|| latency(g, &random_inputs(g, 1, seq_len), 3, runs)).transpose()?;
    Ok(Measures {
        parameters: g.num_parameters(),
        macs: stats::macs(g, seq_len)?,
        tokens_per_second: latency_batch1.as_ref().filter(|_| lm).map(|l| seq_len as f64 / (l.median_ms / 1e3)),
        latency_batch1,
        latency_batch64: (runs > 0 && !lm)
            .then(|| latency(g, &random_inputs(g, 64, seq_len), 1, (runs / 4).max(3)))
            .transpose()?,
        accuracy,
        next_token: None,
    })
}

/// Loads the model and data, prunes, measures and writes the outputs. Everything that can be
/// checked is checked before any work: the output folder, the criterion against the data.
pub fn prune(req: &PruneRequest, observer: &mut dyn CompressObserver) -> Result<PruneOutcome> {
    let outdir = OutputDir::new(&req.out)?;
    match &req.config.criterion {
        CriterionChoice::Given(spec) if req.data.is_none() && spec.needs_references() => {
            crate::bail!("criterion {} needs reference samples; give --data", spec.label())
        }
        CriterionChoice::Auto(_) | CriterionChoice::Optimize(_) if req.data.is_none() => {
            return Err(Error::invalid(CHOOSING_NEEDS_DATA))
        }
        _ => {}
    }
    let mut session = Session::open(&req.model, &req.data, &req.task, req.component.clone())?;
    let mut config = req.config.clone();
    let mut study = None;
    if let CriterionChoice::Optimize(opt) = &req.config.criterion {
        let cfg = budget_study(config.compress.amount, opt, req.task.seed, &req.out.join("study"))?;
        observer.stage(0, &format!("optimising the criterion ({} trials)", opt.trials));
        let outcome = super::study::run_study(&mut session, &cfg, &mut ())?;
        let mut best = outcome.best.criterion.clone();
        if best.normalization().is_none() {
            best = best.with_normalization(Some(LayerNormalization::None))?;
        }
        config.criterion = CriterionChoice::Given(best);
        if let Some(selection) = outcome.best.selection {
            config.compress.selection = selection;
        }
        study = Some(StudyChoice {
            study: outcome.study,
            trial: outcome.best.trial,
            validation_a_pr: outcome.best.validation_a_pr,
            trials: opt.trials,
            rules_file: outcome.rules_file,
            selection: outcome.best.selection,
        });
    }
    if session.model.graph.is_language_model() {
        // A language model is measured at the length of the text it reads.
        config.compress.seq_len = super::source::lm_seq_len(req.data.seq_len, &session.model.graph) as i64;
    }
    let mut pruned = prune_session(&session, &config, &req.out.join("finetune-work"), observer)?;
    pruned.report.study = study;
    let files = save(outdir, &session, &pruned)?;
    // The fine-tuned model is in place: its checkpoints are no longer needed for resuming.
    if pruned.report.finetune.is_some() {
        let _ = std::fs::remove_dir_all(req.out.join("finetune-work"));
    }
    Ok(PruneOutcome { pruned, files })
}

/// Prunes the session's model as `cfg` says and measures it before and after (nothing written
/// but the fine-tuning checkpoints in `work_dir`).
pub fn prune_session(
    session: &Session,
    cfg: &PruneConfig,
    work_dir: &Path,
    observer: &mut dyn CompressObserver,
) -> Result<Pruned> {
    let (model, comps) = (&session.model, &session.comps);
    stats::check_seq_len(&model.graph, cfg.compress.seq_len)?;
    let data = session.data.as_ref().map(|d| TaskData { task: &d.task, splits: &d.splits });
    let seed = session.data.as_ref().map_or(0, |d| d.task.spec.seed);
    let mut c = cfg.compress.clone();
    let (spec, choice) = match &cfg.criterion {
        CriterionChoice::Given(spec) => (spec.clone(), None),
        CriterionChoice::Optimize(_) => crate::bail!("a study's criterion is chosen by `prune`, before the session"),
        CriterionChoice::Auto(_)
            if model.graph.is_language_model() || c.steps > 1 || matches!(c.amount, Amount::MaxDrop(_)) =>
        {
            (CriterionSpec::parse("lrp-epsilon", None, seed)?, None)
        }
        CriterionChoice::Auto(options) => {
            let d = data.as_ref().ok_or_else(|| Error::invalid(CHOOSING_NEEDS_DATA))?;
            observer.stage(0, "choosing the criterion");
            let choice = choose(&model.graph, comps, d, &c, options, seed, work_dir)?;
            c.selection = choice.winner().selection;
            (choice.spec(seed)?, Some(choice))
        }
    };
    let (spec, c) = (&spec, &c);
    let result = compress(&model.graph, &comps.kinds, spec, data, c, work_dir, observer)?;
    let rate = match c.amount {
        Amount::Rate(r) => r,
        _ => result.removed_components as f64 / result.total_components.max(1) as f64,
    };
    let last = result.steps.last();
    observer.stage(result.steps.len(), "measuring");
    let task = session.data.as_ref().map(|d| &d.task);
    let unpruned = task
        .map(|t| crate::metrics::evaluate_split(&model.graph, &t.eval, &t.eval_options(c.eval_batch)))
        .transpose()?;
    let mut before = measure(&model.graph, unpruned.map(|h| h.accuracy()), c.seq_len, cfg.latency_runs)?;
    before.next_token = unpruned.and_then(|h| h.next_token());
    // The pruned model's accuracy was measured by `compress`, right after its last surgery.
    let pruned = result.pruned.as_ref().unwrap_or(&result.graph);
    let mut after = measure(pruned, last.and_then(|s| s.accuracy_pruned), c.seq_len, cfg.latency_runs)?;
    after.next_token = last.and_then(|s| s.next_token_pruned.clone());
    let finetune = c.finetune.clone().zip(last).and_then(|(config, step)| {
        Some(FinetuneOutcome {
            config,
            training: step.training.clone()?,
            accuracy: step.accuracy_finetuned,
            next_token: step.next_token_finetuned.clone(),
        })
    });
    let surgery = SurgeryReport {
        removed_units: result.steps.iter().map(|s| s.surgery.removed_units).sum(),
        removed_components: result.removed_components,
        emptied: result.steps.iter().flat_map(|s| s.surgery.emptied.clone()).collect(),
        plan: Plan::default(),
    };
    let single = result.steps.len() == 1;
    let report = PruneReport {
        model: model.name.clone(),
        device: crate::device::name(model.graph.device()),
        criterion: spec.label(),
        choice,
        study: None,
        component: comps.kinds.clone(),
        components: comps.total,
        rate,
        selection: c.selection,
        normalize: spec.normalization_for(comps, RankingUse::Deploy),
        round_to: c.round_to,
        budget: if single { last.and_then(|s| s.budget.clone()) } else { None },
        finetune,
        steps: if single { Vec::new() } else { result.steps.clone() },
        parameter_ratio: after.parameters as f64 / before.parameters as f64,
        macs_ratio: after.macs as f64 / before.macs as f64,
        latency_ratio_batch1: ratio(&after.latency_batch1, &before.latency_batch1),
        latency_ratio_batch64: ratio(&after.latency_batch64, &before.latency_batch64),
        surgery,
        before,
        after,
    };
    Ok(Pruned { graph: result.graph, report, plan: result.plan })
}

/// After over before, where both were measured.
fn ratio(after: &Option<Latency>, before: &Option<Latency>) -> Option<f64> {
    Some(after.as_ref()?.median_ms / before.as_ref()?.median_ms)
}

/// Writes the model folder, its ONNX form and the report, staged and moved into place together:
/// they always describe the same run.
fn save(outdir: OutputDir, session: &Session, pruned: &Pruned) -> Result<PruneFiles> {
    let r = &pruned.report;
    pruned.graph.save(&outdir.path().join("model"))?;
    let hf = match &session.model.folder {
        Some(source) if pruned.graph.is_language_model() => {
            Some(crate::export::hf::write_decoder_folder(&pruned.graph, source, &outdir.path().join("model"))?)
        }
        _ => None,
    };
    crate::util::write_json_atomic(
        &outdir.path().join("model").join("source.json"),
        &serde_json::json!({ "source": session.model.name, "dataset": session.model.dataset, "criterion": r.criterion, "rate": r.rate }),
    )?;
    let onnx = match crate::export::onnx::export(&pruned.graph, &outdir.path().join("model.onnx")) {
        Ok(()) => Ok(outdir.final_path("model.onnx")),
        // A file system failure fails the run; a model ONNX cannot express is reported and
        // leaves no model.onnx (an older one is removed on commit).
        Err(e @ Error::Io { .. }) => return Err(e),
        Err(e) => Err(e.to_string()),
    };
    crate::util::write_json_atomic(&outdir.path().join("prune.json"), r)?;
    crate::util::write_json_atomic(&outdir.path().join("plan.json"), &pruned.plan)?;
    let files = PruneFiles {
        model_dir: outdir.final_path("model"),
        onnx,
        report: outdir.final_path("prune.json"),
        plan: outdir.final_path("plan.json"),
        hf,
    };
    outdir.commit(&["model", "model.onnx", "prune.json", "plan.json"])?;
    Ok(files)
}
