//! EfficientNet-B0 … B7 with torchvision's parameter names (`features.2.0.block.1.0.weight`,
//! `features.2.0.block.2.fc1.weight`, …): MBConv blocks with SiLU, depthwise convolutions,
//! squeeze-and-excitation gates (sigmoid) and stochastic depth.

use super::mobilenet::make_divisible;
use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{init, Graph, GraphBuilder, NodeId};
use serde::{Deserialize, Serialize};

/// An EfficientNet's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficientNetConfig {
    /// 0 to 7 (B0 … B7).
    pub variant: u8,
    pub num_classes: i64,
    pub in_channels: i64,
    pub image_size: i64,
    pub dropout: f64,
    /// Largest stochastic-depth probability (the last block's is just below it).
    pub stochastic_depth: f64,
}

/// (width multiplier, depth multiplier, dropout) of B0 … B7.
const SCALING: [(f64, f64, f64); 8] = [
    (1.0, 1.0, 0.2),
    (1.0, 1.1, 0.2),
    (1.1, 1.2, 0.3),
    (1.2, 1.4, 0.3),
    (1.4, 1.8, 0.4),
    (1.6, 2.2, 0.4),
    (1.8, 2.6, 0.5),
    (2.0, 3.1, 0.5),
];

/// (expand ratio, kernel, stride, in, out, layers) of the seven stages.
const STAGES: [(i64, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

impl EfficientNetConfig {
    /// torchvision's `efficientnet_b0` … `efficientnet_b7`, or None.
    pub fn torchvision(name: &str, num_classes: i64) -> Option<Self> {
        let variant: u8 = name.strip_prefix("efficientnet_b")?.parse().ok().filter(|v| *v < 8)?;
        let sizes = [224, 240, 288, 300, 380, 456, 528, 600];
        Some(EfficientNetConfig {
            variant,
            num_classes,
            in_channels: 3,
            image_size: sizes[variant as usize],
            dropout: SCALING[variant as usize].2,
            stochastic_depth: 0.2,
        })
    }

    /// The architecture's name.
    pub fn name(&self) -> String {
        format!("efficientnet_b{}", self.variant)
    }

    /// Checks the options.
    pub fn check(&self) -> Result<()> {
        if self.variant > 7 {
            crate::bail!("EfficientNet variant {} is not one of B0 … B7", self.variant);
        }
        if !(0.0..1.0).contains(&self.stochastic_depth) {
            crate::bail!("stochastic depth must be in [0, 1), got {}", self.stochastic_depth);
        }
        Ok(())
    }
}

/// Builds the graph.
pub fn build(cfg: &EfficientNetConfig, seed: u64) -> Result<Graph> {
    cfg.check()?;
    let (wm, dm, _) = SCALING[cfg.variant as usize];
    // B5 … B7 use BatchNorm eps 1e-3 and momentum 0.01.
    let bn = |features| {
        if cfg.variant >= 5 {
            BatchNorm2d { features, eps: 1e-3, momentum: 0.01 }
        } else {
            BatchNorm2d::new(features)
        }
    };
    let ch = |c: i64| make_divisible(c as f64 * wm, 8);
    let mut b = GraphBuilder::new();
    let s = cfg.image_size;
    let x = b.input("x", InputKind::Image { channels: cfg.in_channels, height: s, width: s });
    let cna = |b: &mut GraphBuilder,
               p: &str,
               x: NodeId,
               (cin, cout, k, stride, groups): (i64, i64, i64, i64, i64),
               act: bool| {
        let spec = Conv2d::new(cin, cout, k).stride(stride).padding((k - 1) / 2).groups(groups);
        let mut y = b.add(format!("{p}.0"), Op::Conv2d(spec), &[x]);
        y = b.add(format!("{p}.1"), Op::BatchNorm2d(bn(cout)), &[y]);
        if act {
            y = b.add(format!("{p}.2"), Op::Silu(Silu), &[y]);
        }
        y
    };
    let stem = ch(STAGES[0].3);
    let mut x = cna(&mut b, "features.0", x, (cfg.in_channels, stem, 3, 2, 1), true);
    let depths: Vec<i64> = STAGES.iter().map(|st| (st.5 as f64 * dm).ceil() as i64).collect();
    let total: i64 = depths.iter().sum();
    let mut block_id = 0;
    let mut cin = stem;
    for (si, &(t, k, stride, _, out, _)) in STAGES.iter().enumerate() {
        let cout = ch(out);
        for l in 0..depths[si] {
            let stride = if l == 0 { stride } else { 1 };
            let p = format!("features.{}.{l}", si + 1);
            let exp = make_divisible(cin as f64 * t as f64, 8);
            let mut y = x;
            let mut j = 0;
            if exp != cin {
                y = cna(&mut b, &format!("{p}.block.{j}"), y, (cin, exp, 1, 1, 1), true);
                j += 1;
            }
            y = cna(&mut b, &format!("{p}.block.{j}"), y, (exp, exp, k, stride, exp), true);
            j += 1;
            y = squeeze_excitation(&mut b, &format!("{p}.block.{j}"), y, exp, (cin / 4).max(1));
            j += 1;
            y = cna(&mut b, &format!("{p}.block.{j}"), y, (exp, cout, 1, 1, 1), false);
            if stride == 1 && cin == cout {
                let sd = cfg.stochastic_depth * block_id as f64 / total as f64;
                y = b.add(format!("{p}.stochastic_depth"), Op::StochasticDepth(StochasticDepth { p: sd }), &[y]);
                y = b.add(format!("{p}.add"), Op::Add(Add), &[y, x]);
            }
            x = y;
            cin = cout;
            block_id += 1;
        }
    }
    let last = 4 * cin;
    x = cna(&mut b, &format!("features.{}", STAGES.len() + 1), x, (cin, last, 1, 1, 1), true);
    x = b.add("avgpool", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d::global()), &[x]);
    x = b.add("flatten", Op::Flatten(Flatten { start_dim: 1 }), &[x]);
    x = b.add("classifier.0", Op::Dropout(Dropout { p: cfg.dropout }), &[x]);
    let out = b.add("classifier.1", Op::Linear(Linear::new(last, cfg.num_classes)), &[x]);
    let mut g = b.finish(out, seed)?;
    // torchvision: Kaiming-normal (fan-out) convolutions; the classifier's default stays.
    let mut rng = crate::util::rng(crate::util::derive_seed(seed, "efficientnet-init"));
    for id in 0..g.nodes().len() {
        init::kaiming_normal_fan_out(&mut g, id, &mut rng);
    }
    Ok(g)
}

/// torchvision's `SqueezeExcitation` with SiLU inside and a sigmoid gate.
fn squeeze_excitation(b: &mut GraphBuilder, p: &str, x: NodeId, channels: i64, squeeze: i64) -> NodeId {
    let s = b.add(format!("{p}.avgpool"), Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d::global()), &[x]);
    let s = b.add(format!("{p}.fc1"), Op::Conv2d(Conv2d::new(channels, squeeze, 1).bias(true)), &[s]);
    let s = b.add(format!("{p}.activation"), Op::Silu(Silu), &[s]);
    let s = b.add(format!("{p}.fc2"), Op::Conv2d(Conv2d::new(squeeze, channels, 1).bias(true)), &[s]);
    let s = b.add(format!("{p}.scale_activation"), Op::Sigmoid(Sigmoid), &[s]);
    b.add(format!("{p}.mul"), Op::Mul(Mul), &[x, s])
}
