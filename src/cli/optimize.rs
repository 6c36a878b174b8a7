//! `relprune optimize`, `relprune study show` and `relprune space`: Bayesian optimisation of
//! the attribution method for pruning, its stored studies and search spaces.

use super::common::{
    marks_table, progress, run_with_progress, setup, summary_table, AxisArgs, DataArgs, ModelArgs, Output, Setup,
    TaskArgs,
};
use super::curve::parse_criterion;
use clap::{Args, Subcommand};
use relprune::attribution::spec::DEFAULT_COMPARISON;
use relprune::attribution::CriterionSpec;
use relprune::components::ComponentKind;
use relprune::experiment::Task;
use relprune::optimize::objective::PruningObjective;
use relprune::optimize::storage::redact;
use relprune::optimize::study_report;
use relprune::optimize::{
    best_trial, connect, connect_existing, importance, run_worker, MedianPruner, Pruner, SamplerKind, SearchSpace,
    StudyDefinition, StudyObserver, StudyStore, SuccessiveHalving, Trial, TrialState,
};
use relprune::report::{bar_plot, write_curves, CurvesReport, RunHeader};
use std::path::PathBuf;

#[derive(Args)]
pub struct OptimizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    task: TaskArgs,
    #[command(flatten)]
    axis: AxisArgs,
    /// Search space (YAML); default: rules per depth group with ε/γ, |R| vs signed, and the softmax
    /// treatment for transformers (`relprune space` prints it).
    #[arg(long)]
    space: Option<PathBuf>,
    /// Trial budget of the study (all workers together) [range: 1..=100000].
    #[arg(long, default_value_t = 30, value_parser = super::ranges::count(1, 100_000))]
    trials: usize,
    #[arg(long, value_enum, default_value = "tpe")]
    sampler: SamplerKind,
    /// Seed of the sampler (default: --seed).
    #[arg(long)]
    sampler_seed: Option<u64>,
    /// Do not stop hopeless trials early (same as `--pruner none`).
    #[arg(long, conflicts_with = "pruner")]
    no_pruner: bool,
    /// How trials are stopped on their partial curve: `median` (below the median of completed
    /// trials at the same step), `halving` (successive halving over the rate grid: rungs after
    /// 3, 9, 27, … rates keep the best third of the trials that reached them, so about 3× more
    /// configurations are tried at low fidelity in the same time), or `none`. Either judges a
    /// trial on its A_PR estimated from the rates measured so far, measured coarse first (both
    /// ends of the grid, then midpoints).
    #[arg(long, value_enum, default_value = "median")]
    pruner: PrunerKind,
    /// Validation samples the objective evaluates on (0, the default: the whole validation split;
    /// fewer make each trial faster and the objective noisier) [range: 0..=10^8].
    #[arg(long, default_value_t = 0, value_parser = super::ranges::count(0, super::ranges::MAX_COUNT))]
    val_samples: usize,
    /// Average the objective over K reference draws (the task's own and K − 1 fresh ones, same
    /// classes and count), so a composite is chosen for the method rather than for one draw.
    /// The pruner judges a trial on the first draw; a trial it lets finish costs K curves. The
    /// default is 3: with 1, the winner of fmnist-resnet18's study was worse than LRP-ε on the
    /// draws it had not seen (docs/benchmarks.md, "optimize") [range: 1..=100].
    #[arg(long, value_name = "K", default_value_t = 3, value_parser = super::ranges::count(1, 100))]
    objective_draws: usize,
    /// After the study, measure the objective's own noise: LRP-ε (trial 0) and the best trial on
    /// N reference draws the study did not optimise on (draws K … K+N−1), and the gain with its
    /// standard error, paired by draw (0: skip) [range: 0..=100].
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = super::ranges::count(0, 100))]
    noise_draws: usize,
    /// Study storage: sqlite:PATH (default: OUT/study.sqlite) or postgresql://user@host:port/db.
    #[arg(long)]
    storage: Option<String>,
    /// Study name (default: derived from model, component, classes and seed).
    #[arg(long)]
    study: Option<String>,
    /// Criteria the winner is compared with on the test split ("none" to skip the report).
    #[arg(long, value_delimiter = ',')]
    report: Option<Vec<String>>,
    /// Output folder: best-rules.yaml, history.png, importance.png, summary.json, test-compare.*.
    #[arg(long, default_value = "out/optimize")]
    out: PathBuf,
}

#[derive(Args)]
pub struct StudyArgs {
    #[command(subcommand)]
    command: StudyCommand,
}

#[derive(Subcommand)]
enum StudyCommand {
    /// List a study's trials.
    Show {
        /// sqlite:PATH or postgresql://…
        #[arg(long)]
        storage: String,
        #[arg(long)]
        study: String,
    },
    /// Write one trial's composite as a rules file (for `--rules FILE` or `prune`): a chosen
    /// trial, the best of the first N trials (what a smaller budget would have found), or the
    /// best of all.
    Rules {
        /// sqlite:PATH or postgresql://…
        #[arg(long)]
        storage: String,
        #[arg(long)]
        study: String,
        /// This trial's number (it must have completed).
        #[arg(long, conflicts_with = "first")]
        trial: Option<usize>,
        /// The best completed trial among trials 0 … N−1 [range: 1..=100000].
        #[arg(long, value_parser = super::ranges::count(1, 100_000))]
        first: Option<usize>,
        /// The rules file to write (.yaml, or .json).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct SpaceArgs {
    /// Print the default space for transformers (adds the softmax treatment).
    #[arg(long)]
    transformer: bool,
    /// Print the default space for models with multiplicative gates (squeeze-and-excitation:
    /// adds the gate rule).
    #[arg(long)]
    gated: bool,
}

struct Bar {
    pb: indicatif::ProgressBar,
}

impl StudyObserver for Bar {
    fn trial_started(&mut self, t: &Trial) {
        self.pb.set_message(format!("trial {}", t.number));
    }
    fn trial_finished(&mut self, t: &Trial, state: TrialState, value: Option<f64>, best: Option<f64>) {
        self.pb.inc(1);
        self.pb.set_message(format!("best A_PR {:.4}", best.unwrap_or(f64::NAN)));
        self.pb.println(format!(
            "trial {:>3} {:<9} {}",
            t.number,
            state.name(),
            value.map(|v| format!("{v:.4}")).unwrap_or_default()
        ));
    }
}

/// `--pruner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PrunerKind {
    Median,
    Halving,
    None,
}

fn study_definition(
    args: &OptimizeArgs,
    model: &relprune::models::LoadedModel,
    space: &SearchSpace,
    kind: ComponentKind,
) -> StudyDefinition {
    let mut task = args.task.task_spec();
    task.split = relprune::data::SplitName::Val;
    task.eval_samples = args.val_samples;
    let mut objective = serde_json::json!({
        "model": model.name, "origin": model.origin, "component": kind, "task": task,
        "rates": args.task.rates, "objective": "A_PR on the validation split",
        // Intermediate values are A_PR estimates from coarse-first rates; studies from before
        // (ascending running means) cannot be mixed with them, so the order is part of the key.
        "rate_order": relprune::evaluate::RateVisit::CoarseFirst,
    });
    // What else changes the objective's value is part of it, so a study cannot be resumed under
    // another axis, order or normalisation. Recorded only when not the default, so studies
    // written before these options existed still resume.
    let a = &args.axis;
    for (key, value, default) in [
        ("reference_draws", serde_json::json!(args.objective_draws), args.objective_draws == 1),
        ("axis", serde_json::json!(a.axis), a.axis == relprune::evaluate::CurveAxis::Rate),
        ("selection", serde_json::json!(a.selection), a.selection == relprune::budget::Selection::Relevance),
        ("normalize", serde_json::json!(a.normalize), a.normalize == relprune::ranking::LayerNormalization::None),
    ] {
        if !default {
            objective[key] = value;
        }
    }
    StudyDefinition { space: space.clone(), objective }
}

pub fn run_optimize(args: OptimizeArgs, out: &Output) -> anyhow::Result<()> {
    // Everything a run needs at its end is checked before its first trial: the output folder,
    // the storage, the search space and the report's criteria.
    let outdir = relprune::util::OutputDir::new(&args.out)?;
    let opts = args.axis.apply(args.task.run_options()?)?;
    let names: Vec<String> =
        args.report.clone().unwrap_or_else(|| DEFAULT_COMPARISON.iter().map(|s| s.to_string()).collect());
    let report_specs: Vec<CriterionSpec> = if names.first().map(String::as_str) == Some("none") {
        Vec::new()
    } else {
        names.iter().map(|n| parse_criterion(n, args.task.seed)).collect::<anyhow::Result<_>>()?
    };
    let user_space = match &args.space {
        Some(p) => Some(SearchSpace::from_yaml(
            &std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?,
        )?),
        None => None,
    };
    let storage = args.storage.clone().unwrap_or_else(|| format!("sqlite:{}", args.out.join("study.sqlite").display()));
    relprune::optimize::storage::check_url(&storage)?;
    let Setup { mut model, splits, comps, classes, .. } = setup(&args.model, &args.data, &args.task)?;
    let kind = comps.kind;
    let transformer = model.graph.has_attention();
    let gated = model.graph.has_gates();
    let space = user_space.unwrap_or_else(|| SearchSpace::default_for(transformer, gated));
    let study_name = args.study.clone().unwrap_or_else(|| {
        format!(
            "{}-{}-c{}-s{}",
            model.name,
            kind,
            args.task.classes.map(|c| c.to_string()).unwrap_or("all".into()),
            args.task.seed
        )
    });
    let def = study_definition(&args, &model, &space, kind);
    let mut store = StudyStore::open(connect(&storage)?, &study_name, &def)?;
    let sampler = args.sampler.build(args.sampler_seed.unwrap_or(args.task.seed));
    let before = store.trials()?;
    out.say(format!(
        "study `{study_name}` in {}: {} of {} trials done; sampler {}, {} {} of {}; objective A_PR on {} validation samples{}",
        redact(&storage),
        before.iter().filter(|t| t.state != TrialState::Interrupted && t.state != TrialState::Running).count(),
        args.trials,
        sampler.name(),
        comps.total,
        kind,
        model.name,
        if args.val_samples == 0 { "all".to_string() } else { args.val_samples.to_string() },
        if args.objective_draws > 1 { format!(", mean of {} reference draws", args.objective_draws) } else { String::new() }
    ));
    let first = space.default_params();
    {
        let mut task = args.task.task_spec();
        task.eval_samples = args.val_samples;
        let mut objective =
            PruningObjective::new(&mut model.graph, comps.clone(), &splits, classes, task, opts.clone())?
                .with_draws((0..args.objective_draws).collect())?;
        let pb = progress(args.trials as u64, "optimising");
        pb.set_position(
            before.iter().filter(|t| !matches!(t.state, TrialState::Interrupted | TrialState::Running)).count() as u64,
        );
        let pruner = match (args.no_pruner, args.pruner) {
            (true, _) | (_, PrunerKind::None) => None,
            (_, PrunerKind::Median) => Some(Pruner::Median(MedianPruner::default())),
            (_, PrunerKind::Halving) => Some(Pruner::Halving(SuccessiveHalving::default())),
        };
        let summary = run_worker(
            &mut store,
            &space,
            sampler.as_ref(),
            pruner,
            &mut objective,
            args.trials,
            Some(&first),
            &mut Bar { pb: pb.clone() },
        )?;
        pb.finish_and_clear();
        out.say(format!(
            "this worker: {} complete, {} pruned, {} failed",
            summary.completed, summary.pruned, summary.failed
        ));
    }
    let trials = store.trials()?;
    let best = best_trial(&trials)
        .ok_or_else(|| anyhow::anyhow!("no trial of study `{study_name}` completed; see `relprune study show`"))?;
    let (best_spec, best_refs) = SearchSpace::criterion(&best.params)?;
    let rules_path = outdir.final_path("best-rules.yaml");
    best_spec.to_file(&outdir.path().join("best-rules.yaml"))?;
    out.say(format!(
        "best: trial {} with validation A_PR {:.4}; rules written to {}",
        best.number,
        best.value.unwrap_or(0.0),
        rules_path.display()
    ));
    let noise = if args.noise_draws > 0 {
        let mut task = args.task.task_spec();
        task.eval_samples = args.val_samples;
        let mut objective =
            PruningObjective::new(&mut model.graph, comps.clone(), &splits, classes, task, opts.clone())?;
        let n = study_report::objective_noise(
            &mut objective,
            &first,
            &best.params,
            args.objective_draws,
            args.noise_draws,
        )?;
        out.say(n.describe());
        Some(n)
    } else {
        None
    };
    study_report::write_history_plot(&outdir.path().join("history.png"), &study_name, &trials)?;
    study_report::write_gain_plot(&outdir.path().join("gain.png"), &study_name, &trials, noise.as_ref())?;
    study_report::write_parallel_plot(&outdir.path().join("parallel.png"), &study_name, &space, &trials)?;
    let imp = importance::importances(&space, &trials);
    bar_plot(&outdir.path().join("importance.png"), &format!("{study_name}: parameter importance (η²)"), &imp)?;

    // The result is the winner's curve on the test split next to LRP-ε and the baselines.
    let mut test_results = Vec::new();
    let mut test_header = None;
    if !report_specs.is_empty() {
        let mut task_spec = args.task.task_spec();
        task_spec.split = relprune::data::SplitName::Test;
        if let Some(r) = best_refs {
            task_spec.refs_per_class = r;
        }
        let task = Task::prepare(&splits, classes, &task_spec)?;
        let mut specs = vec![match best_spec.clone() {
            CriterionSpec::Lrp { lrp, absolute, .. } => {
                CriterionSpec::Lrp { label: Some("lrp-optimised".into()), lrp, absolute }
            }
            s => s,
        }];
        specs.extend(report_specs);
        for s in &specs {
            test_results.push(run_with_progress(&mut model.graph, &comps, &task, s, &opts)?);
        }
        test_results.sort_by(|a, b| b.curve.summary.a_pr.total_cmp(&a.curve.summary.a_pr));
        out.say("test split (the reported result):");
        out.say(summary_table(&test_results));
        let marks = marks_table(&test_results);
        if !marks.is_empty() {
            out.say(marks);
        }
        let report = CurvesReport { header: RunHeader::new(&model, &task), results: test_results.clone() };
        write_curves(outdir.path(), "test-compare", &report)?;
        test_header = Some(report.header);
    }
    let summary = serde_json::json!({
        "study": study_name, "storage": redact(&storage), "device": relprune::device::name(model.graph.device()),
        "sampler": args.sampler, "budget": args.trials,
        "definition": def, "best": { "trial": best.number, "validation_a_pr": best.value, "params": best.params, "criterion": best_spec },
        "importance": imp, "noise": noise, "trials": trials, "test": { "header": test_header, "results": test_results },
    });
    relprune::util::write_json_atomic(&outdir.path().join("summary.json"), &summary)?;
    outdir.commit(&[
        "best-rules.yaml",
        "history.png",
        "gain.png",
        "parallel.png",
        "importance.png",
        "summary.json",
        "test-compare.json",
        "test-compare.png",
    ])?;
    out.say(format!(
        "wrote {}/{{best-rules.yaml, history.png, gain.png, parallel.png, importance.png, summary.json, test-compare.*}}",
        args.out.display()
    ));
    out.emit(&summary)
}

pub fn run_study(args: StudyArgs, out: &Output) -> anyhow::Result<()> {
    match args.command {
        StudyCommand::Rules { storage, study, trial, first, out: path } => {
            let (mut store, _) = StudyStore::attach(connect_existing(&storage)?, &study)
                .map_err(|e| anyhow::anyhow!("{}: {e}", redact(&storage)))?;
            let mut trials = store.trials()?;
            let chosen = match (trial, first) {
                (Some(n), _) => {
                    let t = trials
                        .iter()
                        .find(|t| t.number == n as i64)
                        .ok_or_else(|| anyhow::anyhow!("study `{study}` has no trial {n} ({} trials)", trials.len()))?;
                    if t.state != TrialState::Complete {
                        anyhow::bail!(
                            "trial {n} of study `{study}` is {}, not complete: its composite was not fully measured",
                            t.state.name()
                        );
                    }
                    t
                }
                (None, limit) => {
                    if let Some(n) = limit {
                        trials.retain(|t| t.number < n as i64);
                    }
                    best_trial(&trials).ok_or_else(|| {
                        anyhow::anyhow!(
                            "no trial of study `{study}` completed{}",
                            match limit {
                                Some(n) => format!(" among its first {n}"),
                                None => String::new(),
                            }
                        )
                    })?
                }
            };
            let (spec, refs) = SearchSpace::criterion(&chosen.params)?;
            spec.to_file(&path)?;
            out.say(format!(
                "trial {} (validation A_PR {:.4}) written to {}{}",
                chosen.number,
                chosen.value.unwrap_or(f64::NAN),
                path.display(),
                refs.map(|r| format!("; it was measured with --refs-per-class {r}")).unwrap_or_default()
            ));
            out.emit(&serde_json::json!({
                "study": study, "trial": chosen.number, "validation_a_pr": chosen.value,
                "refs_per_class": refs, "rules": path,
            }))
        }
        StudyCommand::Show { storage, study } => {
            let (mut store, def) = StudyStore::attach(connect_existing(&storage)?, &study)
                .map_err(|e| anyhow::anyhow!("{}: {e}", redact(&storage)))?;
            let trials = store.trials()?;
            out.say(format!("study `{study}` ({} trials); objective {}", trials.len(), def.objective));
            out.say(format!(
                "{:>5} {:<11} {:>8} {:<22} {}",
                "trial", "state", "value", "worker", "parameters / message"
            ));
            for t in &trials {
                let params: Vec<String> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.say(format!(
                    "{:>5} {:<11} {:>8} {:<22} {}",
                    t.number,
                    t.state.name(),
                    t.value.map(|v| format!("{v:.4}")).unwrap_or_default(),
                    t.worker,
                    t.message.clone().unwrap_or_else(|| params.join(" "))
                ));
            }
            if let Some(b) = best_trial(&trials) {
                out.say(format!("best: trial {} ({:.4})", b.number, b.value.unwrap_or(0.0)));
            }
            out.emit(&serde_json::json!({ "study": study, "definition": def, "trials": trials }))
        }
    }
}

pub fn run_space(args: SpaceArgs, _out: &Output) -> anyhow::Result<()> {
    print!("{}", SearchSpace::default_for(args.transformer, args.gated).to_yaml());
    Ok(())
}
