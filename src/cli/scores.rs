//! `relprune scores`: a criterion's per-unit scores, per layer (what `prune` ranks by).

use super::common::{DataArgs, ModelArgs, Output, TaskArgs};
use clap::Args;
use relprune::attribution::CriterionSpec;
use relprune::workflow::{scores::scores, Session};

#[derive(Args)]
pub struct ScoresArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    task: TaskArgs,
    /// Criterion (as for `curve`), or `file:RULES.yaml` from `relprune optimize`.
    #[arg(long, default_value = "lrp-epsilon")]
    criterion: String,
    /// LRP rules for `--criterion lrp` (as for `curve`).
    #[arg(long)]
    rules: Option<String>,
    /// Scale each layer's scores: none, max, l2, sum, mean or lamp (as for `prune`).
    #[arg(long)]
    normalize: Option<relprune::prune::ranking::LayerNormalization>,
    /// The scores as `prune` ranks them: each layer scaled by the default normalisation for the
    /// component kind where the criterion sets none (default: the criterion's own scores).
    #[arg(long)]
    ranked: bool,
}

pub fn run(args: ScoresArgs, out: &Output) -> anyhow::Result<()> {
    let spec = CriterionSpec::parse(&args.criterion, args.rules.as_deref(), args.task.seed)?
        .with_normalization(args.normalize)?;
    let session =
        Session::open(&args.model.source(), &args.data.source(), &args.task.task_spec(), args.task.component)?;
    let report = scores(&session, &spec, args.task.attribution_batch, args.ranked)?;
    out.say(format!(
        "{}: {} scores of {} ({} layers)",
        report.model,
        report.component,
        report.criterion,
        report.layers.len()
    ));
    out.say(format!("  {:<34} {:>6} {:>12} {:>12} {:>12}", "layer", "units", "min", "mean", "max"));
    for l in &report.layers {
        let n = l.scores.len().max(1) as f64;
        let (lo, hi) = l.scores.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let mean = l.scores.iter().sum::<f64>() / n;
        out.say(format!("  {:<34} {:>6} {lo:>12.4e} {mean:>12.4e} {hi:>12.4e}", l.name, l.scores.len()));
    }
    out.emit(&report)
}
