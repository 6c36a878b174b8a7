//! `relprune curve` and `relprune compare`: accuracy-vs-rate curves for one or several criteria
//! on the same references and evaluation samples.

use super::common::{
    marks_table, rate_table, run_with_progress, setup, summary_table, AxisArgs, DataArgs, ModelArgs, Output, Setup,
    TaskArgs,
};
use clap::Args;
use relprune::attribution::spec::{CriterionSpec, DEFAULT_COMPARISON};
use relprune::report::{write_curves, CurvesReport, RunHeader};
use std::path::PathBuf;

#[derive(Args)]
pub struct CurveArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    task: TaskArgs,
    #[command(flatten)]
    axis: AxisArgs,
    /// Criterion: lrp, lrp-epsilon, lrp-zplus, lrp-faithful, lrp-epsilon-plus, lrp-alpha2beta1,
    /// random, weight, weight-l2, activation, gradient, taylor, integrated-gradients.
    #[arg(long, default_value = "lrp-epsilon")]
    criterion: String,
    /// LRP rules for `--criterion lrp`: `low=epsilon,mid=gamma:0.25,high=zplus,fc=epsilon`
    /// (groups not named: epsilon); finer, N equal depth groups `d1=zplus,d2=gamma:0.25,…,dN=…`
    /// in place of low / mid / high; or a rules file written by `relprune optimize`.
    #[arg(long)]
    rules: Option<String>,
    /// Output folder for curve.json and curve.png.
    #[arg(long, default_value = "out/curve")]
    out: PathBuf,
}

#[derive(Args)]
pub struct CompareArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    task: TaskArgs,
    #[command(flatten)]
    axis: AxisArgs,
    /// Comma-separated criteria (default: the LRP presets and every baseline). A rules file
    /// written by `relprune optimize` may be given as `file:PATH`.
    #[arg(long, value_delimiter = ',')]
    criteria: Option<Vec<String>>,
    /// Output folder for compare.json and compare.png.
    #[arg(long, default_value = "out/compare")]
    out: PathBuf,
}

/// Parses a criterion name, or `file:PATH` for a rules file.
pub fn parse_criterion(name: &str, seed: u64) -> anyhow::Result<CriterionSpec> {
    Ok(match name.strip_prefix("file:") {
        Some(path) => CriterionSpec::from_file(std::path::Path::new(path))?,
        None => CriterionSpec::from_name(name, None, seed)?,
    })
}

pub fn run_curve(args: CurveArgs, out: &Output) -> anyhow::Result<()> {
    let outdir = relprune::util::OutputDir::new(&args.out)?;
    let spec = CriterionSpec::from_name(&args.criterion, args.rules.as_deref(), args.task.seed)?;
    let opts = args.axis.apply(args.task.run_options()?)?;
    let Setup { mut model, task, comps, .. } = setup(&args.model, &args.data, &args.task)?;
    out.say(format!(
        "{}: {} {} in {} layers; {} references, {} evaluation samples",
        model.name,
        comps.total,
        comps.kind,
        comps.layers.len(),
        task.refs.len(),
        task.eval.len()
    ));
    let result = run_with_progress(&mut model.graph, &comps, &task, &spec, &opts)?;
    out.say(rate_table(&result));
    out.say(summary_table(std::slice::from_ref(&result)));
    let marks = marks_table(std::slice::from_ref(&result));
    if !marks.is_empty() {
        out.say(marks);
    }
    let report = CurvesReport { header: RunHeader::new(&model, &task), results: vec![result] };
    write_curves(outdir.path(), "curve", &report)?;
    outdir.commit(&["curve.json", "curve.png"])?;
    out.say(format!("wrote {}/curve.json and curve.png", args.out.display()));
    out.emit(&report)
}

pub fn run_compare(args: CompareArgs, out: &Output) -> anyhow::Result<()> {
    let outdir = relprune::util::OutputDir::new(&args.out)?;
    let names: Vec<String> =
        args.criteria.unwrap_or_else(|| DEFAULT_COMPARISON.iter().map(|s| s.to_string()).collect());
    let specs: Vec<CriterionSpec> =
        names.iter().map(|n| parse_criterion(n, args.task.seed)).collect::<anyhow::Result<_>>()?;
    let opts = args.axis.apply(args.task.run_options()?)?;
    let Setup { mut model, task, comps, .. } = setup(&args.model, &args.data, &args.task)?;
    out.say(format!(
        "{}: {} {}; {} references, {} evaluation samples; {} criteria",
        model.name,
        comps.total,
        comps.kind,
        task.refs.len(),
        task.eval.len(),
        specs.len()
    ));
    let mut results = Vec::new();
    for spec in &specs {
        results.push(run_with_progress(&mut model.graph, &comps, &task, spec, &opts)?);
    }
    results.sort_by(|a, b| b.curve.summary.a_pr.total_cmp(&a.curve.summary.a_pr));
    out.say(summary_table(&results));
    let marks = marks_table(&results);
    if !marks.is_empty() {
        out.say(marks);
    }
    let report = CurvesReport { header: RunHeader::new(&model, &task), results };
    write_curves(outdir.path(), "compare", &report)?;
    outdir.commit(&["compare.json", "compare.png"])?;
    out.say(format!("wrote {}/compare.json and compare.png", args.out.display()));
    out.emit(&report)
}
