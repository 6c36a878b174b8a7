//! `relprune prune`: a genuinely smaller model — surgery at one rate, with parameters, MACs,
//! latency and accuracy before and after; saved as a reloadable graph folder and as ONNX.

use super::common::{progress, setup, DataArgs, ModelArgs, Output, Setup, TaskArgs};
use clap::Args;
use relprune::attribution::CriterionSpec;
use relprune::evaluate::{accuracy, latency, random_inputs, Latency};
use relprune::experiment::{score, Task};
use relprune::graph::{stats, Graph};
use relprune::surgery::{prune, GroupRanking, SurgeryReport};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args)]
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
    /// LRP rules for `--criterion lrp`.
    #[arg(long)]
    rules: Option<String>,
    /// Fraction of components to remove [range: 0 ≤ rate < 1].
    #[arg(long, value_parser = super::ranges::rate)]
    rate: f64,
    /// Timed forward passes for the batch-1 latency (after 3 warm-up passes); batch 64 uses a
    /// quarter of them (at least 3) after 1 warm-up pass [range: 1..=100000].
    #[arg(long, default_value_t = 20, value_parser = super::ranges::count(1, 100_000))]
    latency_runs: usize,
    /// Tokens per sample for MACs and latency of token models [range: 1..=the model's positions].
    #[arg(long, default_value_t = 128, value_parser = super::ranges::size(1, 1 << 20))]
    seq_len: i64,
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

#[derive(Serialize)]
struct PruneReport {
    model: String,
    criterion: String,
    component: relprune::components::ComponentKind,
    rate: f64,
    surgery: SurgeryReport,
    before: Measures,
    after: Measures,
    parameter_ratio: f64,
    macs_ratio: f64,
    latency_ratio_batch1: f64,
    latency_ratio_batch64: f64,
}

pub fn measure(g: &Graph, task: Option<&Task>, seq_len: i64, runs: usize, batch: usize) -> anyhow::Result<Measures> {
    Ok(Measures {
        parameters: g.num_parameters(),
        macs: stats::macs(g, seq_len)?,
        latency_batch1: latency(g, &random_inputs(g, 1, seq_len), 3, runs)?,
        latency_batch64: latency(g, &random_inputs(g, 64, seq_len), 1, (runs / 4).max(3))?,
        accuracy: task.map(|t| accuracy(g, &t.eval, &t.eval_options(batch))).transpose()?,
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
    relprune::ranking::check_rate(args.rate)?;
    let opts = args.task.run_options()?;
    // `--data none`: a model without data (e.g. random weights to measure speed); only the
    // data-free criteria (weight, random) can score it, and accuracy is not measured.
    let (model, task, comps) = if args.data.data == "none" {
        if !matches!(spec, CriterionSpec::Weight { .. } | CriterionSpec::Random { .. }) {
            anyhow::bail!("criterion {} needs reference samples; give --data", spec.label());
        }
        let model = args.model.load()?;
        stats::check_seq_len(&model.graph, args.seq_len)?;
        relprune::evaluate::check_finite(&model.graph, &random_inputs(&model.graph, 2, args.seq_len))?;
        let comps = relprune::components::ComponentSet::find(&model.graph, args.task.kind(&model.graph))?;
        (model, None, comps)
    } else {
        let Setup { model, task, comps, .. } = setup(&args.model, &args.data, &args.task)?;
        (model, Some(task), comps)
    };
    stats::check_seq_len(&model.graph, args.seq_len)?;
    let kind = comps.kind;
    let pb = progress(3, "scoring");
    let scores = match &task {
        Some(t) => score(&model.graph, &comps, t, &spec, opts.attribution_batch)?,
        None => spec.build(opts.attribution_batch)?.score(&model.graph, &comps, &relprune::data::Subset::empty())?,
    };
    let ranking = GroupRanking::new(&model.graph, &comps, &scores, opts.order)?;
    let sel = ranking.selection(args.rate)?;
    let (small, surgery) = prune(&model.graph, &comps, &ranking, &sel)?;
    pb.set_message("measuring");
    pb.set_position(1);
    let before = measure(&model.graph, task.as_ref(), args.seq_len, args.latency_runs, opts.eval_batch)?;
    pb.set_position(2);
    let after = measure(&small, task.as_ref(), args.seq_len, args.latency_runs, opts.eval_batch)?;
    pb.finish_and_clear();
    // All outputs are staged and moved into place together: the model, its ONNX form and the
    // report always describe the same run.
    let dir = outdir.final_path("model");
    small.save(&outdir.path().join("model"))?;
    relprune::util::write_json_atomic(
        &outdir.path().join("model").join("source.json"),
        &serde_json::json!({ "source": model.name, "dataset": model.dataset, "criterion": spec.label(), "rate": args.rate }),
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
        criterion: spec.label(),
        component: kind,
        rate: args.rate,
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
    out.say(format!(
        "{}: removed {} of {} {} ({} units after coupling) by {} at rate {}",
        report.model,
        report.surgery.removed_components,
        comps.total,
        kind,
        report.surgery.removed_units,
        report.criterion,
        args.rate
    ));
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
