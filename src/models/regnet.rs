//! RegNet X and Y (400MF … 128GF) with torchvision's parameter names
//! (`trunk_output.block2.block2-0.f.b.0.weight`, `…f.se.fc1.weight`): residual bottlenecks with
//! grouped 3×3 convolutions and, for Y, squeeze-and-excitation gates.

use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{init, Graph, GraphBuilder, NodeId};
use serde::{Deserialize, Serialize};

/// One stage: (width, blocks, group width).
type Stage = (i64, i64, i64);

/// torchvision's per-stage settings, computed once by its `BlockParams.from_init_params`
/// (float32 arithmetic, rounding) for each named model; `(name, SE ratio, stages)`.
const REGNETS: &[(&str, f64, &[Stage])] = &[
    ("regnet_y_400mf", 0.25, &[(48, 1, 8), (104, 3, 8), (208, 6, 8), (440, 6, 8)]),
    ("regnet_y_800mf", 0.25, &[(64, 1, 16), (144, 3, 16), (320, 8, 16), (784, 2, 16)]),
    ("regnet_y_1_6gf", 0.25, &[(48, 2, 24), (120, 6, 24), (336, 17, 24), (888, 2, 24)]),
    ("regnet_y_3_2gf", 0.25, &[(72, 2, 24), (216, 5, 24), (576, 13, 24), (1512, 1, 24)]),
    ("regnet_y_8gf", 0.25, &[(224, 2, 56), (448, 4, 56), (896, 10, 56), (2016, 1, 56)]),
    ("regnet_y_16gf", 0.25, &[(224, 2, 112), (448, 4, 112), (1232, 11, 112), (3024, 1, 112)]),
    ("regnet_y_32gf", 0.25, &[(232, 2, 232), (696, 5, 232), (1392, 12, 232), (3712, 1, 232)]),
    ("regnet_y_128gf", 0.25, &[(528, 2, 264), (1056, 7, 264), (2904, 17, 264), (7392, 1, 264)]),
    ("regnet_x_400mf", 0.0, &[(32, 1, 16), (64, 2, 16), (160, 7, 16), (400, 12, 16)]),
    ("regnet_x_800mf", 0.0, &[(64, 1, 16), (128, 3, 16), (288, 7, 16), (672, 5, 16)]),
    ("regnet_x_1_6gf", 0.0, &[(72, 2, 24), (168, 4, 24), (408, 10, 24), (912, 2, 24)]),
    ("regnet_x_3_2gf", 0.0, &[(96, 2, 48), (192, 6, 48), (432, 15, 48), (1008, 2, 48)]),
    ("regnet_x_8gf", 0.0, &[(80, 2, 80), (240, 5, 120), (720, 15, 120), (1920, 1, 120)]),
    ("regnet_x_16gf", 0.0, &[(256, 2, 128), (512, 6, 128), (896, 13, 128), (2048, 1, 128)]),
    ("regnet_x_32gf", 0.0, &[(336, 2, 168), (672, 7, 168), (1344, 13, 168), (2520, 1, 168)]),
];

/// A RegNet's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegNetConfig {
    /// torchvision's name, e.g. `regnet_y_400mf`.
    pub name: String,
    pub num_classes: i64,
    pub in_channels: i64,
    pub image_size: i64,
}

impl RegNetConfig {
    /// torchvision's `name`, or None.
    pub fn torchvision(name: &str, num_classes: i64) -> Option<Self> {
        REGNETS.iter().any(|r| r.0 == name).then(|| RegNetConfig {
            name: name.to_string(),
            num_classes,
            in_channels: 3,
            image_size: 224,
        })
    }

    fn settings(&self) -> Result<(f64, &'static [Stage])> {
        REGNETS
            .iter()
            .find(|r| r.0 == self.name)
            .map(|r| (r.1, r.2))
            .ok_or_else(|| crate::Error::invalid(format!("unknown RegNet `{}`", self.name)))
    }
}

/// torchvision's `Conv2dNormActivation` with ReLU (or none) under `p`.
fn cna(
    b: &mut GraphBuilder,
    p: &str,
    x: NodeId,
    (cin, cout, k, stride, groups): (i64, i64, i64, i64, i64),
    relu: bool,
) -> NodeId {
    let spec = Conv2d::new(cin, cout, k).stride(stride).padding((k - 1) / 2).groups(groups);
    let y = b.add(format!("{p}.0"), Op::Conv2d(spec), &[x]);
    let y = b.add(format!("{p}.1"), Op::BatchNorm2d(BatchNorm2d::new(cout)), &[y]);
    if relu {
        b.add(format!("{p}.2"), Op::Relu(Relu), &[y])
    } else {
        y
    }
}

/// Builds the graph.
pub fn build(cfg: &RegNetConfig, seed: u64) -> Result<Graph> {
    let (se_ratio, stages) = cfg.settings()?;
    let mut b = GraphBuilder::new();
    let s = cfg.image_size;
    let x = b.input("x", InputKind::Image { channels: cfg.in_channels, height: s, width: s });
    let stem = 32;
    let mut x = cna(&mut b, "stem", x, (cfg.in_channels, stem, 3, 2, 1), true);
    let mut cin = stem;
    for (si, &(width, depth, group_width)) in stages.iter().enumerate() {
        for i in 0..depth {
            let stride = if i == 0 { 2 } else { 1 };
            let p = format!("trunk_output.block{}.block{}-{i}", si + 1, si + 1);
            let groups = width / group_width;
            let mut y = cna(&mut b, &format!("{p}.f.a"), x, (cin, width, 1, 1, 1), true);
            y = cna(&mut b, &format!("{p}.f.b"), y, (width, width, 3, stride, groups), true);
            if se_ratio > 0.0 {
                let squeeze = (se_ratio * cin as f64).round() as i64;
                let q = format!("{p}.f.se");
                let g = b.add(format!("{q}.avgpool"), Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d::global()), &[y]);
                let g = b.add(format!("{q}.fc1"), Op::Conv2d(Conv2d::new(width, squeeze, 1).bias(true)), &[g]);
                let g = b.add(format!("{q}.activation"), Op::Relu(Relu), &[g]);
                let g = b.add(format!("{q}.fc2"), Op::Conv2d(Conv2d::new(squeeze, width, 1).bias(true)), &[g]);
                let g = b.add(format!("{q}.scale_activation"), Op::Sigmoid(Sigmoid), &[g]);
                y = b.add(format!("{q}.mul"), Op::Mul(Mul), &[y, g]);
            }
            y = cna(&mut b, &format!("{p}.f.c"), y, (width, width, 1, 1, 1), false);
            let shortcut = if cin != width || stride != 1 {
                cna(&mut b, &format!("{p}.proj"), x, (cin, width, 1, stride, 1), false)
            } else {
                x
            };
            let sum = b.add(format!("{p}.add"), Op::Add(Add), &[shortcut, y]);
            x = b.add(format!("{p}.activation"), Op::Relu(Relu), &[sum]);
            cin = width;
        }
    }
    x = b.add("avgpool", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d::global()), &[x]);
    x = b.add("flatten", Op::Flatten(Flatten { start_dim: 1 }), &[x]);
    let out = b.add("fc", Op::Linear(Linear::new(cin, cfg.num_classes)), &[x]);
    let mut g = b.finish(out, seed)?;
    // torchvision: Kaiming-normal (fan-out) convolutions, N(0, 0.01) classifier, zero biases.
    let mut rng = crate::util::rng(crate::util::derive_seed(seed, "regnet-init"));
    for id in 0..g.nodes().len() {
        init::kaiming_normal_fan_out(&mut g, id, &mut rng);
        init::normal_linear(&mut g, id, 0.01, &mut rng);
    }
    Ok(g)
}
