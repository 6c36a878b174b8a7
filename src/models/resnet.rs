//! ResNet-18/34/50/101/152 with torchvision parameter names, and CIFAR-style variants
//! (3×3 stem, no max-pool, any width, input channels and image size).

use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{init, Conv2d, Graph, GraphBuilder, InputKind, NodeId, Op};
use serde::{Deserialize, Serialize};

/// How the network starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// torchvision: 7×7 stride-2 conv, then a 3×3 stride-2 max-pool.
    Imagenet,
    /// Small images: one 3×3 stride-1 conv, no max-pool.
    Cifar,
}

/// A ResNet's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// 18, 34 (basic blocks) or 50, 101, 152 (bottlenecks).
    pub depth: u32,
    pub num_classes: i64,
    pub stem: Stem,
    /// Channels of the first stage (torchvision: 64); later stages double it.
    pub width: i64,
    pub in_channels: i64,
    pub image_size: i64,
    /// Groups of the bottleneck's 3×3 conv (ResNeXt: 32 or 64).
    #[serde(default = "one")]
    pub groups: i64,
    /// Bottleneck width per group, relative to 64 (ResNeXt 32x4d: 4; wide ResNet-50-2: 128).
    #[serde(default = "sixty_four")]
    pub width_per_group: i64,
}

fn one() -> i64 {
    1
}

fn sixty_four() -> i64 {
    64
}

impl ResNetConfig {
    /// torchvision's `resnet{depth}` for 224×224 RGB images.
    pub fn torchvision(depth: u32, num_classes: i64) -> Self {
        ResNetConfig {
            depth,
            num_classes,
            stem: Stem::Imagenet,
            width: 64,
            in_channels: 3,
            image_size: 224,
            groups: 1,
            width_per_group: 64,
        }
    }

    /// torchvision's ResNeXt and wide ResNets: `resnext50_32x4d`, `resnext101_32x8d`,
    /// `resnext101_64x4d`, `wide_resnet50_2`, `wide_resnet101_2`.
    pub fn torchvision_variant(name: &str, num_classes: i64) -> Option<Self> {
        let (depth, groups, width_per_group) = match name {
            "resnext50_32x4d" => (50, 32, 4),
            "resnext101_32x8d" => (101, 32, 8),
            "resnext101_64x4d" => (101, 64, 4),
            "wide_resnet50_2" => (50, 1, 128),
            "wide_resnet101_2" => (101, 1, 128),
            _ => return None,
        };
        Some(ResNetConfig { groups, width_per_group, ..Self::torchvision(depth, num_classes) })
    }

    /// The architecture's name.
    pub fn name(&self) -> String {
        let cifar = if self.stem == Stem::Cifar { "cifar_" } else { "" };
        match (self.groups, self.width_per_group) {
            (1, 64) => format!("{cifar}resnet{}", self.depth),
            (1, w) => format!("{cifar}wide_resnet{}_{}", self.depth, w / 64),
            (g, w) => format!("{cifar}resnext{}_{g}x{w}d", self.depth),
        }
    }

    fn blocks(&self) -> Result<(bool, [usize; 4])> {
        Ok(match self.depth {
            18 => (false, [2, 2, 2, 2]),
            34 => (false, [3, 4, 6, 3]),
            50 => (true, [3, 4, 6, 3]),
            101 => (true, [3, 4, 23, 3]),
            152 => (true, [3, 8, 36, 3]),
            d => crate::bail!("ResNet depth {d} is not one of 18, 34, 50, 101, 152"),
        })
    }
}

fn conv(b: &mut GraphBuilder, name: &str, x: NodeId, spec: Conv2d) -> NodeId {
    b.add(name, Op::Conv2d(spec), &[x])
}

fn bn(b: &mut GraphBuilder, name: &str, x: NodeId, features: i64) -> NodeId {
    b.add(name, Op::BatchNorm2d(BatchNorm2d { features, eps: 1e-5, momentum: 0.1 }), &[x])
}

/// Builds the graph; parameters initialised as torchvision does (Kaiming-normal convs).
pub fn build(cfg: &ResNetConfig, seed: u64) -> Result<Graph> {
    let (bottleneck, blocks) = cfg.blocks()?;
    if cfg.width < 1 || cfg.in_channels < 1 || cfg.num_classes < 1 || cfg.image_size < 1 {
        crate::bail!("ResNet width, input channels, classes and image size must be positive");
    }
    if cfg.groups < 1 || cfg.width_per_group < 1 || (cfg.groups > 1 || cfg.width_per_group != 64) && !bottleneck {
        crate::bail!("groups and width_per_group apply to bottleneck ResNets (depth 50, 101, 152) only");
    }
    let expansion = if bottleneck { 4 } else { 1 };
    let mut b = GraphBuilder::new();
    let s = cfg.image_size;
    let mut x = b.input("x", InputKind::Image { channels: cfg.in_channels, height: s, width: s });
    let w = cfg.width;
    x = match cfg.stem {
        Stem::Imagenet => conv(&mut b, "conv1", x, Conv2d::new(cfg.in_channels, w, 7).stride(2).padding(3)),
        Stem::Cifar => conv(&mut b, "conv1", x, Conv2d::new(cfg.in_channels, w, 3).padding(1)),
    };
    x = bn(&mut b, "bn1", x, w);
    x = b.add("relu", Op::Relu(Relu), &[x]);
    if cfg.stem == Stem::Imagenet {
        x = b.add(
            "maxpool",
            Op::MaxPool2d(MaxPool2d { kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceil_mode: false }),
            &[x],
        );
    }
    let mut inplanes = w;
    for (stage, &n) in blocks.iter().enumerate() {
        let planes = w << stage;
        for i in 0..n {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let p = format!("layer{}.{i}", stage + 1);
            let identity = x;
            let mut y;
            if bottleneck {
                let width = planes * cfg.width_per_group / 64 * cfg.groups;
                y = conv(&mut b, &format!("{p}.conv1"), x, Conv2d::new(inplanes, width, 1));
                y = bn(&mut b, &format!("{p}.bn1"), y, width);
                y = b.add(format!("{p}.relu1"), Op::Relu(Relu), &[y]);
                let c2 = Conv2d::new(width, width, 3).stride(stride).padding(1).groups(cfg.groups);
                y = conv(&mut b, &format!("{p}.conv2"), y, c2);
                y = bn(&mut b, &format!("{p}.bn2"), y, width);
                y = b.add(format!("{p}.relu2"), Op::Relu(Relu), &[y]);
                y = conv(&mut b, &format!("{p}.conv3"), y, Conv2d::new(width, planes * 4, 1));
                y = bn(&mut b, &format!("{p}.bn3"), y, planes * 4);
            } else {
                y = conv(&mut b, &format!("{p}.conv1"), x, Conv2d::new(inplanes, planes, 3).stride(stride).padding(1));
                y = bn(&mut b, &format!("{p}.bn1"), y, planes);
                y = b.add(format!("{p}.relu1"), Op::Relu(Relu), &[y]);
                y = conv(&mut b, &format!("{p}.conv2"), y, Conv2d::new(planes, planes, 3).padding(1));
                y = bn(&mut b, &format!("{p}.bn2"), y, planes);
            }
            let shortcut = if stride != 1 || inplanes != planes * expansion {
                let d = conv(
                    &mut b,
                    &format!("{p}.downsample.0"),
                    identity,
                    Conv2d::new(inplanes, planes * expansion, 1).stride(stride),
                );
                bn(&mut b, &format!("{p}.downsample.1"), d, planes * expansion)
            } else {
                identity
            };
            let sum = b.add(format!("{p}.add"), Op::Add(Add), &[y, shortcut]);
            x = b.add(format!("{p}.relu"), Op::Relu(Relu), &[sum]);
            inplanes = planes * expansion;
        }
    }
    x = b.add("avgpool", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [1, 1] }), &[x]);
    x = b.add("flatten", Op::Flatten(Flatten { start_dim: 1 }), &[x]);
    let out =
        b.add("fc", Op::Linear(Linear { in_features: inplanes, out_features: cfg.num_classes, bias: true }), &[x]);
    let mut g = b.finish(out, seed)?;
    let mut rng = crate::util::rng(crate::util::derive_seed(seed, "resnet-init"));
    for id in 0..g.nodes().len() {
        init::kaiming_normal_fan_out(&mut g, id, &mut rng);
    }
    Ok(g)
}
