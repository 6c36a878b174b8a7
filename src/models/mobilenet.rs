//! MobileNetV2 and MobileNetV3 (small, large) with torchvision's parameter names
//! (`features.3.conv.1.0.weight`, `features.4.block.2.fc1.weight`, …).
//!
//! The CIFAR variant (`cifar_mobilenet_v2`, …) keeps every layer but uses stride 1 in the stem,
//! so 28–32 pixel images keep a 2×2 map before pooling (total stride 16).

use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{init, Graph, GraphBuilder, NodeId};
use serde::{Deserialize, Serialize};

/// Which MobileNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MobileNetVersion {
    V2,
    V3Small,
    V3Large,
}

/// A MobileNet's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileNetConfig {
    pub version: MobileNetVersion,
    pub num_classes: i64,
    pub in_channels: i64,
    pub image_size: i64,
    /// Channel multiplier (torchvision's `width_mult`), channels rounded to multiples of 8.
    pub width_mult: f64,
    pub dropout: f64,
    /// Stride 1 in the stem (small images).
    pub cifar: bool,
}

impl MobileNetConfig {
    /// torchvision's configuration of `name` (`mobilenet_v2`, `mobilenet_v3_small`,
    /// `mobilenet_v3_large`), or None.
    pub fn torchvision(name: &str, num_classes: i64) -> Option<Self> {
        let version = match name {
            "mobilenet_v2" => MobileNetVersion::V2,
            "mobilenet_v3_small" => MobileNetVersion::V3Small,
            "mobilenet_v3_large" => MobileNetVersion::V3Large,
            _ => return None,
        };
        Some(MobileNetConfig {
            version,
            num_classes,
            in_channels: 3,
            image_size: 224,
            width_mult: 1.0,
            dropout: 0.2,
            cifar: false,
        })
    }

    /// The architecture's name.
    pub fn name(&self) -> String {
        let base = match self.version {
            MobileNetVersion::V2 => "mobilenet_v2",
            MobileNetVersion::V3Small => "mobilenet_v3_small",
            MobileNetVersion::V3Large => "mobilenet_v3_large",
        };
        format!("{}{base}", if self.cifar { "cifar_" } else { "" })
    }

    /// Checks the options.
    pub fn check(&self) -> Result<()> {
        if !(self.width_mult > 0.0 && self.width_mult <= 16.0) {
            crate::bail!("width_mult must be in (0, 16], got {}", self.width_mult);
        }
        Ok(())
    }

    fn channels(&self, c: i64) -> i64 {
        make_divisible(c as f64 * self.width_mult, 8)
    }
}

/// torchvision's `_make_divisible`: the nearest multiple of `divisor`, never below 90 % of `v`.
pub fn make_divisible(v: f64, divisor: i64) -> i64 {
    let d = divisor as f64;
    let mut n = ((v + d / 2.0) / d).floor().max(1.0) as i64 * divisor;
    if (n as f64) < 0.9 * v {
        n += divisor;
    }
    n
}

fn conv(b: &mut GraphBuilder, name: &str, spec: Conv2d, x: NodeId) -> NodeId {
    b.add(name, Op::Conv2d(spec), &[x])
}

fn norm(b: &mut GraphBuilder, name: &str, features: i64, x: NodeId) -> NodeId {
    b.add(name, Op::BatchNorm2d(BatchNorm2d::new(features)), &[x])
}

/// Activation of a MobileNet layer.
#[derive(Clone, Copy, PartialEq)]
enum Act {
    Relu,
    Relu6,
    Hardswish,
    None,
}

fn act(b: &mut GraphBuilder, name: String, a: Act, x: NodeId) -> NodeId {
    match a {
        Act::Relu => b.add(name, Op::Relu(Relu), &[x]),
        Act::Relu6 => b.add(name, Op::Hardtanh(Hardtanh::relu6()), &[x]),
        Act::Hardswish => b.add(name, Op::Hardswish(Hardswish), &[x]),
        Act::None => x,
    }
}

/// torchvision's `Conv2dNormActivation` under `prefix`: `prefix.0` conv, `prefix.1` norm,
/// `prefix.2` activation.
#[allow(clippy::too_many_arguments)]
fn conv_norm_act(
    b: &mut GraphBuilder,
    prefix: &str,
    x: NodeId,
    (cin, cout, k, stride, groups): (i64, i64, i64, i64, i64),
    a: Act,
    bn_eps: f64,
    bn_momentum: f64,
) -> NodeId {
    let spec = Conv2d::new(cin, cout, k).stride(stride).padding((k - 1) / 2).groups(groups);
    let y = conv(b, &format!("{prefix}.0"), spec, x);
    let y = b.add(
        format!("{prefix}.1"),
        Op::BatchNorm2d(BatchNorm2d { features: cout, eps: bn_eps, momentum: bn_momentum }),
        &[y],
    );
    act(b, format!("{prefix}.2"), a, y)
}

/// Builds the graph.
pub fn build(cfg: &MobileNetConfig, seed: u64) -> Result<Graph> {
    cfg.check()?;
    let mut b = GraphBuilder::new();
    let x = b.input("x", InputKind::Image { channels: cfg.in_channels, height: cfg.image_size, width: cfg.image_size });
    let (x, last) = match cfg.version {
        MobileNetVersion::V2 => v2_features(&mut b, cfg, x),
        MobileNetVersion::V3Small | MobileNetVersion::V3Large => v3_features(&mut b, cfg, x),
    };
    let mut x = b.add("avgpool", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d::global()), &[x]);
    x = b.add("flatten", Op::Flatten(Flatten { start_dim: 1 }), &[x]);
    let out = match cfg.version {
        MobileNetVersion::V2 => {
            x = b.add("classifier.0", Op::Dropout(Dropout { p: cfg.dropout }), &[x]);
            b.add("classifier.1", Op::Linear(Linear::new(last, cfg.num_classes)), &[x])
        }
        MobileNetVersion::V3Small | MobileNetVersion::V3Large => {
            let hidden = cfg.channels(if cfg.version == MobileNetVersion::V3Small { 1024 } else { 1280 });
            x = b.add("classifier.0", Op::Linear(Linear::new(last, hidden)), &[x]);
            x = b.add("classifier.1", Op::Hardswish(Hardswish), &[x]);
            x = b.add("classifier.2", Op::Dropout(Dropout { p: cfg.dropout }), &[x]);
            b.add("classifier.3", Op::Linear(Linear::new(hidden, cfg.num_classes)), &[x])
        }
    };
    let mut g = b.finish(out, seed)?;
    // torchvision: Kaiming-normal (fan-out) convolutions, N(0, 0.01) linear layers, zero biases.
    let mut rng = crate::util::rng(crate::util::derive_seed(seed, "mobilenet-init"));
    for id in 0..g.nodes().len() {
        init::kaiming_normal_fan_out(&mut g, id, &mut rng);
        init::normal_linear(&mut g, id, 0.01, &mut rng);
    }
    Ok(g)
}

/// MobileNetV2's features; returns the last node and its channels.
fn v2_features(b: &mut GraphBuilder, cfg: &MobileNetConfig, x: NodeId) -> (NodeId, i64) {
    const SETTINGS: [(i64, i64, i64, i64); 7] =
        [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
    let (eps, mom) = (1e-5, 0.1);
    let mut cin = cfg.channels(32);
    let stem_stride = if cfg.cifar { 1 } else { 2 };
    let mut x = conv_norm_act(b, "features.0", x, (cfg.in_channels, cin, 3, stem_stride, 1), Act::Relu6, eps, mom);
    let mut idx = 1;
    for &(t, c, n, s) in SETTINGS.iter() {
        let cout = cfg.channels(c);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let p = format!("features.{idx}.conv");
            let hidden = (cin as f64 * t as f64).round() as i64;
            let mut y = x;
            let mut j = 0;
            if t != 1 {
                y = conv_norm_act(b, &format!("{p}.0"), y, (cin, hidden, 1, 1, 1), Act::Relu6, eps, mom);
                j = 1;
            }
            y = conv_norm_act(b, &format!("{p}.{j}"), y, (hidden, hidden, 3, stride, hidden), Act::Relu6, eps, mom);
            y = conv(b, &format!("{p}.{}", j + 1), Conv2d::new(hidden, cout, 1), y);
            y = norm(b, &format!("{p}.{}", j + 2), cout, y);
            x = if stride == 1 && cin == cout {
                b.add(format!("features.{idx}.add"), Op::Add(Add), &[x, y])
            } else {
                y
            };
            cin = cout;
            idx += 1;
        }
    }
    let last = make_divisible(1280.0 * cfg.width_mult.max(1.0), 8);
    let x = conv_norm_act(b, &format!("features.{idx}"), x, (cin, last, 1, 1, 1), Act::Relu6, eps, mom);
    (x, last)
}

/// One MobileNetV3 inverted-residual setting: (in, kernel, expanded, out, SE, hardswish,
/// stride).
type V3Block = (i64, i64, i64, i64, bool, bool, i64);

const V3_LARGE: [V3Block; 15] = [
    (16, 3, 16, 16, false, false, 1),
    (16, 3, 64, 24, false, false, 2),
    (24, 3, 72, 24, false, false, 1),
    (24, 5, 72, 40, true, false, 2),
    (40, 5, 120, 40, true, false, 1),
    (40, 5, 120, 40, true, false, 1),
    (40, 3, 240, 80, false, true, 2),
    (80, 3, 200, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 480, 112, true, true, 1),
    (112, 3, 672, 112, true, true, 1),
    (112, 5, 672, 160, true, true, 2),
    (160, 5, 960, 160, true, true, 1),
    (160, 5, 960, 160, true, true, 1),
];

const V3_SMALL: [V3Block; 11] = [
    (16, 3, 16, 16, true, false, 2),
    (16, 3, 72, 24, false, false, 2),
    (24, 3, 88, 24, false, false, 1),
    (24, 5, 96, 40, true, true, 2),
    (40, 5, 240, 40, true, true, 1),
    (40, 5, 240, 40, true, true, 1),
    (40, 5, 120, 48, true, true, 1),
    (48, 5, 144, 48, true, true, 1),
    (48, 5, 288, 96, true, true, 2),
    (96, 5, 576, 96, true, true, 1),
    (96, 5, 576, 96, true, true, 1),
];

/// MobileNetV3's features; returns the last node and its channels.
fn v3_features(b: &mut GraphBuilder, cfg: &MobileNetConfig, x: NodeId) -> (NodeId, i64) {
    let (eps, mom) = (0.001, 0.01);
    let blocks: &[V3Block] = if cfg.version == MobileNetVersion::V3Small { &V3_SMALL } else { &V3_LARGE };
    let stem = cfg.channels(blocks[0].0);
    let stem_stride = if cfg.cifar { 1 } else { 2 };
    let mut x = conv_norm_act(b, "features.0", x, (cfg.in_channels, stem, 3, stem_stride, 1), Act::Hardswish, eps, mom);
    for (i, &(cin, k, exp, cout, se, hs, stride)) in blocks.iter().enumerate() {
        let (cin, exp, cout) = (cfg.channels(cin), cfg.channels(exp), cfg.channels(cout));
        let a = if hs { Act::Hardswish } else { Act::Relu };
        let p = format!("features.{}.block", i + 1);
        let mut y = x;
        let mut j = 0;
        if exp != cin {
            y = conv_norm_act(b, &format!("{p}.0"), y, (cin, exp, 1, 1, 1), a, eps, mom);
            j += 1;
        }
        y = conv_norm_act(b, &format!("{p}.{j}"), y, (exp, exp, k, stride, exp), a, eps, mom);
        j += 1;
        if se {
            y = squeeze_excitation(b, &format!("{p}.{j}"), y, exp, make_divisible((exp / 4) as f64, 8));
            j += 1;
        }
        y = conv_norm_act(b, &format!("{p}.{j}"), y, (exp, cout, 1, 1, 1), Act::None, eps, mom);
        x = if stride == 1 && cin == cout {
            b.add(format!("features.{}.add", i + 1), Op::Add(Add), &[x, y])
        } else {
            y
        };
    }
    let cin = cfg.channels(blocks[blocks.len() - 1].3);
    let last = 6 * cin;
    let x =
        conv_norm_act(b, &format!("features.{}", blocks.len() + 1), x, (cin, last, 1, 1, 1), Act::Hardswish, eps, mom);
    (x, last)
}

/// torchvision's `SqueezeExcitation` (MobileNetV3: ReLU inside, Hardsigmoid gate):
/// x · hardsigmoid(fc2(relu(fc1(avgpool(x))))).
fn squeeze_excitation(b: &mut GraphBuilder, p: &str, x: NodeId, channels: i64, squeeze: i64) -> NodeId {
    let s = b.add(format!("{p}.avgpool"), Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d::global()), &[x]);
    let s = conv(b, &format!("{p}.fc1"), Conv2d::new(channels, squeeze, 1).bias(true), s);
    let s = b.add(format!("{p}.activation"), Op::Relu(Relu), &[s]);
    let s = conv(b, &format!("{p}.fc2"), Conv2d::new(squeeze, channels, 1).bias(true), s);
    let s = b.add(format!("{p}.scale_activation"), Op::Hardsigmoid(Hardsigmoid), &[s]);
    b.add(format!("{p}.mul"), Op::Mul(Mul), &[x, s])
}
