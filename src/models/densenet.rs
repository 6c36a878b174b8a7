//! DenseNet-121 / 161 / 169 / 201 with torchvision's parameter names
//! (`features.denseblock1.denselayer1.norm1.weight`, `features.transition1.conv.weight`, …).
//! Every dense layer reads the concatenation of all earlier feature maps of its block, so a
//! removed channel leaves every later concatenation, BatchNorm and 1×1 conv of the block.

use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{init, Graph, GraphBuilder, NodeId};
use serde::{Deserialize, Serialize};

/// A DenseNet's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseNetConfig {
    /// 121, 161, 169 or 201.
    pub depth: u32,
    pub num_classes: i64,
    pub in_channels: i64,
    pub image_size: i64,
}

impl DenseNetConfig {
    /// torchvision's `densenet{depth}`, or None.
    pub fn torchvision(name: &str, num_classes: i64) -> Option<Self> {
        let depth: u32 = name.strip_prefix("densenet")?.parse().ok()?;
        [121, 161, 169, 201].contains(&depth).then_some(DenseNetConfig {
            depth,
            num_classes,
            in_channels: 3,
            image_size: 224,
        })
    }

    /// The architecture's name.
    pub fn name(&self) -> String {
        format!("densenet{}", self.depth)
    }

    /// (growth rate, initial features, layers per block).
    fn shape(&self) -> Result<(i64, i64, [usize; 4])> {
        Ok(match self.depth {
            121 => (32, 64, [6, 12, 24, 16]),
            161 => (48, 96, [6, 12, 36, 24]),
            169 => (32, 64, [6, 12, 32, 32]),
            201 => (32, 64, [6, 12, 48, 32]),
            d => crate::bail!("DenseNet depth {d} is not one of 121, 161, 169, 201"),
        })
    }
}

fn bn_relu(b: &mut GraphBuilder, norm: String, relu: String, features: i64, x: NodeId) -> NodeId {
    let y = b.add(norm, Op::BatchNorm2d(BatchNorm2d::new(features)), &[x]);
    b.add(relu, Op::Relu(Relu), &[y])
}

/// Builds the graph.
pub fn build(cfg: &DenseNetConfig, seed: u64) -> Result<Graph> {
    let (growth, init_features, blocks) = cfg.shape()?;
    let bn_size = 4;
    let mut b = GraphBuilder::new();
    let s = cfg.image_size;
    let x = b.input("x", InputKind::Image { channels: cfg.in_channels, height: s, width: s });
    let mut x =
        b.add("features.conv0", Op::Conv2d(Conv2d::new(cfg.in_channels, init_features, 7).stride(2).padding(3)), &[x]);
    x = bn_relu(&mut b, "features.norm0".into(), "features.relu0".into(), init_features, x);
    let pool = MaxPool2d { kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceil_mode: false };
    x = b.add("features.pool0", Op::MaxPool2d(pool), &[x]);
    let mut features = init_features;
    for (bi, &n) in blocks.iter().enumerate() {
        let mut parts = vec![x];
        for l in 0..n {
            let p = format!("features.denseblock{}.denselayer{}", bi + 1, l + 1);
            let cat = if parts.len() == 1 {
                parts[0]
            } else {
                b.add(format!("{p}.cat"), Op::Concat(Concat { dim: 1 }), &parts)
            };
            let cin = features + l as i64 * growth;
            let mut y = bn_relu(&mut b, format!("{p}.norm1"), format!("{p}.relu1"), cin, cat);
            y = b.add(format!("{p}.conv1"), Op::Conv2d(Conv2d::new(cin, bn_size * growth, 1)), &[y]);
            y = bn_relu(&mut b, format!("{p}.norm2"), format!("{p}.relu2"), bn_size * growth, y);
            y = b.add(format!("{p}.conv2"), Op::Conv2d(Conv2d::new(bn_size * growth, growth, 3).padding(1)), &[y]);
            parts.push(y);
        }
        x = b.add(format!("features.denseblock{}.cat", bi + 1), Op::Concat(Concat { dim: 1 }), &parts);
        features += n as i64 * growth;
        if bi + 1 < blocks.len() {
            let p = format!("features.transition{}", bi + 1);
            let mut y = bn_relu(&mut b, format!("{p}.norm"), format!("{p}.relu"), features, x);
            y = b.add(format!("{p}.conv"), Op::Conv2d(Conv2d::new(features, features / 2, 1)), &[y]);
            let avg = AvgPool2d::new([2, 2], [2, 2], [0, 0]);
            x = b.add(format!("{p}.pool"), Op::AvgPool2d(avg), &[y]);
            features /= 2;
        }
    }
    x = bn_relu(&mut b, "features.norm5".into(), "relu".into(), features, x);
    x = b.add("avgpool", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d::global()), &[x]);
    x = b.add("flatten", Op::Flatten(Flatten { start_dim: 1 }), &[x]);
    let out = b.add("classifier", Op::Linear(Linear::new(features, cfg.num_classes)), &[x]);
    let mut g = b.finish(out, seed)?;
    // torchvision: Kaiming-normal convolutions (fan-in; the scale does not matter for pruning
    // and oracles load weights), zero linear bias.
    let mut rng = crate::util::rng(crate::util::derive_seed(seed, "densenet-init"));
    for id in 0..g.nodes().len() {
        init::kaiming_normal_fan_out(&mut g, id, &mut rng);
    }
    Ok(g)
}
