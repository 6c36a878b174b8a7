//! `relprune optimize`, `relprune study show` and `relprune space`: Bayesian optimisation of
//! the attribution method for pruning, its stored studies and search spaces.

use super::common::{open_session, print_curves, progress, AxisArgs, CurveBars, DataArgs, ModelArgs, Output, TaskArgs};
use clap::{Args, Subcommand};
use relprune::attribution::spec::DEFAULT_COMPARISON;
use relprune::attribution::CriterionSpec;
use relprune::optimize::{best_trial, ModelTraits, SamplerKind, SearchSpace, StudyObserver, Trial, TrialState};
use relprune::workflow::curves::CurveObserver;
use relprune::workflow::study::{
    run_study, stored_study, write_trial_rules, EarlyStopping, StudyConfig, StudyName, StudyProgress, TrialChoice,
};
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
    #[arg(long, default_value = "tpe")]
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
    #[arg(long, default_value = "median")]
    pruner: EarlyStopping,
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
    /// Print the default space for language models (adds which next token the relevance
    /// explains, and the initial relevance's value).
    #[arg(long)]
    language_model: bool,
}

/// Study progress: a bar over the trials, a line per trial, the header and the noise.
struct Bar {
    pb: indicatif::ProgressBar,
    trials: usize,
    curves: CurveBars,
    out: bool,
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

impl CurveObserver for Bar {
    fn criterion_started(&mut self, spec: &CriterionSpec, rates: usize) {
        self.pb.finish_and_clear();
        self.curves.criterion_started(spec, rates);
    }
    fn stage(&mut self, spec: &CriterionSpec, stage: &relprune::experiment::Stage) {
        self.curves.stage(spec, stage);
    }
    fn criterion_done(&mut self, r: &relprune::experiment::CurveResult) {
        self.curves.criterion_done(r);
    }
}

impl StudyProgress for Bar {
    fn opened(&mut self, name: &str, storage: &str, done: usize, sampler: &str) {
        if self.out {
            println!("study `{name}` in {storage}: {done} of {} trials done; sampler {sampler}", self.trials);
        }
        self.pb = progress(self.trials as u64, "optimising");
        self.pb.set_position(done as u64);
    }
    fn noise(&mut self, n: &relprune::optimize::study_report::ObjectiveNoise) {
        self.pb.finish_and_clear();
        if self.out {
            println!("{}", n.describe());
        }
    }
}

impl OptimizeArgs {
    /// The library's study configuration (the report's criteria and the space checked first).
    fn config(&self) -> anyhow::Result<StudyConfig> {
        let names: Vec<String> =
            self.report.clone().unwrap_or_else(|| DEFAULT_COMPARISON.iter().map(|s| s.to_string()).collect());
        let report = if names.first().map(String::as_str) == Some("none") {
            Vec::new()
        } else {
            names.iter().map(|n| CriterionSpec::parse(n, None, self.task.seed)).collect::<relprune::Result<_>>()?
        };
        let space = match &self.space {
            Some(p) => Some(SearchSpace::from_yaml(&relprune::util::read_text(p)?)?),
            None => None,
        };
        Ok(StudyConfig {
            opts: self.axis.apply(self.task.run_options()?)?,
            space,
            normalize: self.axis.normalize,
            // `optimize` measures in the order its axis options give (`--selection`).
            search_selection: false,
            trials: self.trials,
            sampler: self.sampler,
            sampler_seed: self.sampler_seed,
            early_stopping: if self.no_pruner { EarlyStopping::None } else { self.pruner },
            val_samples: self.val_samples,
            objective_draws: self.objective_draws,
            noise_draws: self.noise_draws,
            storage: self.storage.clone(),
            name: self.study.clone().map_or(StudyName::Derived, StudyName::Given),
            report,
            out: self.out.clone(),
        })
    }
}

pub fn run_optimize(args: OptimizeArgs, out: &Output) -> anyhow::Result<()> {
    let cfg = args.config()?;
    let mut session = open_session(&args.model, &args.data, &args.task)?;
    let eval = session.data()?.task.eval.len();
    let mut bar =
        Bar { pb: indicatif::ProgressBar::hidden(), trials: args.trials, curves: CurveBars::new(eval), out: !out.json };
    let r = run_study(&mut session, &cfg, &mut bar);
    bar.pb.finish_and_clear();
    let r = r?;
    let w = &r.worker;
    out.say(format!("this worker: {} complete, {} pruned, {} failed", w.completed, w.pruned, w.failed));
    out.say(format!(
        "best: trial {} with validation A_PR {:.4} on {} samples; rules written to {}",
        r.best.trial,
        r.best.validation_a_pr.unwrap_or(0.0),
        r.validation_samples,
        r.rules_file.display()
    ));
    if !r.test.results.is_empty() {
        out.say("test split (the reported result):");
        print_curves(out, &r.test.results);
    }
    out.say(format!(
        "wrote {}/{{best-rules.yaml, history.png, gain.png, parallel.png, importance.png, summary.json, test-compare.*}}",
        args.out.display()
    ));
    out.emit(&r)
}

pub fn run_study_command(args: StudyArgs, out: &Output) -> anyhow::Result<()> {
    match args.command {
        StudyCommand::Rules { storage, study, trial, first, out: path } => {
            let choice = match (trial, first) {
                (Some(n), _) => TrialChoice::Number(n),
                (None, Some(n)) => TrialChoice::BestOfFirst(n),
                (None, None) => TrialChoice::Best,
            };
            let r = write_trial_rules(&storage, &study, choice, &path)?;
            out.say(format!(
                "trial {} (validation A_PR {:.4}) written to {}{}",
                r.trial,
                r.validation_a_pr.unwrap_or(f64::NAN),
                r.rules.display(),
                r.refs_per_class.map(|r| format!("; it was measured with --refs-per-class {r}")).unwrap_or_default()
            ));
            out.emit(&r)
        }
        StudyCommand::Show { storage, study } => {
            let s = stored_study(&storage, &study)?;
            out.say(format!("study `{study}` ({} trials); objective {}", s.trials.len(), s.definition.objective));
            out.say(format!(
                "{:>5} {:<11} {:>8} {:<22} {}",
                "trial", "state", "value", "worker", "parameters / message"
            ));
            for t in &s.trials {
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
            if let Some(b) = best_trial(&s.trials) {
                out.say(format!("best: trial {} ({:.4})", b.number, b.value.unwrap_or(0.0)));
            }
            out.emit(&s)
        }
    }
}

pub fn run_space(args: SpaceArgs, _out: &Output) -> anyhow::Result<()> {
    let model = ModelTraits { attention: args.transformer, gates: args.gated, language_model: args.language_model };
    print!("{}", SearchSpace::default_for(model).to_yaml());
    Ok(())
}
