//! ConvNeXt tiny / small / base / large with torchvision's parameter names
//! (`features.1.0.block.0.weight`, `features.1.0.layer_scale`, `classifier.2.weight`, …):
//! depthwise 7×7 convolutions, channel LayerNorms, channel-wise linear layers, layer scale and
//! stochastic depth.

use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{Graph, GraphBuilder, NodeId, Role};
use serde::{Deserialize, Serialize};

/// A ConvNeXt's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvNextConfig {
    /// tiny, small, base or large.
    pub size: String,
    pub num_classes: i64,
    pub in_channels: i64,
    pub image_size: i64,
}

impl ConvNextConfig {
    /// torchvision's `convnext_{tiny,small,base,large}`, or None.
    pub fn torchvision(name: &str, num_classes: i64) -> Option<Self> {
        let size = name.strip_prefix("convnext_")?;
        ["tiny", "small", "base", "large"].contains(&size).then(|| ConvNextConfig {
            size: size.to_string(),
            num_classes,
            in_channels: 3,
            image_size: 224,
        })
    }

    /// The architecture's name.
    pub fn name(&self) -> String {
        format!("convnext_{}", self.size)
    }

    /// (widths, blocks per stage, largest stochastic-depth probability).
    fn shape(&self) -> Result<([i64; 4], [usize; 4], f64)> {
        Ok(match self.size.as_str() {
            "tiny" => ([96, 192, 384, 768], [3, 3, 9, 3], 0.1),
            "small" => ([96, 192, 384, 768], [3, 3, 27, 3], 0.4),
            "base" => ([128, 256, 512, 1024], [3, 3, 27, 3], 0.5),
            "large" => ([192, 384, 768, 1536], [3, 3, 27, 3], 0.5),
            s => crate::bail!("ConvNeXt size `{s}` is not one of tiny, small, base, large"),
        })
    }
}

fn norm2d(b: &mut GraphBuilder, name: String, channels: i64, x: NodeId) -> NodeId {
    b.add(name, Op::LayerNorm2d(LayerNorm2d { channels, eps: 1e-6 }), &[x])
}

/// Builds the graph.
pub fn build(cfg: &ConvNextConfig, seed: u64) -> Result<Graph> {
    let (widths, depths, sd_max) = cfg.shape()?;
    let mut b = GraphBuilder::new();
    let s = cfg.image_size;
    let x = b.input("x", InputKind::Image { channels: cfg.in_channels, height: s, width: s });
    let stem = Conv2d::new(cfg.in_channels, widths[0], 4).stride(4).bias(true);
    let mut x = b.add("features.0.0", Op::Conv2d(stem), &[x]);
    x = norm2d(&mut b, "features.0.1".into(), widths[0], x);
    let total: usize = depths.iter().sum();
    let mut block_id = 0;
    for (si, (&dim, &n)) in widths.iter().zip(&depths).enumerate() {
        let stage = 1 + 2 * si;
        for i in 0..n {
            let p = format!("features.{stage}.{i}");
            let dw = Conv2d::new(dim, dim, 7).padding(3).groups(dim).bias(true);
            let mut y = b.add(format!("{p}.block.0"), Op::Conv2d(dw), &[x]);
            // torchvision permutes to channels-last and applies LayerNorm and Linear layers there;
            // relprune keeps the map channels-first and uses their channel-wise forms.
            y = norm2d(&mut b, format!("{p}.block.2"), dim, y);
            let fc1 = ChannelLinear { in_channels: dim, out_channels: 4 * dim, bias: true };
            y = b.add(format!("{p}.block.3"), Op::ChannelLinear(fc1), &[y]);
            y = b.add(format!("{p}.block.4"), Op::Gelu(Gelu { tanh: false }), &[y]);
            let fc2 = ChannelLinear { in_channels: 4 * dim, out_channels: dim, bias: true };
            y = b.add(format!("{p}.block.5"), Op::ChannelLinear(fc2), &[y]);
            let key = format!("{p}.layer_scale");
            y = b.add_keyed(format!("{p}.scale"), Op::Scale(Scale::map(dim)), &[y], &[(Role::Weight, &key)]);
            let sd = sd_max * block_id as f64 / (total as f64 - 1.0);
            y = b.add(format!("{p}.stochastic_depth"), Op::StochasticDepth(StochasticDepth { p: sd }), &[y]);
            x = b.add(format!("{p}.add"), Op::Add(Add), &[y, x]);
            block_id += 1;
        }
        if si + 1 < widths.len() {
            let p = format!("features.{}", stage + 1);
            x = norm2d(&mut b, format!("{p}.0"), dim, x);
            let down = Conv2d::new(dim, widths[si + 1], 2).stride(2).bias(true);
            x = b.add(format!("{p}.1"), Op::Conv2d(down), &[x]);
        }
    }
    let last = widths[3];
    x = b.add("avgpool", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d::global()), &[x]);
    x = norm2d(&mut b, "classifier.0".into(), last, x);
    x = b.add("classifier.1", Op::Flatten(Flatten { start_dim: 1 }), &[x]);
    let out = b.add("classifier.2", Op::Linear(Linear::new(last, cfg.num_classes)), &[x]);
    let mut g = b.finish(out, seed)?;
    // torchvision initialises layer scale to 1e-6 (weights are trunc-normal; the scheme does not
    // matter for pruning, and oracles load weights).
    let keys: Vec<String> = g.params().keys().filter(|k| k.ends_with("layer_scale")).cloned().collect();
    for k in keys {
        let t = g.params().get(&k).expect("key").f_mul_scalar(1e-6)?;
        g.params_mut().insert(k, t);
    }
    Ok(g)
}
