//! Options and output helpers shared by subcommands.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use relprune::models::LoadedModel;
use std::path::PathBuf;

/// Which model to use.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A zoo name, an architecture (`resnet18`, `vgg16_bn`, `cifar_resnet18:width=16,in=1,size=28`, …),
    /// a folder written by `relprune prune`, or an ONNX file (`model.onnx`, e.g. from
    /// `torch.onnx.export`; see docs/import-onnx.md).
    #[arg(long, short)]
    pub model: String,
    /// Weights for an architecture: a safetensors file with torchvision / Hugging Face names.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Seed of the random initialisation when no weights are given.
    #[arg(long, default_value_t = 0)]
    pub init_seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl ModelArgs {
    /// The library's model source.
    pub fn source(&self) -> relprune::workflow::ModelSource {
        relprune::workflow::ModelSource {
            model: self.model.clone(),
            weights: self.weights.clone(),
            init_seed: self.init_seed,
            device: self.device.device,
        }
    }

    /// The model, on the device of `--device`.
    pub fn load(&self) -> anyhow::Result<LoadedModel> {
        Ok(self.source().load()?)
    }
}

/// Where a command computes.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Device the model runs on: cpu, cuda, cuda:N, or auto (CUDA device 0 when libtorch sees a
    /// GPU, else the CPU). Data are decoded on the CPU and streamed to it; saved models and ONNX
    /// files are written from host copies.
    #[arg(long, default_value = "auto", env = "RELPRUNE_DEVICE")]
    pub device: relprune::device::DeviceChoice,
}

impl DeviceArgs {
    pub fn resolve(&self) -> anyhow::Result<tch::Device> {
        Ok(self.device.resolve()?)
    }

    /// A zoo model on this device (resolved first, as [`ModelArgs::load`] does).
    pub fn load_zoo(&self, name: &str) -> anyhow::Result<(LoadedModel, relprune::models::zoo::Manifest)> {
        let device = self.resolve()?;
        let (mut model, manifest) = relprune::models::zoo::load(name)?;
        model.graph.to_device(device);
        Ok((model, manifest))
    }
}

/// Which data to use.
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// `auto` (a zoo model's own data, else Fashion-MNIST), `fashion-mnist`, `spam[:TOKENIZER.json]`
    /// (SpamAssassin, tokenised by all-MiniLM-L6-v2's tokenizer unless given), `imagefolder:PATH`
    /// (PATH/train, PATH/val[, PATH/test], one sub-folder per class; see --preprocess),
    /// `tensors:DIR` (DIR/train, DIR/val[, DIR/test] as .npz or .safetensors with arrays x (N, C,
    /// H, W) float and y (N,) integer labels; optional DIR/classes.txt), or `none` (`prune` with
    /// the weight or random criterion only: no accuracy).
    #[arg(long, default_value = "auto")]
    pub data: String,
    /// Image folders: the preprocessing, `imagenet` (the default: resize=256,crop=224,
    /// mean=0.485:0.456:0.406,std=0.229:0.224:0.225,channels=rgb), `key=value,...` with keys
    /// resize (shorter side in pixels, or none), crop (S or H:W), mean and std (one value per
    /// channel, `:`-separated), channels (rgb or grey); keys not given keep imagenet's; or the
    /// path of a YAML file with the same keys.
    #[arg(long, value_name = "SPEC")]
    pub preprocess: Option<String>,
    /// Folder of the Fashion-MNIST IDX files (default: $RELPRUNE_FMNIST_DIR or /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    pub fmnist_dir: Option<PathBuf>,
    /// Image folders: accept class folders without images. The class keeps its index (labels
    /// still match the model's outputs) but gets no reference samples. Without this flag an
    /// empty class folder is an error.
    #[arg(long)]
    pub skip_empty_classes: bool,
    /// Tokens per sequence: of a language model's text (default 1024), and of the samples that
    /// measure MACs and latency of token models (default 128) [range: 1..=the model's positions].
    #[arg(long, value_parser = super::ranges::count(1, 1 << 20))]
    pub seq_len: Option<usize>,
}

impl DataArgs {
    /// The library's data source.
    pub fn source(&self) -> relprune::workflow::DataSource {
        relprune::workflow::DataSource {
            spec: self.data.clone(),
            preprocess: self.preprocess.clone(),
            fmnist_dir: self.fmnist_dir.clone(),
            skip_empty_classes: self.skip_empty_classes,
            seq_len: self.seq_len,
        }
    }
}

/// Where results go: human tables on stdout, or JSON.
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints a line for humans (suppressed under `--json`).
    pub fn say(&self, text: impl AsRef<str>) {
        if !self.json {
            println!("{}", text.as_ref());
        }
    }
    /// Prints the machine-readable result (only under `--json`).
    pub fn emit<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        }
        Ok(())
    }
}

/// A progress bar on stderr (invisible when stderr is not a terminal).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:32}] {pos}/{len} {elapsed_precise} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Formats a count with thousands separators.
pub fn thousands(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The task and curve settings shared by `curve`, `compare` and `optimize`.
#[derive(Args, Clone, Debug)]
pub struct TaskArgs {
    /// Which components to prune: filters, neurons or heads, or several ranked together joined
    /// by `+` (neurons+heads) (default: filters for CNNs, neurons for transformers and for
    /// all-MLP models whose filters cannot be removed).
    #[arg(long)]
    pub component: Option<relprune::prune::components::Components>,
    /// Restrict the task to K classes drawn by --seed (the paper's 3-class tasks) [range: 2..=the
    /// model's classes].
    #[arg(long, value_name = "K", value_parser = super::ranges::count(2, super::ranges::MAX_COUNT))]
    pub classes: Option<usize>,
    /// Seed of the class draw, the reference draw and the random criterion.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Reference samples per class (from the train split) [range: 1..=100000].
    #[arg(long, default_value_t = 10, value_parser = super::ranges::count(1, 100_000))]
    pub refs_per_class: usize,
    /// Split to measure accuracy on.
    #[arg(long, default_value = "test")]
    pub split: relprune::data::SplitName,
    /// Evaluate on the first N samples of the (class-filtered) split; 0 = all [range: 0..=10^8].
    #[arg(long, default_value_t = 2000, value_parser = super::ranges::count(0, super::ranges::MAX_COUNT))]
    pub eval_samples: usize,
    /// Pruning rates: start:stop:step (inclusive) or a list.
    #[arg(long, default_value = "0:0.95:0.05")]
    pub rates: String,
    /// Stop once two consecutive rates are at chance and fill the rest with chance.
    #[arg(long)]
    pub stop_at_chance: bool,
    /// Prune the most relevant components first (a sanity check) instead of the least.
    #[arg(long)]
    pub most_relevant_first: bool,
    /// Measure accuracy on physically pruned graphs (faster at high rates; coupled channels are
    /// removed together, ranked by their mean score).
    #[arg(long)]
    pub physical: bool,
    /// Samples per batch for attribution [range: 1..=65536].
    #[arg(long, default_value_t = 64, value_parser = super::ranges::count(1, super::ranges::MAX_BATCH))]
    pub attribution_batch: usize,
    /// Samples per batch for evaluation (64 keeps CPU activations in cache) [range: 1..=65536].
    #[arg(long, default_value_t = 64, value_parser = super::ranges::count(1, super::ranges::MAX_BATCH))]
    pub eval_batch: usize,
}

impl TaskArgs {
    pub fn task_spec(&self) -> relprune::experiment::TaskSpec {
        relprune::experiment::TaskSpec {
            classes: self.classes,
            seed: self.seed,
            refs_per_class: self.refs_per_class,
            split: self.split,
            eval_samples: self.eval_samples,
        }
    }
    pub fn run_options(&self) -> anyhow::Result<relprune::experiment::RunOptions> {
        Ok(relprune::experiment::RunOptions {
            rates: relprune::prune::ranking::parse_rates(&self.rates)?,
            stop_at_chance: self.stop_at_chance,
            order: if self.most_relevant_first {
                relprune::prune::ranking::PruneOrder::MostRelevantFirst
            } else {
                relprune::prune::ranking::PruneOrder::LeastRelevantFirst
            },
            attribution_batch: self.attribution_batch,
            eval_batch: self.eval_batch,
            physical: self.physical,
            axis: relprune::evaluate::CurveAxis::Rate,
            selection: relprune::prune::budget::Selection::Relevance,
            marks: Vec::new(),
            visit: relprune::evaluate::RateVisit::Ascending,
        })
    }
}

/// What a curve's grid measures (curve, compare, optimize).
#[derive(Args)]
pub struct AxisArgs {
    /// What the rates remove: `rate` (a fraction of the components, the paper's protocol), or
    /// `macs` / `params` (a fraction of the unpruned model's MACs / parameters, removed
    /// physically; each point is the shortest prefix of the group order that removes at least
    /// that much, found by bisection). One criterion then compares with another at equal cost.
    #[arg(long, default_value = "rate")]
    pub axis: relprune::evaluate::CurveAxis,
    /// Group order: `relevance` (least relevant first, globally), `cost-aware` (least relevance
    /// per MAC / parameter saved first; on a macs / params axis or for --target marks),
    /// `uniform` (every layer loses the same share of its units) or `kv-groups` (whole
    /// key/value groups of grouped-query attention); the last two are measured on the
    /// physically pruned models.
    #[arg(long, default_value = "relevance")]
    pub selection: relprune::prune::budget::Selection,
    /// Budget targets to mark on the curves (repeatable): `macs=0.5`, `params=0.5` or
    /// `latency=0.6[@BATCH]`, the fraction of the unpruned model to keep, as `prune --target`
    /// takes it. Each criterion's mark is the physically pruned model `prune --target` would give,
    /// with its rate and accuracy, drawn on the plot and listed in the table and JSON.
    #[arg(long = "target", value_name = "TARGET")]
    pub targets: Vec<relprune::prune::budget::Target>,
    /// Scale scores within each layer before the global ranking: none, max, l2, sum, mean or
    /// lamp (as `prune --normalize`). It becomes part of each criterion (a rules file that fixes
    /// another is an error). Without it, a criterion that leaves it open draws its curve with the
    /// paper's raw ranking, and its --target marks rank as `prune` does (mean where the set
    /// holds conv filters, none for neurons and heads), so a mark is the model `prune --target`
    /// gives.
    #[arg(long)]
    pub normalize: Option<relprune::prune::ranking::LayerNormalization>,
}

impl AxisArgs {
    /// `opts` with this axis.
    pub fn apply(
        &self,
        mut opts: relprune::experiment::RunOptions,
    ) -> anyhow::Result<relprune::experiment::RunOptions> {
        if self.axis == relprune::evaluate::CurveAxis::Rate
            && self.selection == relprune::prune::budget::Selection::CostAware
            && self.targets.is_empty()
        {
            anyhow::bail!(
                "--selection cost-aware orders a MACs or parameter axis, or the --target marks; add --axis macs, \
                 --axis params or --target macs=FRACTION"
            );
        }
        opts.axis = self.axis;
        opts.selection = self.selection;
        opts.marks = self.targets.clone();
        Ok(opts)
    }
}

/// Loads the model and its data, prepares the task and finds the components.
pub fn open_session(
    model: &ModelArgs,
    data: &DataArgs,
    task: &TaskArgs,
) -> anyhow::Result<relprune::workflow::Session> {
    Ok(relprune::workflow::Session::open(&model.source(), &data.source(), &task.task_spec(), task.component.clone())?)
}

/// Curve progress on stderr: one bar per criterion over its rates, with the evaluation speed.
pub struct CurveBars {
    /// Evaluation samples per rate (for the speed).
    eval_samples: usize,
    bar: Option<(ProgressBar, Option<std::time::Instant>)>,
}

impl CurveBars {
    /// Bars for a task of `eval_samples` evaluation samples.
    pub fn new(eval_samples: usize) -> Self {
        CurveBars { eval_samples, bar: None }
    }
}

impl relprune::workflow::curves::CurveObserver for CurveBars {
    fn criterion_started(&mut self, spec: &relprune::attribution::CriterionSpec, rates: usize) {
        let pb = progress(rates as u64, &spec.label());
        pb.set_message(format!("{}: scoring", spec.label()));
        self.bar = Some((pb, None));
    }
    fn stage(&mut self, spec: &relprune::attribution::CriterionSpec, stage: &relprune::experiment::Stage) {
        let Some((pb, first_done)) = &mut self.bar else { return };
        if let relprune::experiment::Stage::Rate { index, rate, accuracy } = *stage {
            pb.set_position(index as u64 + 1);
            // Evaluation throughput, from the rates after the first (the first one's start is the
            // end of scoring, which the stages do not mark).
            let speed = match first_done {
                None => {
                    *first_done = Some(std::time::Instant::now());
                    String::new()
                }
                Some(t) => {
                    format!(", {:.0} img/s", (index * self.eval_samples) as f64 / t.elapsed().as_secs_f64().max(1e-9))
                }
            };
            pb.set_message(format!("{}: {rate:.2} → {:.1}%{speed}", spec.label(), 100.0 * accuracy));
        }
    }
    fn criterion_done(&mut self, _result: &relprune::experiment::CurveResult) {
        if let Some((pb, _)) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
}

/// The summary table of curves, and their budget marks when there are any.
pub fn print_curves(out: &Output, results: &[relprune::experiment::CurveResult]) {
    out.say(summary_table(results));
    let marks = marks_table(results);
    if !marks.is_empty() {
        out.say(marks);
    }
}

/// A table of the budget marks of curves (empty when there are none).
pub fn marks_table(results: &[relprune::experiment::CurveResult]) -> String {
    if results.iter().all(|r| r.marks.is_empty()) {
        return String::new();
    }
    let mut s = format!(
        "{:<28} {:<16} {:>7} {:>11} {:>13} {:>9}\n",
        "criterion", "target", "rate", "MACs kept", "params kept", "accuracy"
    );
    for r in results {
        for m in &r.marks {
            s += &format!(
                "{:<28} {:<16} {:>7.3} {:>11.3} {:>13.3} {:>9.4}{}\n",
                r.criterion,
                m.label(),
                m.rate,
                m.macs_kept,
                m.params_kept,
                m.accuracy,
                if m.reached { "" } else { "  (not reached: the largest removal)" }
            );
        }
    }
    s
}

/// A table of curve summaries.
pub fn summary_table(results: &[relprune::experiment::CurveResult]) -> String {
    let mut s = format!(
        "{:<28} {:>7} {:>7} {:>8} {:>8} {:>9} {:>9}\n",
        "criterion", "A_PR", "AUC", "Top-PR", "≤1pt", "score s", "curve s"
    );
    for r in results {
        let c = &r.curve.summary;
        s += &format!(
            "{:<28} {:>7.4} {:>7.4} {:>8.2} {:>8.2} {:>9.2} {:>9.2}\n",
            r.criterion,
            c.a_pr,
            c.auc_trapezoid,
            c.top_pr_95,
            c.top_pr_1pt,
            r.timings.scoring_seconds,
            r.timings.curve_seconds
        );
    }
    if results.iter().any(|r| r.curve.summary.mean_log_perplexity.is_some()) {
        s += "(a language model: A_PR is the mean next-token accuracy over the grid)\n";
        s += &format!("{:<28} {:>12} {:>12}\n", "criterion", "mean ln ppl", "ppl at max");
        for r in results {
            if let (Some(m), Some(last)) = (r.curve.summary.mean_log_perplexity, r.curve.perplexities.last()) {
                s += &format!("{:<28} {m:>12.3} {last:>12.1}\n", r.criterion);
            }
        }
    }
    s
}

/// The per-rate table of one curve.
pub fn rate_table(r: &relprune::experiment::CurveResult) -> String {
    use relprune::prune::components::DepthGroup;
    // Share of each depth group's units removed: where the global ranking prunes.
    let groups: Vec<DepthGroup> =
        DepthGroup::ALL.into_iter().filter(|g| r.layers.iter().any(|l| l.group == *g)).collect();
    let kept = !r.curve.kept.is_empty();
    let mut s = if kept {
        format!(
            "{} (and the fraction really kept)\n{:>6} {:>6} {:>8} {:>9}",
            r.curve.axis.label(),
            "remove",
            "kept",
            "pruned",
            "accuracy"
        )
    } else {
        format!("{:>6} {:>8} {:>9}", "rate", "pruned", "accuracy")
    };
    let lm = !r.curve.perplexities.is_empty();
    if lm {
        s += &format!(" {:>11}", "perplexity");
    }
    for g in &groups {
        s += &format!(" {:>6}", g.name());
    }
    s += "\n";
    for (i, ((rate, acc), n)) in r.curve.rates.iter().zip(&r.curve.accuracies).zip(&r.curve.pruned).enumerate() {
        s += &format!("{rate:>6.2}");
        if let Some(k) = r.curve.kept.get(i) {
            s += &format!(" {k:>6.3}");
        }
        s += &format!(" {n:>8} {:>8.2}%", 100.0 * acc);
        if let Some(p) = r.curve.perplexities.get(i) {
            s += &format!(" {p:>11.2}");
        }
        if let Some(per_layer) = r.curve.pruned_per_layer.get(i) {
            for g in &groups {
                let (removed, units) = r
                    .layers
                    .iter()
                    .zip(per_layer)
                    .filter(|(l, _)| l.group == *g)
                    .fold((0, 0), |(k, u), (l, &n)| (k + n, u + l.units));
                s += &format!(" {:>5.0}%", 100.0 * removed as f64 / units.max(1) as f64);
            }
        }
        s += "\n";
    }
    if let Some(i) = r.curve.filled_from {
        s += &format!(
            "(stopped at chance: rates from {:.2} filled with chance {:.1}%)\n",
            r.curve.rates[i],
            100.0 * r.curve.chance
        );
    }
    s
}
