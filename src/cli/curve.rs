//! `relprune curve` and `relprune compare`: accuracy-vs-rate curves for one or several criteria
//! on the same references and evaluation samples.

use super::common::{
    open_session, print_curves, rate_table, AxisArgs, CurveBars, DataArgs, ModelArgs, Output, TaskArgs,
};
use clap::Args;
use relprune::attribution::spec::{CriterionSpec, DEFAULT_COMPARISON};
use relprune::util::OutputDir;
use relprune::workflow::curves::curves_to;
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

pub fn run_curve(args: CurveArgs, out: &Output) -> anyhow::Result<()> {
    let outdir = OutputDir::new(&args.out)?;
    let spec = CriterionSpec::parse(&args.criterion, args.rules.as_deref(), args.task.seed)?
        .with_normalization(args.axis.normalize)?;
    let opts = args.axis.apply(args.task.run_options()?)?;
    let mut session = open_session(&args.model, &args.data, &args.task)?;
    let (comps, data) = (&session.comps, session.data()?);
    out.say(format!(
        "{}: {} {} in {} layers; {} references, {} evaluation samples",
        session.model.name,
        comps.total,
        comps.kinds,
        comps.layers.len(),
        data.task.refs.len(),
        data.task.eval.len()
    ));
    let mut bars = CurveBars::new(data.task.eval.len());
    let (report, _) = curves_to(outdir, "curve", &mut session, &[spec], &opts, &mut bars)?;
    out.say(rate_table(&report.results[0]));
    print_curves(out, &report.results);
    out.say(format!("wrote {}/curve.json and curve.png", args.out.display()));
    out.emit(&report)
}

pub fn run_compare(args: CompareArgs, out: &Output) -> anyhow::Result<()> {
    let outdir = OutputDir::new(&args.out)?;
    let names: Vec<String> =
        args.criteria.unwrap_or_else(|| DEFAULT_COMPARISON.iter().map(|s| s.to_string()).collect());
    let specs: Vec<CriterionSpec> = names
        .iter()
        .map(|n| Ok(CriterionSpec::parse(n, None, args.task.seed)?.with_normalization(args.axis.normalize)?))
        .collect::<anyhow::Result<_>>()?;
    let opts = args.axis.apply(args.task.run_options()?)?;
    let mut session = open_session(&args.model, &args.data, &args.task)?;
    let (comps, data) = (&session.comps, session.data()?);
    out.say(format!(
        "{}: {} {}; {} references, {} evaluation samples; {} criteria",
        session.model.name,
        comps.total,
        comps.kinds,
        data.task.refs.len(),
        data.task.eval.len(),
        specs.len()
    ));
    let mut bars = CurveBars::new(data.task.eval.len());
    let (report, _) = curves_to(outdir, "compare", &mut session, &specs, &opts, &mut bars)?;
    print_curves(out, &report.results);
    out.say(format!("wrote {}/compare.json and compare.png", args.out.display()));
    out.emit(&report)
}
