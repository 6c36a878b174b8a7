//! Prune: a genuinely smaller model — score, select under a budget, remove physically,
//! optionally fine-tune — with parameters, MACs, latency and accuracy before and after, saved as
//! a reloadable graph folder and as ONNX. `relprune prune` is [`prune`] plus option parsing.

use super::source::{DataSource, ModelSource, Session};
use crate::attribution::normalize::{LayerNormalization, RankingUse};
use crate::attribution::CriterionSpec;
use crate::error::{Error, Result};
use crate::evaluate::{latency, random_inputs, Latency};
use crate::experiment::TaskSpec;
use crate::graph::{stats, Graph};
use crate::prune::budget::{BudgetChoice, Selection};
use crate::prune::components::ComponentKind;
use crate::prune::compress::{compress, Amount, CompressConfig, CompressObserver, StepRecord, TaskData};
use crate::prune::plan::Plan;
use crate::prune::surgery::SurgeryReport;
use crate::recovery::FinetuneConfig;
use crate::train::TrainReport;
use crate::util::OutputDir;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything [`prune`] needs besides the model and data.
#[derive(Clone, Debug)]
pub struct PruneConfig {
    /// How components are scored (its normalisation, or the deployment default).
    pub criterion: CriterionSpec,
    /// How much to remove, in which order, in how many steps, with which fine-tuning.
    pub compress: CompressConfig,
    /// Timed forward passes for the batch-1 latency (after 3 warm-up passes); batch 64 uses a
    /// quarter of them (at least 3) after 1 warm-up pass. 0 skips the latency measurement
    /// (on a large model without a GPU it takes minutes).
    pub latency_runs: usize,
}

impl PruneConfig {
    /// `criterion` removing `amount`, everything else at its default.
    pub fn new(criterion: CriterionSpec, amount: Amount) -> Self {
        PruneConfig { criterion, compress: CompressConfig { amount, ..Default::default() }, latency_runs: 20 }
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
    pub component: ComponentKind,
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
    pub component: Option<ComponentKind>,
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
    let spec = &req.config.criterion;
    if req.data.is_none() && spec.needs_references() {
        crate::bail!("criterion {} needs reference samples; give --data", spec.label());
    }
    let session = Session::open(&req.model, &req.data, &req.task, req.component)?;
    let mut config = req.config.clone();
    if session.model.graph.is_language_model() {
        // A language model is measured at the length of the text it reads.
        config.compress.seq_len = super::source::lm_seq_len(req.data.seq_len, &session.model.graph) as i64;
    }
    let pruned = prune_session(&session, &config, &req.out.join("finetune-work"), observer)?;
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
    let (model, comps, spec, c) = (&session.model, &session.comps, &cfg.criterion, &cfg.compress);
    stats::check_seq_len(&model.graph, c.seq_len)?;
    let data = session.data.as_ref().map(|d| TaskData { task: &d.task, splits: &d.splits });
    let result = compress(&model.graph, comps.kind, spec, data, c, work_dir, observer)?;
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
        component: comps.kind,
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
