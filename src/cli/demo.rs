//! `relprune demo`: the bundled demonstration on the zoo's Fashion-MNIST ResNet-18.

use super::common::{run_with_progress, summary_table, DataArgs, Output};
use clap::Args;
use relprune::attribution::CriterionSpec;
use relprune::components::{ComponentKind, ComponentSet};
use relprune::data::SplitName;
use relprune::evaluate::{count_correct, EvalOptions};
use relprune::experiment::{RunOptions, Task, TaskSpec};
use relprune::optimize::objective::PruningObjective;
use relprune::optimize::{
    best_trial, connect, run_worker, Pruner, SamplerKind, SearchSpace, StudyDefinition, StudyObserver, StudyStore,
    SuccessiveHalving,
};
use relprune::report::{write_curves, CurvesReport, RunHeader};
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

struct Ticks(indicatif::ProgressBar);
impl StudyObserver for Ticks {
    fn trial_finished(
        &mut self,
        _t: &relprune::optimize::Trial,
        _s: relprune::optimize::TrialState,
        _v: Option<f64>,
        best: Option<f64>,
    ) {
        self.0.inc(1);
        self.0.set_message(format!("best {:.4}", best.unwrap_or(f64::NAN)));
    }
}

/// The criteria the demo compares: plain LRP-ε, the LRP preset that did best in
/// benchmarks/cnn_criteria on this model, and three baselines.
const DEMO_CRITERIA: [&str; 5] = ["lrp-epsilon", "lrp-zplus", "gradient", "weight", "random"];

pub fn run(args: DemoArgs, out: &Output) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let outdir = relprune::util::OutputDir::new(&args.out)?;
    let (mut model, manifest) = args.device.load_zoo("fmnist-resnet18")?;
    let splits = args.data.load_for(&model)?;
    out.say(format!("relprune demo — {}: {}", manifest.name, manifest.description));
    out.say(format!(
        "  {} parameters, trained by `relprune zoo train` ({} epochs)",
        manifest.parameters,
        manifest.training.history.len()
    ));

    // 1. The model as shipped.
    let pb = super::common::progress(splits.test.len() as u64, "test accuracy");
    let correct =
        count_correct(&model.graph, &splits.test, &EvalOptions::default(), &mut |n| pb.set_position(n as u64))?;
    pb.finish_and_clear();
    let acc = correct as f64 / splits.test.len() as f64;
    out.say(format!(
        "1. test accuracy: {:.2} % ({correct} / {}); manifest: {:.2} %",
        100.0 * acc,
        splits.test.len(),
        100.0 * manifest.measured.test_accuracy
    ));

    // 2. Prune conv filters by attribution on a 3-class task (the paper's setting).
    let spec = TaskSpec {
        classes: Some(3),
        seed: 0,
        refs_per_class: 10,
        split: SplitName::Test,
        eval_samples: args.eval_samples,
    };
    let task = Task::prepare(&splits, 10, &spec)?;
    let comps = ComponentSet::find(&model.graph, ComponentKind::Filters)?;
    out.say(format!(
        "2. pruning {} conv filters of {} layers, ranked globally; task: classes {:?}, {} reference images, {} test images",
        comps.total,
        comps.layers.len(),
        task.classes.as_ref().map(|c| c.classes().to_vec()).unwrap_or_default(),
        task.refs.len(),
        task.eval.len()
    ));
    let opts = RunOptions { stop_at_chance: true, ..RunOptions::default() };
    let mut results = Vec::new();
    for name in DEMO_CRITERIA {
        let c = CriterionSpec::from_name(name, None, spec.seed)?;
        results.push(run_with_progress(&mut model.graph, &comps, &task, &c, &opts)?);
    }
    out.say(summary_table(&results));

    // 3. Optimise the LRP hyperparameters on the validation split, report on the test split.
    if args.trials > 0 {
        let space = SearchSpace::default_for(false, false);
        // The whole validation split (1,500 images of the 3 classes): on 500 the objective's
        // noise chose the winner. Successive halving over the coarse-first rate grid stops most
        // trials after 3 or 9 of the 20 rates, so 20 configurations fit about a minute (51 s on
        // 2 cores). One reference draw, not `optimize`'s default of 3: three would add about
        // 30 s for the trials that run to the end.
        let started_opt = std::time::Instant::now();
        let val_spec = TaskSpec { split: SplitName::Val, eval_samples: 0, ..spec.clone() };
        let def = StudyDefinition {
            space: space.clone(),
            objective: serde_json::json!({
                "demo": manifest.name, "task": val_spec, "component": "filters",
                "pruner": "halving", "rate_order": relprune::evaluate::RateVisit::CoarseFirst,
            }),
        };
        // The study is named after its definition: a demo run by a later relprune, whose default
        // space or objective changed, starts a study of its own beside the old one instead of
        // being refused, while a rerun of the same version resumes its own.
        let key = relprune::util::derive_seed(0, &serde_json::to_string(&(&def.space, &def.objective))?);
        let name = format!("demo-{:08x}", key as u32);
        let mut store =
            StudyStore::open(connect(&format!("sqlite:{}", args.out.join("study.sqlite").display()))?, &name, &def)?;
        let pb = super::common::progress(args.trials as u64, "optimising");
        let val_images = {
            let mut objective =
                PruningObjective::new(&mut model.graph, comps.clone(), &splits, 10, val_spec, opts.clone())?;
            let sampler = SamplerKind::Tpe.build(0);
            run_worker(
                &mut store,
                &space,
                sampler.as_ref(),
                Some(Pruner::Halving(SuccessiveHalving::default())),
                &mut objective,
                args.trials,
                Some(&space.default_params()),
                &mut Ticks(pb.clone()),
            )?;
            objective.eval_samples()
        };
        pb.finish_and_clear();
        let opt_seconds = started_opt.elapsed().as_secs_f64();
        let trials = store.trials()?;
        let best = best_trial(&trials).ok_or_else(|| anyhow::anyhow!("no optimisation trial completed"))?;
        let (best_spec, _) = SearchSpace::criterion(&best.params)?;
        let best_spec = match best_spec {
            CriterionSpec::Lrp { lrp, absolute, .. } => {
                CriterionSpec::Lrp { label: Some("lrp-optimised".into()), lrp, absolute }
            }
            s => s,
        };
        best_spec.to_file(&outdir.path().join("best-rules.yaml"))?;
        let optimised = run_with_progress(&mut model.graph, &comps, &task, &best_spec, &opts)?;
        let eps =
            results.iter().find(|r| r.criterion == "lrp-epsilon").map(|r| r.curve.summary.a_pr).unwrap_or(f64::NAN);
        out.say(format!(
            "3. optimised LRP ({} trials of TPE with successive halving on the {} validation images, {:.0} s; \
             best validation A_PR {:.4}): test A_PR {:.4} vs LRP-ε {:.4} ({:+.4})",
            trials.len(),
            val_images,
            opt_seconds,
            best.value.unwrap_or(f64::NAN),
            optimised.curve.summary.a_pr,
            eps,
            optimised.curve.summary.a_pr - eps
        ));
        out.say(format!("   rules: {}", args.out.join("best-rules.yaml").display()));
        results.push(optimised);
    }
    results.sort_by(|a, b| b.curve.summary.a_pr.total_cmp(&a.curve.summary.a_pr));
    let report = CurvesReport { header: RunHeader::new(&model, &task), results };
    write_curves(outdir.path(), "demo-curves", &report)?;
    outdir.commit(&["best-rules.yaml", "demo-curves.json", "demo-curves.png"])?;
    out.say(
        "   A_PR = mean accuracy over rates 0..0.95; Top-PR = highest rate keeping ≥ 95 % of the unpruned accuracy",
    );
    out.say(format!("   wrote {}/demo-curves.json and demo-curves.png", args.out.display()));
    out.say(format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    out.emit(&report)
}
