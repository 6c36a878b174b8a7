//! `relprune zoo`: list, train and evaluate the models relprune ships.

use super::common::{progress, Output};
use clap::{Args, Subcommand};
use relprune::models::zoo;
use relprune::train::{EpochRecord, TrainObserver};
use std::path::PathBuf;

#[derive(Args)]
pub struct ZooArgs {
    #[command(subcommand)]
    command: ZooCommand,
}

#[derive(Subcommand)]
enum ZooCommand {
    /// List the zoo models and their measured accuracies.
    List,
    /// Train a zoo model from its committed recipe (resumes an interrupted run).
    Train {
        name: String,
        /// Folder of the Fashion-MNIST IDX files (default: $RELPRUNE_FMNIST_DIR or Debian's folder).
        #[arg(long)]
        fmnist_dir: Option<PathBuf>,
        /// Folder for checkpoints and resume state (default: $RELPRUNE_CACHE/zoo-work/NAME).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        #[command(flatten)]
        device: super::common::DeviceArgs,
    },
    /// Measure a zoo model's accuracy and compare it with its manifest.
    Eval {
        name: String,
        /// Folder of the Fashion-MNIST IDX files (default: $RELPRUNE_FMNIST_DIR or Debian's folder).
        #[arg(long)]
        fmnist_dir: Option<PathBuf>,
        /// Device (the manifests' figures were measured on the CPU; another device may differ
        /// by a few test images).
        #[command(flatten)]
        device: super::common::DeviceArgs,
    },
}

struct Bars {
    bar: Option<indicatif::ProgressBar>,
}

impl TrainObserver for Bars {
    fn epoch_started(&mut self, epoch: usize, batches: usize) {
        let what = if epoch == usize::MAX { "features".to_string() } else { format!("epoch {}", epoch + 1) };
        self.bar = Some(progress(batches as u64, &what));
    }
    fn batch_done(&mut self, batch: usize, loss: f64) {
        if let Some(b) = &self.bar {
            b.set_position(batch as u64 + 1);
            if batch % 20 == 0 {
                b.set_message(format!("loss {loss:.3}"));
            }
        }
    }
    fn epoch_done(&mut self, r: &EpochRecord) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        eprintln!(
            "epoch {:>3}: train loss {:.4}, val accuracy {:.2} %, {:.0} s",
            r.epoch + 1,
            r.train_loss,
            100.0 * r.val_accuracy,
            r.seconds
        );
    }
}

fn cache_dir() -> PathBuf {
    relprune::util::cache_dir()
}

pub fn run(args: ZooArgs, out: &Output) -> anyhow::Result<()> {
    match args.command {
        ZooCommand::List => list(out),
        ZooCommand::Train { name, fmnist_dir, work_dir, device } => {
            let recipe = (zoo::entry(&name)?.recipe)();
            let splits = recipe.data.splits(fmnist_dir.as_deref())?;
            let work = work_dir.unwrap_or_else(|| cache_dir().join("zoo-work").join(&name));
            out.say(format!("training {name}; checkpoints in {}", work.display()));
            let m = zoo::train(&name, &splits, &work, device.resolve()?, &mut Bars { bar: None })?;
            out.say(format!(
                "{name}: best epoch {} of {}, val {:.2} %, test {:.2} % ({} / {}), {:.0} s of training",
                m.training.best_epoch + 1,
                m.training.history.len(),
                100.0 * m.measured.val_accuracy,
                100.0 * m.measured.test_accuracy,
                m.measured.test_correct,
                m.measured.test_samples,
                m.training.wall_seconds
            ));
            out.emit(&m)
        }
        ZooCommand::Eval { name, fmnist_dir, device } => eval(out, &name, fmnist_dir, &device),
    }
}

/// `zoo list`: every zoo model with its measured test accuracy (None: not trained yet).
fn list(out: &Output) -> anyhow::Result<()> {
    let rows = zoo::list();
    for r in &rows {
        let acc = r.test_accuracy.map(|a| format!("{:.2} %", 100.0 * a)).unwrap_or_else(|| "untrained".into());
        out.say(format!("{:<18} {:<10} {}", r.name, acc, r.description));
    }
    out.emit(&rows)
}

/// `zoo eval`: the model's accuracy against its manifest; a difference fails the command.
fn eval(
    out: &Output,
    name: &str,
    fmnist_dir: Option<PathBuf>,
    device: &super::common::DeviceArgs,
) -> anyhow::Result<()> {
    let (model, manifest) = device.load_zoo(name)?;
    let r = zoo::evaluate(&model, &manifest, fmnist_dir.as_deref())?;
    let (m, o) = (&r.measured, &r.manifest);
    out.say(format!(
        "{name}: val {:.2} % (manifest {:.2} %), test {:.2} % (manifest {:.2} %), first {} test images: {} correct (manifest {}) — {}",
        100.0 * m.val_accuracy,
        100.0 * o.val_accuracy,
        100.0 * m.test_accuracy,
        100.0 * o.test_accuracy,
        m.check_samples,
        m.check_correct,
        o.check_correct,
        if r.reproduced { "reproduced" } else { "DIFFERS from the manifest" }
    ));
    out.emit(&r)?;
    if !r.reproduced {
        anyhow::bail!("measured accuracy differs from the manifest of {name}");
    }
    Ok(())
}
