//! Command-line parsing and dispatch. Each subcommand lives in its own file and only calls
//! the library.

mod common;
mod components;
mod curve;
mod demo;
mod info;
mod optimize;
mod perplexity;
mod prune;
mod ranges;
mod run;
mod scores;
mod zoo;

use clap::{Parser, Subcommand};

/// Prune neural networks by attribution (LRP) and optimise the attribution method for pruning.
#[derive(Parser)]
#[command(name = "relprune", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Threads for libtorch's kernels (default: all cores) [range: 1..=256].
    #[arg(long, global = true, env = "RELPRUNE_THREADS", value_parser = ranges::count(1, ranges::MAX_THREADS))]
    threads: Option<usize>,
    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model's layers, parameter count and MACs.
    Info(info::InfoArgs),
    /// List a model's prunable components per layer and depth group.
    Components(components::ComponentsArgs),
    /// A criterion's per-unit scores, per layer (what `prune` ranks by).
    Scores(scores::ScoresArgs),
    /// Prune by one criterion at a grid of rates and measure the accuracy curve.
    Curve(curve::CurveArgs),
    /// Compare criteria on the same references and evaluation samples.
    Compare(curve::CompareArgs),
    /// Remove components physically: a smaller, faster model, saved and exported to ONNX.
    Prune(prune::PruneArgs),
    /// Run a model on inputs given as .npy arrays: print or save its outputs.
    Run(run::RunArgs),
    /// A decoder language model's perplexity and next-token accuracy on text.
    Perplexity(perplexity::PerplexityArgs),
    /// Optimise the LRP hyperparameters for pruning (Bayesian search, resumable, distributed).
    Optimize(optimize::OptimizeArgs),
    /// Inspect stored optimisation studies.
    Study(optimize::StudyArgs),
    /// Print the default search space (YAML) to start an edited one from.
    Space(optimize::SpaceArgs),
    /// The bundled demonstration on Fashion-MNIST.
    Demo(demo::DemoArgs),
    /// The model zoo: list, train and evaluate bundled models.
    Zoo(zoo::ZooArgs),
}

/// Parses the command line and runs the chosen subcommand.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    relprune::runtime::set_threads(threads);
    let out = common::Output { json: cli.json };
    match cli.command {
        Command::Info(a) => info::run(a, &out),
        Command::Components(a) => components::run(a, &out),
        Command::Scores(a) => scores::run(a, &out),
        Command::Curve(a) => curve::run_curve(a, &out),
        Command::Compare(a) => curve::run_compare(a, &out),
        Command::Prune(a) => prune::run(a, &out),
        Command::Run(a) => run::run(a, &out),
        Command::Perplexity(a) => perplexity::run(a, &out),
        Command::Optimize(a) => optimize::run_optimize(a, &out),
        Command::Study(a) => optimize::run_study_command(a, &out),
        Command::Space(a) => optimize::run_space(a, &out),
        Command::Demo(a) => demo::run(a, &out),
        Command::Zoo(a) => zoo::run(a, &out),
    }
}
