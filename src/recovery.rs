//! Recovery fine-tuning after pruning: a few epochs of relprune's own training loop
//! ([`crate::train`]) on the task's train split, optionally distilled from the unpruned model.
//! Seeded, checkpointed atomically after every epoch and resumable after a kill; the
//! validation split picks the epoch that is kept.

use crate::data::{ClassSubset, Splits, Subset};
use crate::error::Result;
use crate::graph::Graph;
use crate::train::{train_with_teacher, Augment, Distill, Optimizer, TrainConfig, TrainObserver, TrainReport};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How to fine-tune a pruned model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    pub epochs: usize,
    /// Peak learning rate (None: 0.01 with SGD for CNNs, 0.001 for CNNs without normalisation
    /// layers, 1e-4 with AdamW for transformers).
    pub lr: Option<f64>,
    pub batch_size: usize,
    /// Train on the first N samples of the (class-filtered) train split; 0 = all.
    pub train_samples: usize,
    /// Validation samples that pick the kept epoch; 0 = all.
    pub val_samples: usize,
    /// Distil from the unpruned model.
    pub distill: Option<Distill>,
    pub seed: u64,
    /// An epoch of this many optimiser steps or tokens instead of one pass over the train split
    /// (a language model's text: a pass is far longer than recovery needs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_length: Option<EpochLength>,
}

/// The length of a fine-tuning epoch given in steps or in tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochLength {
    /// Optimiser steps (batches).
    Steps(usize),
    /// Tokens read (rounded up to whole batches): steps = ⌈tokens / (batch × sequence length)⌉.
    Tokens(usize),
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            epochs: 1,
            lr: None,
            batch_size: 128,
            train_samples: 0,
            val_samples: 2000,
            distill: None,
            seed: 0,
            epoch_length: None,
        }
    }
}

impl FinetuneConfig {
    /// The training recipe for `graph`: SGD with Nesterov momentum for CNNs (a tenth of the
    /// learning rate without normalisation layers), AdamW for transformers (their usual
    /// fine-tuning optimisers), cosine decay with no warm-up (the
    /// weights are already trained), the light augmentation the zoo's image models use.
    pub fn recipe(&self, graph: &Graph) -> TrainConfig {
        let transformer = graph.has_attention();
        let images = graph.input_kinds().iter().any(|k| matches!(k, crate::graph::InputKind::Image { .. }));
        let optimizer = if transformer {
            Optimizer::AdamW { lr: self.lr.unwrap_or(1e-4), beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05 }
        } else {
            // A CNN whose BatchNorm was folded into its convolutions (the exporters' default)
            // diverges at 0.01 (benchmarks/import/folded_finetune.sh: 0.635 after one epoch, NaN
            // with distillation) and recovers at 0.001 (0.866, 0.879; BatchNorm kept: 0.897).
            let lr = if graph.has_normalization() { 0.01 } else { 0.001 };
            Optimizer::Sgd { lr: self.lr.unwrap_or(lr), momentum: 0.9, nesterov: true, weight_decay: 5e-4 }
        };
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer,
            warmup_epochs: 0.0,
            label_smoothing: 0.0,
            // `fill` (the padding value) is set from the data by [`finetune`].
            augment: Augment { crop_padding: if images { 2 } else { 0 }, hflip: images, fill: 0.0 },
            seed: self.seed,
            val_samples: self.val_samples,
            head_only: false,
            keep_start: true,
            steps_per_epoch: match self.epoch_length {
                Some(EpochLength::Steps(n)) => Some(n),
                // Resolved by `finetune`, which sees the data's sequence length.
                _ => None,
            },
        }
    }

    /// "2 epoch(s)", or "2 × 100 steps" / "2 × 50000 tokens" with an epoch length.
    pub fn describe_length(&self) -> String {
        match self.epoch_length {
            None => format!("{} epoch(s)", self.epochs),
            Some(EpochLength::Steps(n)) => format!("{} × {n} steps", self.epochs),
            Some(EpochLength::Tokens(n)) => format!("{} × {n} tokens", self.epochs),
        }
    }
}

/// Fine-tunes `pruned` in place on the task's classes (all when `classes` is None); `teacher`
/// is the unpruned model, used when the config distils. Checkpoints live in `work_dir`; calling
/// again with the same pruned model and config resumes after the last finished epoch.
pub fn finetune(
    pruned: &mut Graph,
    teacher: &Graph,
    splits: &Splits,
    classes: Option<&ClassSubset>,
    cfg: &FinetuneConfig,
    work_dir: &Path,
    observer: &mut dyn TrainObserver,
) -> Result<TrainReport> {
    let restrict = |s: &Subset| match classes {
        Some(c) => c.filter(s),
        None => s.clone(),
    };
    let mut train = restrict(&splits.train);
    if cfg.train_samples > 0 {
        train = train.head(cfg.train_samples);
    }
    let task_splits = Splits { train, val: restrict(&splits.val), test: restrict(&splits.test) };
    if task_splits.train.is_empty() || task_splits.val.is_empty() {
        crate::bail!("fine-tuning needs train and validation samples of the task's classes");
    }
    let mut recipe = cfg.recipe(pruned);
    if let Some(EpochLength::Tokens(tokens)) = cfg.epoch_length {
        let sample = task_splits.train.head(1).full_batch()?;
        let per_sample = sample.inputs[0].numel().max(1);
        let batch = recipe.batch_size.min(task_splits.train.data.max_batch()).min(task_splits.train.len()).max(1);
        recipe.steps_per_epoch = Some(tokens.div_ceil(batch * per_sample).max(1));
    }
    if recipe.augment.crop_padding > 0 {
        // Padding shows black: the smallest normalised value of the data (Fashion-MNIST's
        // background; for per-channel normalised colour images, the darkest channel).
        let b = task_splits.train.head(256).full_batch()?;
        recipe.augment.fill = b.inputs[0].f_min()?.double_value(&[]);
    }
    train_with_teacher(pruned, &task_splits, &recipe, work_dir, cfg.distill.map(|d| (teacher, d)), observer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ops::*;
    use crate::graph::{GraphBuilder, InputKind, Op};

    /// A small CNN, with or without BatchNorm after its convolution.
    fn cnn(batch_norm: bool) -> Graph {
        let mut b = GraphBuilder::new();
        let x = b.input("x", InputKind::Image { channels: 1, height: 8, width: 8 });
        let mut h = b.add("conv", Op::Conv2d(Conv2d::new(1, 4, 3).padding(1)), &[x]);
        if batch_norm {
            h = b.add("bn", Op::BatchNorm2d(BatchNorm2d::new(4)), &[h]);
        }
        let h = b.add("act", Op::Relu(Relu), &[h]);
        let h = b.add("pool", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d::global()), &[h]);
        let h = b.add("flat", Op::Flatten(Flatten { start_dim: 1 }), &[h]);
        let out = b.add("fc", Op::Linear(Linear::new(4, 3)), &[h]);
        b.finish(out, 0).unwrap()
    }

    fn lr(cfg: &FinetuneConfig, g: &Graph) -> f64 {
        match cfg.recipe(g).optimizer {
            Optimizer::Sgd { lr, .. } | Optimizer::AdamW { lr, .. } => lr,
        }
    }

    /// A BatchNorm-folded CNN (the exporters' default) gets a tenth of the learning rate; a
    /// learning rate the user gives is used as given.
    #[test]
    fn networks_without_normalisation_fine_tune_at_a_lower_rate() {
        let cfg = FinetuneConfig::default();
        assert_eq!(lr(&cfg, &cnn(true)), 0.01);
        assert_eq!(lr(&cfg, &cnn(false)), 0.001);
        let given = FinetuneConfig { lr: Some(0.05), ..FinetuneConfig::default() };
        assert_eq!(lr(&given, &cnn(false)), 0.05);
    }
}
