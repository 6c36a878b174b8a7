//! Options and output helpers shared by subcommands.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use relprune::data::{fashion_mnist, image_folder, Splits};
use relprune::models::{load_model, LoadedModel};
use std::path::PathBuf;

/// Which model to use.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A zoo name, an architecture (`resnet18`, `vgg16_bn`, `cifar_resnet18:width=16,in=1,size=28`, …)
    /// or a folder written by `relprune prune`.
    #[arg(long, short)]
    pub model: String,
    /// Weights for an architecture: a safetensors file with torchvision / Hugging Face names.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Seed of the random initialisation when no weights are given.
    #[arg(long, default_value_t = 0)]
    pub init_seed: u64,
}

impl ModelArgs {
    pub fn load(&self) -> anyhow::Result<LoadedModel> {
        Ok(load_model(&self.model, self.weights.as_deref(), self.init_seed)?)
    }
}

/// Which data to use.
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// `fashion-mnist` or `imagefolder:PATH` (PATH/train, PATH/val[, PATH/test], one sub-folder per class).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Folder of the Fashion-MNIST IDX files (default: $RELPRUNE_FMNIST_DIR or /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    pub fmnist_dir: Option<PathBuf>,
}

impl DataArgs {
    pub fn load(&self) -> anyhow::Result<Splits> {
        if self.data == "fashion-mnist" {
            return Ok(fashion_mnist::load_splits(&fashion_mnist::resolve_dir(self.fmnist_dir.as_deref()))?);
        }
        if let Some(path) = self.data.strip_prefix("imagefolder:") {
            return Ok(image_folder::load_splits(std::path::Path::new(path))?);
        }
        anyhow::bail!("unknown data `{}`; use `fashion-mnist` or `imagefolder:PATH`", self.data)
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
