//! `relprune prune`: a genuinely smaller model — surgery at one rate, with parameters, MACs,
//! latency and accuracy before and after; saved as a reloadable graph folder and as ONNX.

use super::common::{progress, DataArgs, ModelArgs, Output, TaskArgs};
use clap::Args;
use relprune::attribution::CriterionSpec;
use relprune::prune::choose::ChooseConfig;
use relprune::prune::compress::{Amount, CompressConfig};
use relprune::workflow::prune::{prune, CriterionChoice, OptimizeConfig, PruneConfig, PruneOutcome, PruneRequest};
use std::path::PathBuf;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("amount").required(true).args(["rate", "target", "max_drop"])))]
pub struct PruneArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    task: TaskArgs,
    /// Criterion (as for `curve`), or `file:RULES.yaml` from `relprune optimize`, or `auto`: try
    /// LRP-ε, LRP-ε-plus, gradient and Taylor, each with the per-layer mean and without, in the
    /// relevance and the cost-aware order, at the budget on the validation split, and prune with
    /// the best (a given --normalize or --selection is kept fixed). A language model, --max-drop
    /// and --steps use lrp-epsilon instead.
    #[arg(long, default_value = "auto")]
    criterion: String,
    /// Run an N-trial study of the LRP composite (the paper's method) on the validation split, with
    /// the accuracy over removals up to this budget as its objective, then prune with the winner.
    /// The study is kept (and resumed) in OUT/study/ [range: 1..=10000].
    #[arg(long, value_name = "N", value_parser = super::ranges::count(1, 10_000))]
    optimize: Option<usize>,
    /// With `--criterion auto` and --finetune: fine-tune each finalist this many optimiser steps
    /// before comparing them, so the choice is the candidate that recovers best; 0 compares them
    /// as pruned [default: 25] [range: 0..=100000].
    #[arg(long, value_name = "STEPS", value_parser = super::ranges::count(0, 100_000))]
    probe_steps: Option<usize>,
    /// LRP rules for `--criterion lrp` (as for `curve`: `low=…,mid=…,high=…,fc=…`, `d1=…,…,dN=…`,
    /// or a rules file).
    #[arg(long)]
    rules: Option<String>,
    /// Fraction of components to remove [range: 0 ≤ rate < 1]. One of --rate, --target, --max-drop.
    #[arg(long, value_parser = super::ranges::rate)]
    rate: Option<f64>,
    /// A size budget instead of a rate: `macs=0.5`, `params=0.5` or `latency=0.6[@BATCH]` keeps at
    /// most that fraction of the unpruned model's MACs, parameters or measured latency (batch 1
    /// unless given) — the smallest removal that meets it, found by bisection on the nested
    /// selections.
    #[arg(long, value_parser = clap::value_parser!(relprune::prune::budget::Target))]
    target: Option<relprune::prune::budget::Target>,
    /// An accuracy budget instead of a rate: the largest removal whose accuracy on the validation
    /// split stays within this many percentage points of the unpruned model's [range: ≥ 0].
    #[arg(long, value_name = "POINTS", value_parser = super::ranges::non_negative)]
    max_drop: Option<f64>,
    /// Order of removal: `relevance` (least relevant first, the paper's global ranking),
    /// `cost-aware` (least relevance per MAC saved first; per parameter with --target
    /// params=…) or `uniform` (every layer loses the same share of its units, each its least
    /// relevant: equal widths stay equal, and a pruned decoder keeps a stock config that loads
    /// without custom code) or `kv-groups` (heads of grouped-query attention go as whole
    /// key/value groups, least relevant group first).
    /// Default: relevance (with `--criterion auto`, the better of relevance and cost-aware).
    #[arg(long)]
    selection: Option<relprune::prune::budget::Selection>,
    /// Keep every pruned layer's width a multiple of K (hardware-friendly widths, as
    /// Torch-Pruning's `round_to`); a layer narrower than K keeps its width [range: 1..=4096].
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = super::ranges::count(1, 4096))]
    round_to: usize,
    /// Scale scores within each layer before the global ranking: none (the paper's raw global
    /// ranking), max, l2, sum, mean or lamp (LAMP scores). Default: mean for conv filters, none for neurons and
    /// heads, the better of the two for each in benchmarks/deploy at equal MACs, before and after
    /// fine-tuning (docs/benchmarks.md, section "deploy").
    #[arg(long)]
    normalize: Option<relprune::prune::ranking::LayerNormalization>,
    /// Prune in N equal steps (of the rate or of the MACs / parameter target), re-scoring the
    /// pruned model and fine-tuning after each step; needs --finetune [range: 1..=100].
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = super::ranges::count(1, 100))]
    steps: usize,
    /// Timed forward passes for the batch-1 latency (after 3 warm-up passes); batch 64 uses a
    /// quarter of them (at least 3) after 1 warm-up pass; 0 skips measuring latency (minutes on a
    /// large model on a CPU) [range: 0..=100000].
    #[arg(long, default_value_t = 20, value_parser = super::ranges::count(0, 100_000))]
    latency_runs: usize,
    /// Never prune this layer (a name from `relprune components`, or a module prefix such as
    /// `layer4` for every layer under it), nor the layers coupled to it; repeat for several.
    #[arg(long, value_name = "LAYER")]
    ignore: Vec<String>,
    #[command(flatten)]
    finetune: FinetuneArgs,
    /// Output folder: model/ (graph.json + model.safetensors), model.onnx, prune.json.
    #[arg(long, default_value = "out/prune")]
    out: PathBuf,
}

/// Recovery fine-tuning after pruning.
#[derive(Args)]
struct FinetuneArgs {
    /// Fine-tune the pruned model for this many epochs on the task's train split (0: none)
    /// [range: 0..=1000]. Checkpointed every epoch in OUT/finetune-work; rerun to resume.
    #[arg(long, value_name = "EPOCHS", default_value_t = 0, value_parser = super::ranges::count(0, 1000))]
    finetune: usize,
    /// Distil from the unpruned model while fine-tuning (soft targets plus the hard-label loss).
    #[arg(long)]
    distill: bool,
    /// Distillation temperature [range: > 0].
    #[arg(long, default_value_t = 4.0, value_parser = super::ranges::positive)]
    distill_temperature: f64,
    /// Weight of the soft-target loss; 1 − it weighs the hard labels [range: 0..=1].
    #[arg(long, default_value_t = 0.5, value_parser = super::ranges::unit_interval)]
    distill_alpha: f64,
    /// Peak learning rate of fine-tuning (default: 0.01 with SGD for CNNs, 0.001 for CNNs without
    /// normalisation layers, such as a BatchNorm-folded export, 1e-4 with AdamW for transformers)
    /// [range: > 0].
    #[arg(long, value_parser = super::ranges::positive)]
    ft_lr: Option<f64>,
    /// Fine-tuning batch size [range: 1..=65536].
    #[arg(long, default_value_t = 128, value_parser = super::ranges::count(1, super::ranges::MAX_BATCH))]
    ft_batch: usize,
    /// Fine-tune on the first N train samples of the task (0: all) [range: 0..=10^8].
    #[arg(long, default_value_t = 0, value_parser = super::ranges::count(0, super::ranges::MAX_COUNT))]
    ft_samples: usize,
    /// Validation samples (a language model's: sequences) that pick the kept epoch
    /// [range: 1..=10^8].
    #[arg(long, default_value_t = 2000, value_parser = super::ranges::count(1, super::ranges::MAX_COUNT))]
    ft_val_samples: usize,
    /// An epoch is N optimiser steps rather than a pass over the train split (a language
    /// model's text is far longer than recovery needs) [range: 1..=10^8].
    #[arg(long, value_name = "N", conflicts_with = "ft_tokens", value_parser = super::ranges::count(1, super::ranges::MAX_COUNT))]
    ft_steps: Option<usize>,
    /// An epoch reads N tokens (rounded up to whole batches) rather than the whole train split
    /// [range: 1..=10^12].
    #[arg(long, value_name = "N", value_parser = super::ranges::count(1, 1_000_000_000_000))]
    ft_tokens: Option<usize>,
}

impl FinetuneArgs {
    fn config(&self, seed: u64) -> Option<relprune::recovery::FinetuneConfig> {
        (self.finetune > 0).then(|| relprune::recovery::FinetuneConfig {
            epochs: self.finetune,
            lr: self.ft_lr,
            batch_size: self.ft_batch,
            train_samples: self.ft_samples,
            val_samples: self.ft_val_samples,
            distill: self.distill.then_some(relprune::train::Distill {
                temperature: self.distill_temperature,
                alpha: self.distill_alpha,
            }),
            seed,
            epoch_length: match (self.ft_steps, self.ft_tokens) {
                (Some(n), _) => Some(relprune::recovery::EpochLength::Steps(n)),
                (None, Some(n)) => Some(relprune::recovery::EpochLength::Tokens(n)),
                (None, None) => None,
            },
        })
    }
}

/// Fine-tuning progress on stderr.
#[derive(Default)]
struct FinetuneBar {
    bar: Option<indicatif::ProgressBar>,
}

impl relprune::prune::compress::CompressObserver for FinetuneBar {
    fn stage(&mut self, step: usize, what: &str) {
        if step > 1 || what == "fine-tuning" {
            eprintln!("step {step}: {what}");
        }
    }
}

impl relprune::train::TrainObserver for FinetuneBar {
    fn epoch_started(&mut self, epoch: usize, batches: usize) {
        let pb = progress(batches as u64, &format!("fine-tune {}", epoch + 1));
        self.bar = Some(pb);
    }
    fn batch_done(&mut self, batch: usize, loss: f64) {
        if let Some(pb) = &self.bar {
            pb.set_position(batch as u64 + 1);
            pb.set_message(format!("loss {loss:.3}"));
        }
    }
    fn epoch_done(&mut self, r: &relprune::train::EpochRecord) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
        eprintln!(
            "fine-tuning epoch {}: train loss {:.4}, validation accuracy {:.2} % ({:.0} s)",
            r.epoch + 1,
            r.train_loss,
            100.0 * r.val_accuracy,
            r.seconds
        );
    }
}

impl FinetuneBar {
    fn finish(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
}

impl PruneArgs {
    /// The library request these options describe (the criterion checked first).
    fn request(&self) -> anyhow::Result<PruneRequest> {
        if self.probe_steps.is_some() && (self.criterion != "auto" || self.optimize.is_some()) {
            anyhow::bail!(
                "--probe-steps applies where prune chooses the criterion; drop it, or drop --criterion / --optimize"
            );
        }
        let criterion = if let Some(trials) = self.optimize {
            if self.criterion != "auto" || self.rules.is_some() || self.normalize.is_some() {
                anyhow::bail!(
                    "--optimize chooses the criterion and its normalisation; drop --criterion, --rules and --normalize"
                );
            }
            CriterionChoice::Optimize(OptimizeConfig { trials, selection: self.selection, ..Default::default() })
        } else if self.criterion == "auto" {
            if self.rules.is_some() {
                anyhow::bail!("--rules sets an LRP criterion's rules; give --criterion lrp with it");
            }
            let mut choose = ChooseConfig::default();
            if let Some(n) = self.normalize {
                choose.normalizations = vec![n];
            }
            if let Some(s) = self.selection {
                choose.selections = vec![s];
            }
            if let Some(steps) = self.probe_steps {
                choose.probe_steps = steps;
            }
            CriterionChoice::Auto(choose)
        } else {
            CriterionChoice::Given(
                CriterionSpec::parse(&self.criterion, self.rules.as_deref(), self.task.seed)?
                    .with_normalization(self.normalize)?,
            )
        };
        let opts = self.task.run_options()?;
        let amount = match (self.rate, self.target, self.max_drop) {
            (Some(r), _, _) => Amount::Rate(r),
            (None, Some(t), _) => Amount::Target(t),
            (None, None, Some(d)) => Amount::MaxDrop(d),
            (None, None, None) => unreachable!("clap requires one of --rate, --target, --max-drop"),
        };
        let compress = CompressConfig {
            amount,
            selection: self.selection.unwrap_or_default(),
            round_to: self.round_to,
            order: opts.order,
            attribution_batch: opts.attribution_batch,
            eval_batch: opts.eval_batch,
            seq_len: self.data.seq_len.map_or(128, |n| n as i64),
            finetune: self.finetune.config(self.task.seed),
            steps: self.steps,
            ignored: self.ignore.clone(),
        };
        Ok(PruneRequest {
            model: self.model.source(),
            data: self.data.source(),
            task: self.task.task_spec(),
            component: self.task.component.clone(),
            config: PruneConfig { criterion, compress, latency_runs: self.latency_runs },
            out: self.out.clone(),
        })
    }
}

pub fn run(args: PruneArgs, out: &Output) -> anyhow::Result<()> {
    let request = args.request()?;
    let mut bar = FinetuneBar::default();
    let outcome = prune(&request, &mut bar);
    bar.finish();
    let outcome = outcome?;
    print_outcome(out, &outcome, &args);
    out.emit(&outcome.pruned.report)
}

/// The human summary of a prune run.
fn print_outcome(out: &Output, outcome: &PruneOutcome, args: &PruneArgs) {
    let r = &outcome.pruned.report;
    out.say(format!(
        "{}: removed {} of {} {} ({} units after coupling) by {} at rate {}",
        r.model, r.surgery.removed_components, r.components, r.component, r.surgery.removed_units, r.criterion, r.rate
    ));
    if let Some(c) = &r.choice {
        out.say(format!(
            "criterion chosen on the validation split ({} samples each, the best {} again on {}; {:.1} s):",
            c.first_samples,
            c.candidates.iter().filter(|k| k.final_accuracy.is_some()).count(),
            c.final_samples,
            c.seconds
        ));
        if c.probe_steps > 0 {
            out.say(format!("  (finalists fine-tuned {} steps before the final measure: `probe`)", c.probe_steps));
        }
        out.say(format!(
            "     {:<18} {:<6} {:<11} {:>6} {:>9} {:>9} {:>9}",
            "criterion", "norm", "selection", "kept", "first", "final", "probe"
        ));
        let cell = |v: Option<f64>| v.map_or("-".into(), |v: f64| format!("{v:.4}"));
        for (i, k) in c.candidates.iter().enumerate() {
            out.say(format!(
                "{} {:>2} {:<18} {:<6} {:<11} {:>6} {:>9.4} {:>9} {:>9}{}",
                if i == c.chosen { "*" } else { " " },
                i + 1,
                k.criterion,
                k.normalize.to_string(),
                k.selection.to_string(),
                k.kept.map_or("-".into(), |v| format!("{v:.3}")),
                k.first_accuracy,
                cell(k.final_accuracy),
                cell(k.probe_accuracy),
                k.same_as.map_or(String::new(), |j| format!("  (the same removal as {})", j + 1))
            ));
        }
        out.say(format!("  reproduce: {}", c.winner().options()));
    }
    if let Some(st) = &r.study {
        out.say(format!(
            "criterion: trial {} of study `{}` ({} trials), validation A_PR {:.4} up to the budget; rules in {}",
            st.trial,
            st.study,
            st.trials,
            st.validation_a_pr.unwrap_or(f64::NAN),
            st.rules_file.display()
        ));
        if let Some(s) = st.selection {
            out.say(format!("  selection: {s} (chosen by the study; `--selection {s}` with the rules reproduces it)"));
        }
    }
    if let Some(b) = &r.budget {
        out.say(match (b.val_accuracy, args.target) {
            (Some((v0, v1)), _) => format!(
                "budget: validation accuracy {:.2} % → {:.2} % (max drop {} points) after {} trial surgeries",
                100.0 * v0,
                100.0 * v1,
                args.max_drop.unwrap_or(0.0),
                b.evaluations
            ),
            (None, t) => format!(
                "budget: {:.3} of the {} kept (target {}) after {} trial surgeries",
                b.ratio,
                t.map_or("MACs", |t| t.measure.name()),
                t.map(|t| t.ratio).unwrap_or(0.0),
                b.evaluations
            ),
        });
    }
    for name in &r.surgery.emptied {
        out.say(format!("note: `{name}` lost all its units (its block now only adds a bias)"));
    }
    out.say(format!("{:<22} {:>14} {:>14} {:>8}", "", "before", "after", "ratio"));
    let row = |what: &str, a: f64, b: f64| format!("{what:<22} {a:>14.4} {b:>14.4} {:>8.3}", b / a);
    let (b, a) = (&r.before, &r.after);
    out.say(row("parameters (M)", b.parameters as f64 / 1e6, a.parameters as f64 / 1e6));
    out.say(row("MACs per sample (M)", b.macs as f64 / 1e6, a.macs as f64 / 1e6));
    if let (Some(x1), Some(y1)) = (&b.latency_batch1, &a.latency_batch1) {
        out.say(row("latency batch 1 (ms)", x1.median_ms, y1.median_ms));
        if let (Some(x64), Some(y64)) = (&b.latency_batch64, &a.latency_batch64) {
            out.say(row("latency batch 64 (ms)", x64.median_ms, y64.median_ms));
        }
        if let (Some(x), Some(y)) = (b.tokens_per_second, a.tokens_per_second) {
            out.say(row("tokens per second", x, y));
        }
        out.say(format!("({} threads; latency = median of timed runs after warm-up)", x1.threads));
    }
    match (&b.next_token, &a.next_token) {
        (Some(x), Some(y)) => {
            out.say(row("perplexity", x.perplexity, y.perplexity));
            out.say(row("next-token accuracy", x.accuracy, y.accuracy));
            out.say(format!("(on {} predicted tokens of the {:?} split)", x.tokens, args.task.split));
        }
        _ => {
            if let (Some(x), Some(y)) = (b.accuracy, a.accuracy) {
                out.say(row("accuracy", x, y));
            }
        }
    }
    if let (Some(x), Some(f)) = (&b.next_token, &r.finetune) {
        if let Some(y) = &f.next_token {
            out.say(row(&format!("perplexity after {} ft", f.config.describe_length()), x.perplexity, y.perplexity));
        }
    }
    if let (Some(x), Some(f)) = (b.accuracy, &r.finetune) {
        if let Some(y) = f.accuracy {
            out.say(row(&format!("… after {} ft", f.config.describe_length()), x, y));
        }
    }
    if let Some(t) = r.finetune.as_ref().map(|f| &f.training).filter(|t| t.kept_start) {
        // Said on stderr even under --json: a fine-tune that did not help must not pass unseen.
        eprintln!(
            "warning: fine-tuning did not beat the pruned model on validation (its best epoch {}: {:.2} %, the pruned \
             model: {:.2} %); the pruned weights are kept. Try a lower --ft-lr (a network without BatchNorm, e.g. a \
             folded ONNX export, needs a smaller one) or more epochs",
            t.best_epoch + 1,
            100.0 * t.history.get(t.best_epoch).map_or(f64::NAN, |e| e.val_accuracy),
            100.0 * t.start_val_accuracy.unwrap_or(f64::NAN)
        );
    }
    let f = &outcome.files;
    let onnx = match &f.onnx {
        Ok(p) => p.display().to_string(),
        Err(why) => format!("not written: {why}"),
    };
    out.say(format!(
        "wrote {} (reload with --model {}), ONNX: {onnx}, {}",
        f.model_dir.display(),
        f.model_dir.display(),
        f.report.display()
    ));
}
