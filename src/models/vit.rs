//! Vision Transformers with torchvision's `VisionTransformer` parameter names, any image size,
//! patch size, depth, width and number of heads.

use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{init, Conv2d, Graph, GraphBuilder, InputKind, Op};
use serde::{Deserialize, Serialize};

/// A ViT's shape (torchvision's constructor arguments).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    pub image_size: i64,
    pub patch_size: i64,
    pub in_channels: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub hidden_dim: i64,
    pub mlp_dim: i64,
    pub num_classes: i64,
    pub dropout: f64,
}

impl VitConfig {
    /// torchvision's `vit_b_16` / `vit_b_32` / `vit_l_16` / `vit_l_32` / `vit_h_14`.
    pub fn torchvision(name: &str, num_classes: i64) -> Option<Self> {
        let (patch, layers, heads, dim, mlp) = match name {
            "vit_b_16" => (16, 12, 12, 768, 3072),
            "vit_b_32" => (32, 12, 12, 768, 3072),
            "vit_l_16" => (16, 24, 16, 1024, 4096),
            "vit_l_32" => (32, 24, 16, 1024, 4096),
            "vit_h_14" => (14, 32, 16, 1280, 5120),
            _ => return None,
        };
        Some(VitConfig {
            image_size: 224,
            patch_size: patch,
            in_channels: 3,
            num_layers: layers,
            num_heads: heads,
            hidden_dim: dim,
            mlp_dim: mlp,
            num_classes,
            dropout: 0.0,
        })
    }

    pub fn check(&self) -> Result<()> {
        let c = self;
        if [
            c.image_size,
            c.patch_size,
            c.in_channels,
            c.num_layers,
            c.num_heads,
            c.hidden_dim,
            c.mlp_dim,
            c.num_classes,
        ]
        .iter()
        .any(|&v| v < 1)
        {
            crate::bail!("ViT sizes must be positive: {c:?}");
        }
        if c.image_size % c.patch_size != 0 {
            crate::bail!("image size {} is not divisible by the patch size {}", c.image_size, c.patch_size);
        }
        if c.hidden_dim % c.num_heads != 0 {
            crate::bail!(
                "{} heads do not divide the width {}; choose a head count that divides it",
                c.num_heads,
                c.hidden_dim
            );
        }
        Ok(())
    }

    /// Tokens per image: patches plus the class token.
    pub fn seq_len(&self) -> i64 {
        (self.image_size / self.patch_size).pow(2) + 1
    }
}

/// Builds the graph; parameters initialised as torchvision does (Xavier-uniform linear
/// layers, zero classifier, N(0, 0.02) position table, zero class token).
pub fn build(cfg: &VitConfig, seed: u64) -> Result<Graph> {
    cfg.check()?;
    let (d, h) = (cfg.hidden_dim, cfg.num_heads);
    let mut b = GraphBuilder::new();
    let s = cfg.image_size;
    let x = b.input("x", InputKind::Image { channels: cfg.in_channels, height: s, width: s });
    let conv = Conv2d::new(cfg.in_channels, d, cfg.patch_size).stride(cfg.patch_size).bias(true);
    let mut t = b.add("conv_proj", Op::Conv2d(conv), &[x]);
    t = b.add("patches", Op::PatchesToTokens(PatchesToTokens), &[t]);
    t = b.add_keyed("class_token", Op::ClassToken(ClassToken::new(d)), &[t], &[(Role::Weight, "class_token")]);
    t = b.add_keyed(
        "encoder.pos_embedding",
        Op::PositionEmbedding(PositionEmbedding { max_len: cfg.seq_len(), dim: d, leading_one: true }),
        &[t],
        &[(Role::Weight, "encoder.pos_embedding")],
    );
    t = b.add("encoder.dropout", Op::Dropout(Dropout { p: cfg.dropout }), &[t]);
    for i in 0..cfg.num_layers {
        let p = format!("encoder.layers.encoder_layer_{i}");
        let input = t;
        let mut y = b.add(format!("{p}.ln_1"), Op::LayerNorm(LayerNorm { dim: d, eps: 1e-6 }), &[t]);
        let in_w = format!("{p}.self_attention.in_proj_weight");
        let in_b = format!("{p}.self_attention.in_proj_bias");
        y = b.add_keyed(
            format!("{p}.self_attention.in_proj"),
            Op::Linear(Linear { in_features: d, out_features: 3 * d, bias: true }),
            &[y],
            &[(Role::Weight, &in_w), (Role::Bias, &in_b)],
        );
        y = b.add(
            format!("{p}.self_attention"),
            Op::Attention(Attention { heads: h, head_dim: d / h, packed: true }),
            &[y],
        );
        y = b.add(
            format!("{p}.self_attention.out_proj"),
            Op::Linear(Linear { in_features: d, out_features: d, bias: true }),
            &[y],
        );
        y = b.add(format!("{p}.dropout"), Op::Dropout(Dropout { p: cfg.dropout }), &[y]);
        let x1 = b.add(format!("{p}.add_1"), Op::Add(Add), &[y, input]);
        let mut z = b.add(format!("{p}.ln_2"), Op::LayerNorm(LayerNorm { dim: d, eps: 1e-6 }), &[x1]);
        z = b.add(
            format!("{p}.mlp.0"),
            Op::Linear(Linear { in_features: d, out_features: cfg.mlp_dim, bias: true }),
            &[z],
        );
        z = b.add(format!("{p}.mlp.1"), Op::Gelu(Gelu { tanh: false }), &[z]);
        z = b.add(format!("{p}.mlp.2"), Op::Dropout(Dropout { p: cfg.dropout }), &[z]);
        z = b.add(
            format!("{p}.mlp.3"),
            Op::Linear(Linear { in_features: cfg.mlp_dim, out_features: d, bias: true }),
            &[z],
        );
        z = b.add(format!("{p}.mlp.4"), Op::Dropout(Dropout { p: cfg.dropout }), &[z]);
        t = b.add(format!("{p}.add_2"), Op::Add(Add), &[z, x1]);
    }
    t = b.add("encoder.ln", Op::LayerNorm(LayerNorm { dim: d, eps: 1e-6 }), &[t]);
    t = b.add("select_class_token", Op::SelectToken(SelectToken { index: 0 }), &[t]);
    let out =
        b.add("heads.head", Op::Linear(Linear { in_features: d, out_features: cfg.num_classes, bias: true }), &[t]);
    let mut g = b.finish(out, seed)?;
    let mut rng = crate::util::rng(crate::util::derive_seed(seed, "vit-init"));
    for id in 0..g.nodes().len() {
        if let Some(InitHint::Linear { .. }) = g.node(id).op.kind().init_hint() {
            if id == g.output() {
                init::zero(&mut g, id);
            } else {
                init::xavier_uniform_linear(&mut g, id, &mut rng);
            }
        }
    }
    Ok(g)
}
