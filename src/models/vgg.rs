//! VGG-11/13/16/19, with and without BatchNorm, with torchvision parameter names, and
//! CIFAR-style variants for small images.

use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{init, Conv2d, Graph, GraphBuilder, InputKind, Op};
use serde::{Deserialize, Serialize};

/// Classifier and pooling layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VggStyle {
    /// torchvision: adaptive pool to 7×7, classifier 512·49 → hidden → hidden → classes.
    Imagenet,
    /// Small images: max-pools only while the feature map is at least 2×2, adaptive pool to
    /// 1×1, classifier 8·width → hidden → hidden → classes.
    Cifar,
}

/// A VGG's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VggConfig {
    /// 11, 13, 16 or 19 weight layers.
    pub depth: u32,
    pub batch_norm: bool,
    pub num_classes: i64,
    pub style: VggStyle,
    /// Channels of the first block (torchvision: 64); later blocks use 2×, 4×, 8×, 8×.
    pub width: i64,
    /// Width of the two hidden classifier layers (torchvision: 4096).
    pub hidden: i64,
    pub in_channels: i64,
    pub image_size: i64,
    /// Dropout probability in the classifier (torchvision: 0.5).
    pub dropout: f64,
}

impl VggConfig {
    /// torchvision's `vgg{depth}[_bn]` for 224×224 RGB images.
    pub fn torchvision(depth: u32, batch_norm: bool, num_classes: i64) -> Self {
        VggConfig {
            depth,
            batch_norm,
            num_classes,
            style: VggStyle::Imagenet,
            width: 64,
            hidden: 4096,
            in_channels: 3,
            image_size: 224,
            dropout: 0.5,
        }
    }

    /// Convolutions per block (torchvision configurations A, B, D, E).
    fn convs_per_block(&self) -> Result<[usize; 5]> {
        Ok(match self.depth {
            11 => [1, 1, 2, 2, 2],
            13 => [2, 2, 2, 2, 2],
            16 => [2, 2, 3, 3, 3],
            19 => [2, 2, 4, 4, 4],
            d => crate::bail!("VGG depth {d} is not one of 11, 13, 16, 19"),
        })
    }
}

/// Builds the graph; parameters initialised as torchvision does.
pub fn build(cfg: &VggConfig, seed: u64) -> Result<Graph> {
    let per_block = cfg.convs_per_block()?;
    if cfg.width < 1 || cfg.hidden < 1 || cfg.in_channels < 1 || cfg.num_classes < 1 || cfg.image_size < 1 {
        crate::bail!("VGG width, hidden size, input channels, classes and image size must be positive");
    }
    let mut b = GraphBuilder::new();
    let s = cfg.image_size;
    let mut x = b.input("x", InputKind::Image { channels: cfg.in_channels, height: s, width: s });
    let mut idx = 0usize; // torchvision's index in `features`
    let mut channels = cfg.in_channels;
    let mut spatial = s;
    for (block, &n) in per_block.iter().enumerate() {
        let out = cfg.width * [1, 2, 4, 8, 8][block];
        for _ in 0..n {
            x = b.add(format!("features.{idx}"), Op::Conv2d(Conv2d::new(channels, out, 3).padding(1).bias(true)), &[x]);
            idx += 1;
            if cfg.batch_norm {
                x = b.add(
                    format!("features.{idx}"),
                    Op::BatchNorm2d(BatchNorm2d { features: out, eps: 1e-5, momentum: 0.1 }),
                    &[x],
                );
                idx += 1;
            }
            x = b.add(format!("features.{idx}"), Op::Relu(Relu), &[x]);
            idx += 1;
            channels = out;
        }
        if cfg.style == VggStyle::Imagenet || spatial >= 2 {
            let pool = Op::MaxPool2d(MaxPool2d { kernel: [2, 2], stride: [2, 2], padding: [0, 0], ceil_mode: false });
            x = b.add(format!("features.{idx}"), pool, &[x]);
            idx += 1;
            spatial /= 2;
        }
    }
    let pooled = match cfg.style {
        VggStyle::Imagenet => 7,
        VggStyle::Cifar => 1,
    };
    x = b.add("avgpool", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [pooled, pooled] }), &[x]);
    x = b.add("flatten", Op::Flatten(Flatten { start_dim: 1 }), &[x]);
    let dims = [channels * pooled * pooled, cfg.hidden, cfg.hidden];
    for (i, pair) in dims.windows(2).enumerate() {
        let base = i * 3;
        x = b.add(
            format!("classifier.{base}"),
            Op::Linear(Linear { in_features: pair[0], out_features: pair[1], bias: true }),
            &[x],
        );
        x = b.add(format!("classifier.{}", base + 1), Op::Relu(Relu), &[x]);
        x = b.add(format!("classifier.{}", base + 2), Op::Dropout(Dropout { p: cfg.dropout }), &[x]);
    }
    let out = b.add(
        "classifier.6",
        Op::Linear(Linear { in_features: cfg.hidden, out_features: cfg.num_classes, bias: true }),
        &[x],
    );
    let mut g = b.finish(out, seed)?;
    let mut rng = crate::util::rng(crate::util::derive_seed(seed, "vgg-init"));
    for id in 0..g.nodes().len() {
        // Each scheme applies to its own layer kind and leaves other nodes alone.
        init::kaiming_normal_fan_out(&mut g, id, &mut rng);
        init::normal_linear(&mut g, id, 0.01, &mut rng);
    }
    Ok(g)
}
