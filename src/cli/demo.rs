//! `relprune demo`: the bundled demonstration on the zoo's Fashion-MNIST ResNet-18.

use super::common::{summary_table, CurveBars, DataArgs, Output};
use clap::Args;
use relprune::attribution::CriterionSpec;
use relprune::data::SplitName;
use relprune::evaluate::{count_correct, EvalOptions};
use relprune::experiment::{RunOptions, TaskSpec};
use relprune::optimize::{StudyObserver, Trial, TrialState};
use relprune::prune::components::ComponentKind;
use relprune::report::{write_curves, CurvesReport};
use relprune::workflow::curves::{curves, CurveObserver};
use relprune::workflow::study::{run_study, EarlyStopping, StudyConfig, StudyName, StudyProgress};
use relprune::workflow::Session;
use std::path::PathBuf;

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Evaluation samples per pruning rate [range: 1..=10^8].
    #[arg(long, default_value_t = 1000, value_parser = super::ranges::count(1, super::ranges::MAX_COUNT))]
    eval_samples: usize,
    /// Trials of the short LRP optimisation (0 skips it): successive halving on the whole
    /// validation split, about 60 s on 2 CPU cores [range: 0..=100000].
    #[arg(long, default_value_t = 20, value_parser = super::ranges::count(0, 100_000))]
    trials: usize,
    /// Output folder for the demo's JSON, plots and study.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    #[command(flatten)]
    device: super::common::DeviceArgs,
}

/// Study progress: one bar over the trials.
struct Ticks(indicatif::ProgressBar);
impl StudyObserver for Ticks {
    fn trial_finished(&mut self, _t: &Trial, _s: TrialState, _v: Option<f64>, best: Option<f64>) {
        self.0.inc(1);
        self.0.set_message(format!("best {:.4}", best.unwrap_or(f64::NAN)));
    }
}
impl CurveObserver for Ticks {}
impl StudyProgress for Ticks {}

/// The criteria the demo compares: plain LRP-ε, the LRP preset that did best in
/// benchmarks/cnn_criteria on this model, and three baselines.
const DEMO_CRITERIA: [&str; 5] = ["lrp-epsilon", "lrp-zplus", "gradient", "weight", "random"];

pub fn run(args: DemoArgs, out: &Output) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let outdir = relprune::util::OutputDir::new(&args.out)?;
    let (model, manifest) = args.device.load_zoo("fmnist-resnet18")?;
    out.say(format!("relprune demo — {}: {}", manifest.name, manifest.description));
    out.say(format!(
        "  {} parameters, trained by `relprune zoo train` ({} epochs)",
        manifest.parameters,
        manifest.training.history.len()
    ));
    // 2. Prune conv filters by attribution on a 3-class task (the paper's setting).
    let spec = TaskSpec {
        classes: Some(3),
        seed: 0,
        split: SplitName::Test,
        eval_samples: args.eval_samples,
        ..Default::default()
    };
    let mut session = Session::with_model(model, &args.data.source(), &spec, Some(ComponentKind::Filters.into()))?;
    test_accuracy(out, &session, &manifest)?;
    let (comps, task) = (&session.comps, &session.data()?.task);
    out.say(format!(
        "2. pruning {} conv filters of {} layers, ranked globally; task: classes {:?}, {} reference images, {} test images",
        comps.total,
        comps.layers.len(),
        task.classes.as_ref().map(|c| c.classes().to_vec()).unwrap_or_default(),
        task.refs.len(),
        task.eval.len()
    ));
    let opts = RunOptions { stop_at_chance: true, ..RunOptions::default() };
    let specs =
        DEMO_CRITERIA.iter().map(|n| CriterionSpec::from_name(n, None, spec.seed)).collect::<Result<Vec<_>, _>>()?;
    let mut bars = CurveBars::new(task.eval.len());
    let mut report = curves(&mut session, &specs, &opts, &mut bars)?;
    out.say(summary_table(&report.results));
    if args.trials > 0 {
        let optimised = optimise(out, &args, &mut session, &opts, &report)?;
        report.results.push(optimised);
        report.results.sort_by(|a, b| b.curve.summary.a_pr.total_cmp(&a.curve.summary.a_pr));
    }
    write_curves(outdir.path(), "demo-curves", &report)?;
    outdir.commit(&["demo-curves.json", "demo-curves.png"])?;
    out.say(
        "   A_PR = mean accuracy over rates 0..0.95; Top-PR = highest rate keeping ≥ 95 % of the unpruned accuracy",
    );
    out.say(format!("   wrote {}/demo-curves.json and demo-curves.png", args.out.display()));
    out.say(format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    out.emit(&report)
}

/// 1. The model as shipped, on the whole test split.
fn test_accuracy(out: &Output, session: &Session, manifest: &relprune::models::zoo::Manifest) -> anyhow::Result<()> {
    let test = &session.data()?.splits.test;
    let pb = super::common::progress(test.len() as u64, "test accuracy");
    let correct =
        count_correct(&session.model.graph, test, &EvalOptions::default(), &mut |n| pb.set_position(n as u64))?;
    pb.finish_and_clear();
    out.say(format!(
        "1. test accuracy: {:.2} % ({correct} / {}); manifest: {:.2} %",
        100.0 * correct as f64 / test.len() as f64,
        test.len(),
        100.0 * manifest.measured.test_accuracy
    ));
    Ok(())
}

/// 3. Optimise the LRP hyperparameters on the validation split, report on the test split.
fn optimise(
    out: &Output,
    args: &DemoArgs,
    session: &mut Session,
    opts: &RunOptions,
    report: &CurvesReport,
) -> anyhow::Result<relprune::experiment::CurveResult> {
    // The whole validation split (1,500 images of the 3 classes): on 500 the objective's noise
    // chose the winner. Successive halving over the coarse-first rate grid stops most trials
    // after 3 or 9 of the 20 rates, so 20 configurations fit about a minute (51 s on 2 cores).
    // One reference draw, not `optimize`'s default of 3: three would add about 30 s for the
    // trials that run to the end. The study is named after its definition, so a demo of a later
    // relprune (another default space) starts its own study while a rerun resumes.
    let cfg = StudyConfig {
        opts: opts.clone(),
        trials: args.trials,
        sampler_seed: Some(0),
        early_stopping: EarlyStopping::Halving,
        objective_draws: 1,
        noise_draws: 0,
        name: StudyName::Keyed("demo".into()),
        out: args.out.join("study"),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let mut ticks = Ticks(super::common::progress(args.trials as u64, "optimising"));
    let study = run_study(session, &cfg, &mut ticks);
    ticks.0.finish_and_clear();
    let study = study?;
    let seconds = started.elapsed().as_secs_f64();
    // The winner may be a seed the study started from (gradient, Taylor, an LRP preset).
    let winner = study.best.criterion.label();
    let best = study.best.criterion.clone().labelled("lrp-optimised");
    let eval = session.data()?.task.eval.len();
    let optimised = curves(session, &[best], opts, &mut CurveBars::new(eval))?.results.remove(0);
    let eps = report.results.iter().find(|r| r.criterion == "lrp-epsilon").map_or(f64::NAN, |r| r.curve.summary.a_pr);
    out.say(format!(
        "3. optimised attribution ({} trials of TPE with successive halving on the {} validation images, \
         {seconds:.0} s; winner {winner}, validation A_PR {:.4}): test A_PR {:.4} vs LRP-ε {eps:.4} ({:+.4})",
        study.trials.len(),
        study.validation_samples,
        study.best.validation_a_pr.unwrap_or(f64::NAN),
        optimised.curve.summary.a_pr,
        optimised.curve.summary.a_pr - eps
    ));
    out.say(format!("   rules: {}", study.rules_file.display()));
    Ok(optimised)
}
