//! `relprune prune`: a genuinely smaller model — surgery at one rate, with parameters, MACs,
//! latency and accuracy before and after; saved as a reloadable graph folder and as ONNX.

use super::common::{progress, setup, DataArgs, ModelArgs, Output, Setup, TaskArgs};
use clap::Args;
use relprune::attribution::CriterionSpec;
use relprune::compress::{compress, Amount, CompressConfig, TaskData};
use relprune::evaluate::{accuracy, latency, random_inputs, Latency};
use relprune::graph::{stats, Graph};
use relprune::surgery::SurgeryReport;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("amount").required(true).args(["rate", "target", "max_drop"])))]
pub struct PruneArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    task: TaskArgs,
    /// Criterion (as for `curve`), or `file:RULES.yaml` from `relprune optimize`.
    #[arg(long, default_value = "lrp-epsilon")]
    criterion: String,
    /// LRP rules for `--criterion lrp` (as for `curve`: `low=…,mid=…,high=…,fc=…`, `d1=…,…,dN=…`,
    /// or a rules file).
    #[arg(long)]
    rules: Option<String>,
    /// Fraction of components to remove [range: 0 ≤ rate < 1]. One of --rate, --target, --max-drop.
    #[arg(long, value_parser = super::ranges::rate)]
    rate: Option<f64>,
    /// A size budget instead of a rate: `macs=0.5`, `params=0.5` or `latency=0.6[@BATCH]` keeps at
    /// most that fraction of the unpruned model's MACs, parameters or measured latency (batch 1
    /// unless given) — the smallest removal that meets it, found by bisection on the nested
    /// selections.
    #[arg(long, value_parser = clap::value_parser!(relprune::budget::Target))]
    target: Option<relprune::budget::Target>,
    /// An accuracy budget instead of a rate: the largest removal whose accuracy on the validation
    /// split stays within this many percentage points of the unpruned model's [range: ≥ 0].
    #[arg(long, value_name = "POINTS", value_parser = super::ranges::non_negative)]
    max_drop: Option<f64>,
    /// Order of removal: `relevance` (least relevant first, the paper's) or `cost-aware` (least
    /// relevance per MAC saved first; per parameter with --target params=…).
    #[arg(long, value_enum, default_value = "relevance")]
    selection: relprune::budget::Selection,
    /// Keep every pruned layer's width a multiple of K (hardware-friendly widths, as
    /// Torch-Pruning's `round_to`); a layer narrower than K keeps its width [range: 1..=4096].
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = super::ranges::count(1, 4096))]
    round_to: usize,
    /// Scale scores within each layer before the global ranking: none (the paper's raw global
    /// ranking), max, l2, sum, mean or lamp (LAMP scores). Default: mean for conv filters, none for neurons and
    /// heads, the better of the two for each in benchmarks/deploy at equal MACs, before and after
    /// fine-tuning (docs/benchmarks.md, section "deploy").
    #[arg(long, value_enum)]
    normalize: Option<relprune::ranking::LayerNormalization>,
    /// Prune in N equal steps (of the rate or of the MACs / parameter target), re-scoring the
    /// pruned model and fine-tuning after each step; needs --finetune [range: 1..=100].
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = super::ranges::count(1, 100))]
    steps: usize,
    /// Timed forward passes for the batch-1 latency (after 3 warm-up passes); batch 64 uses a
    /// quarter of them (at least 3) after 1 warm-up pass [range: 1..=100000].
    #[arg(long, default_value_t = 20, value_parser = super::ranges::count(1, 100_000))]
    latency_runs: usize,
    /// Tokens per sample for MACs and latency of token models [range: 1..=the model's positions].
    #[arg(long, default_value_t = 128, value_parser = super::ranges::size(1, 1 << 20))]
    seq_len: i64,
    #[command(flatten)]
    finetune: FinetuneArgs,
    /// Output folder: model/ (graph.json + model.safetensors), model.onnx, prune.json.
    #[arg(long, default_value = "out/prune")]
    out: PathBuf,
}

/// Size and speed of one model.
#[derive(Serialize)]
pub struct Measures {
    pub parameters: i64,
    pub macs: i64,
    pub latency_batch1: Latency,
    pub latency_batch64: Latency,
    /// On the task's evaluation samples (None with `--data none`).
    pub accuracy: Option<f64>,
}

/// Recovery fine-tuning after pruning.
#[derive(Args)]
struct FinetuneArgs {
    /// Fine-tune the pruned model for this many epochs on the task's train split (0: none)
    /// [range: 0..=1000]. Checkpointed every epoch in OUT/finetune-work; rerun to resume.
    #[arg(long, value_name = "EPOCHS", default_value_t = 0, value_parser = super::ranges::count(0, 1000))]
    finetune: usize,
    /// Distil from the unpruned model while fine-tuning (soft targets plus the hard-label loss).
    #[arg(long)]
    distill: bool,
    /// Distillation temperature [range: > 0].
    #[arg(long, default_value_t = 4.0, value_parser = super::ranges::positive)]
    distill_temperature: f64,
    /// Weight of the soft-target loss; 1 − it weighs the hard labels [range: 0..=1].
    #[arg(long, default_value_t = 0.5, value_parser = super::ranges::unit_interval)]
    distill_alpha: f64,
    /// Peak learning rate of fine-tuning (default: 0.01 with SGD for CNNs, 1e-4 with AdamW for
    /// transformers) [range: > 0].
    #[arg(long, value_parser = super::ranges::positive)]
    ft_lr: Option<f64>,
    /// Fine-tuning batch size [range: 1..=65536].
    #[arg(long, default_value_t = 128, value_parser = super::ranges::count(1, super::ranges::MAX_BATCH))]
    ft_batch: usize,
    /// Fine-tune on the first N train samples of the task (0: all) [range: 0..=10^8].
    #[arg(long, default_value_t = 0, value_parser = super::ranges::count(0, super::ranges::MAX_COUNT))]
    ft_samples: usize,
}

impl FinetuneArgs {
    fn config(&self, seed: u64) -> Option<relprune::recovery::FinetuneConfig> {
        (self.finetune > 0).then(|| relprune::recovery::FinetuneConfig {
            epochs: self.finetune,
            lr: self.ft_lr,
            batch_size: self.ft_batch,
            train_samples: self.ft_samples,
            distill: self.distill.then_some(relprune::train::Distill {
                temperature: self.distill_temperature,
                alpha: self.distill_alpha,
            }),
            seed,
            ..Default::default()
        })
    }
}

/// Fine-tuning progress on stderr.
#[derive(Default)]
struct FinetuneBar {
    bar: Option<indicatif::ProgressBar>,
}

impl relprune::compress::CompressObserver for FinetuneBar {
    fn stage(&mut self, step: usize, what: &str) {
        if step > 1 || what == "fine-tuning" {
            eprintln!("step {step}: {what}");
        }
    }
}

impl relprune::train::TrainObserver for FinetuneBar {
    fn epoch_started(&mut self, epoch: usize, batches: usize) {
        let pb = progress(batches as u64, &format!("fine-tune {}", epoch + 1));
        self.bar = Some(pb);
    }
    fn batch_done(&mut self, batch: usize, loss: f64) {
        if let Some(pb) = &self.bar {
            pb.set_position(batch as u64 + 1);
            pb.set_message(format!("loss {loss:.3}"));
        }
    }
    fn epoch_done(&mut self, r: &relprune::train::EpochRecord) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
        eprintln!(
            "fine-tuning epoch {}: train loss {:.4}, validation accuracy {:.2} % ({:.0} s)",
            r.epoch + 1,
            r.train_loss,
            100.0 * r.val_accuracy,
            r.seconds
        );
    }
}

impl FinetuneBar {
    fn finish(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
}

/// What fine-tuning did.
#[derive(Serialize)]
struct FinetuneOutcome {
    config: relprune::recovery::FinetuneConfig,
    training: relprune::train::TrainReport,
    /// On the task's evaluation samples, after fine-tuning.
    accuracy: Option<f64>,
}

#[derive(Serialize)]
struct PruneReport {
    model: String,
    /// The device it was pruned, fine-tuned and measured on (`cpu`, `cuda:0`, …).
    device: String,
    criterion: String,
    component: relprune::components::ComponentKind,
    /// The fraction of components removed (given, or found for a budget).
    rate: f64,
    selection: relprune::budget::Selection,
    normalize: relprune::ranking::LayerNormalization,
    round_to: usize,
    /// The budget search, when a target or an accuracy budget was given.
    budget: Option<relprune::budget::BudgetChoice>,
    /// Recovery fine-tuning, when asked for (`before`/`after` are before pruning and right after
    /// it; the saved model is the fine-tuned one).
    finetune: Option<FinetuneOutcome>,
    /// With --steps N: every step's figures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    steps: Vec<relprune::compress::StepRecord>,
    surgery: SurgeryReport,
    before: Measures,
    after: Measures,
    parameter_ratio: f64,
    macs_ratio: f64,
    latency_ratio_batch1: f64,
    latency_ratio_batch64: f64,
}

/// Size and speed of `g`, with its accuracy measured elsewhere (None without data).
pub fn measure(g: &Graph, accuracy: Option<f64>, seq_len: i64, runs: usize) -> anyhow::Result<Measures> {
    Ok(Measures {
        parameters: g.num_parameters(),
        macs: stats::macs(g, seq_len)?,
        latency_batch1: latency(g, &random_inputs(g, 1, seq_len), 3, runs)?,
        latency_batch64: latency(g, &random_inputs(g, 64, seq_len), 1, (runs / 4).max(3))?,
        accuracy,
    })
}

pub fn run(args: PruneArgs, out: &Output) -> anyhow::Result<()> {
    // Everything that can be checked is checked before any work: the output folder, the
    // criterion, the options.
    let outdir = relprune::util::OutputDir::new(&args.out)?;
    let spec = match args.criterion.strip_prefix("file:") {
        Some(p) => CriterionSpec::from_file(std::path::Path::new(p))?,
        None => CriterionSpec::from_name(&args.criterion, args.rules.as_deref(), args.task.seed)?,
    };
    let opts = args.task.run_options()?;
    // `--data none`: a model without data (e.g. random weights to measure speed); only the
    // data-free criteria (weight, random) can score it, and accuracy is not measured.
    let (model, task, comps, splits) = if args.data.data == "none" {
        if !matches!(spec, CriterionSpec::Weight { .. } | CriterionSpec::Random { .. }) {
            anyhow::bail!("criterion {} needs reference samples; give --data", spec.label());
        }
        let model = args.model.load()?;
        relprune::evaluate::check_finite(&model.graph, &random_inputs(&model.graph, 2, args.seq_len))?;
        let comps = relprune::components::ComponentSet::find(&model.graph, args.task.kind(&model.graph))?;
        (model, None, comps, None)
    } else {
        let Setup { model, task, comps, splits, .. } = setup(&args.model, &args.data, &args.task)?;
        (model, Some(task), comps, Some(splits))
    };
    stats::check_seq_len(&model.graph, args.seq_len)?;
    let kind = comps.kind;
    let normalize = args.normalize.unwrap_or(match kind {
        relprune::components::ComponentKind::Filters => relprune::ranking::LayerNormalization::Mean,
        relprune::components::ComponentKind::Neurons | relprune::components::ComponentKind::Heads => {
            relprune::ranking::LayerNormalization::None
        }
    });
    let amount = match (args.rate, args.target, args.max_drop) {
        (Some(r), _, _) => Amount::Rate(r),
        (None, Some(t), _) => Amount::Target(t),
        (None, None, Some(d)) => Amount::MaxDrop(d),
        (None, None, None) => unreachable!("clap requires one of --rate, --target, --max-drop"),
    };
    let cfg = CompressConfig {
        amount,
        selection: args.selection,
        round_to: args.round_to,
        order: opts.order,
        normalize,
        attribution_batch: opts.attribution_batch,
        eval_batch: opts.eval_batch,
        seq_len: args.seq_len,
        finetune: args.finetune.config(args.task.seed),
        steps: args.steps,
    };
    let data = match (&task, &splits) {
        (Some(task), Some(splits)) => Some(TaskData { task, splits }),
        _ => None,
    };
    let mut bar = FinetuneBar::default();
    let result = compress(&model.graph, kind, &spec, data, &cfg, &args.out.join("finetune-work"), &mut bar)?;
    bar.finish();
    let rate = args.rate.unwrap_or(result.removed_components as f64 / result.total_components.max(1) as f64);
    let last = result.steps.last();
    let pb = progress(2, "measuring");
    let unpruned_accuracy = task.as_ref().map(|t| accuracy(&model.graph, &t.eval, &t.eval_options(opts.eval_batch)));
    let before = measure(&model.graph, unpruned_accuracy.transpose()?, args.seq_len, args.latency_runs)?;
    pb.set_position(1);
    // The pruned model's accuracy was measured by `compress`, right after its last surgery.
    let pruned = result.pruned.as_ref().unwrap_or(&result.graph);
    let after = measure(pruned, last.and_then(|s| s.accuracy_pruned), args.seq_len, args.latency_runs)?;
    pb.finish_and_clear();
    let finetune = cfg.finetune.clone().zip(last).and_then(|(config, step)| {
        Some(FinetuneOutcome { config, training: step.training.clone()?, accuracy: step.accuracy_finetuned })
    });
    let surgery = SurgeryReport {
        removed_units: result.steps.iter().map(|s| s.surgery.removed_units).sum(),
        removed_components: result.removed_components,
        emptied: result.steps.iter().flat_map(|s| s.surgery.emptied.clone()).collect(),
    };
    let budget = if result.steps.len() == 1 { last.and_then(|s| s.budget.clone()) } else { None };
    let steps = if result.steps.len() > 1 { result.steps.clone() } else { Vec::new() };
    let small = result.graph;
    // All outputs are staged and moved into place together: the model, its ONNX form and the
    // report always describe the same run.
    let dir = outdir.final_path("model");
    small.save(&outdir.path().join("model"))?;
    relprune::util::write_json_atomic(
        &outdir.path().join("model").join("source.json"),
        &serde_json::json!({ "source": model.name, "dataset": model.dataset, "criterion": spec.label(), "rate": rate }),
    )?;
    let onnx_note = match relprune::export::onnx::export(&small, &outdir.path().join("model.onnx")) {
        Ok(()) => format!("{}", outdir.final_path("model.onnx").display()),
        // A file system failure fails the run; a model ONNX cannot express is reported and
        // leaves no model.onnx (an older one is removed on commit).
        Err(e @ relprune::Error::Io { .. }) => return Err(e.into()),
        Err(e) => format!("not written: {e}"),
    };
    let report = PruneReport {
        model: model.name.clone(),
        device: relprune::device::name(model.graph.device()),
        criterion: spec.label(),
        component: kind,
        rate,
        selection: args.selection,
        normalize,
        round_to: args.round_to,
        budget,
        finetune,
        steps,
        parameter_ratio: after.parameters as f64 / before.parameters as f64,
        macs_ratio: after.macs as f64 / before.macs as f64,
        latency_ratio_batch1: after.latency_batch1.median_ms / before.latency_batch1.median_ms,
        latency_ratio_batch64: after.latency_batch64.median_ms / before.latency_batch64.median_ms,
        surgery,
        before,
        after,
    };
    relprune::util::write_json_atomic(&outdir.path().join("prune.json"), &report)?;
    let report_path = outdir.final_path("prune.json");
    outdir.commit(&["model", "model.onnx", "prune.json"])?;
    // The fine-tuned model is in place: its checkpoints are no longer needed for resuming.
    if report.finetune.is_some() {
        let _ = std::fs::remove_dir_all(args.out.join("finetune-work"));
    }
    out.say(format!(
        "{}: removed {} of {} {} ({} units after coupling) by {} at rate {}",
        report.model,
        report.surgery.removed_components,
        comps.total,
        kind,
        report.surgery.removed_units,
        report.criterion,
        rate
    ));
    if let Some(b) = &report.budget {
        match b.val_accuracy {
            Some((v0, v1)) => out.say(format!(
                "budget: validation accuracy {:.2} % → {:.2} % (max drop {} points) after {} trial surgeries",
                100.0 * v0,
                100.0 * v1,
                args.max_drop.unwrap_or(0.0),
                b.evaluations
            )),
            None => out.say(format!(
                "budget: {:.3} of the {} kept (target {}) after {} trial surgeries",
                b.ratio,
                args.target.map_or("MACs", |t| t.measure.name()),
                args.target.map(|t| t.ratio).unwrap_or(0.0),
                b.evaluations
            )),
        }
    }
    for name in &report.surgery.emptied {
        out.say(format!("note: `{name}` lost all its units (its block now only adds a bias)"));
    }
    out.say(format!("{:<22} {:>14} {:>14} {:>8}", "", "before", "after", "ratio"));
    let row = |what: &str, a: f64, b: f64| format!("{what:<22} {a:>14.4} {b:>14.4} {:>8.3}", b / a);
    out.say(row("parameters (M)", report.before.parameters as f64 / 1e6, report.after.parameters as f64 / 1e6));
    out.say(row("MACs per sample (M)", report.before.macs as f64 / 1e6, report.after.macs as f64 / 1e6));
    out.say(row("latency batch 1 (ms)", report.before.latency_batch1.median_ms, report.after.latency_batch1.median_ms));
    out.say(row(
        "latency batch 64 (ms)",
        report.before.latency_batch64.median_ms,
        report.after.latency_batch64.median_ms,
    ));
    if let (Some(a), Some(b)) = (report.before.accuracy, report.after.accuracy) {
        out.say(row("accuracy", a, b));
    }
    if let (Some(a), Some(f)) = (report.before.accuracy, &report.finetune) {
        if let Some(b) = f.accuracy {
            out.say(row(&format!("… after {} epoch(s) ft", f.config.epochs), a, b));
        }
    }
    out.say(format!(
        "({} threads; latency = median of timed runs after warm-up)",
        report.before.latency_batch1.threads
    ));
    out.say(format!(
        "wrote {} (reload with --model {}), ONNX: {onnx_note}, {}",
        dir.display(),
        dir.display(),
        report_path.display()
    ));
    out.emit(&report)
}
