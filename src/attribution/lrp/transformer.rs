//! LRP through transformer layers (AttnLRP, Achtibat et al. 2024; the value path of CP-LRP),
//! in zennit's convention: relevance, not gradient, is propagated.
//!
//! - LayerNorm: the standard deviation is a constant (the AttnLRP "identity" treatment), so the
//!   layer is linear in x and relevance follows the ε-rule through it: R_x = x ⊙ Jᵀ(R / y).
//! - GELU, tanh: pass (in `mod.rs`).
//! - attention: the matmuls q·kᵀ and A·V split relevance uniformly between their two
//!   operands (each gets half: the denominator is 2·z); the softmax follows a
//!   [`SoftmaxRule`]. Under CP-LRP A is a constant, A·V is linear in V, and V gets all.
//! - additions of learned tables (positions, segments) and the class token: the table keeps
//!   its share (it acts as a bias); token selection and mean pooling route / split relevance.

use super::rules::stabilize;
use super::{LrpConfig, SoftmaxRule};
use crate::error::Result;
use crate::graph::forward::{key_mask_bias, merge_heads, split_attention_inputs, split_heads};
use crate::graph::{Graph, NodeId, Op};
use tch::Tensor;

/// Relevance at the inputs of a transformer node.
pub fn propagate(
    graph: &Graph,
    id: NodeId,
    xs: &[&Tensor],
    out: &Tensor,
    r: &Tensor,
    config: &LrpConfig,
) -> Result<Vec<Option<Tensor>>> {
    let node = graph.node(id);
    let eps = config.stabilizer;
    let x = xs[0];
    Ok(match &node.op {
        Op::LayerNorm { eps: ln_eps, .. } => {
            let k = x.kind();
            let mean = x.f_mean_dim(-1, true, k)?;
            let var = x.f_sub(&mean)?.f_square()?.f_mean_dim(-1, true, k)?;
            let sigma = var.f_add_scalar(*ln_eps)?.f_sqrt()?;
            let u = r.f_div(&stabilize(out, eps)?)?.f_mul(graph.require_param(id, "weight")?)?.f_div(&sigma)?;
            let centred = u.f_sub(&u.f_mean_dim(-1, true, k)?)?;
            vec![Some(x.f_mul(&centred)?)]
        }
        Op::PositionEmbedding { .. } | Op::SegmentEmbedding { .. } => {
            vec![Some(x.f_mul(&r.f_div(&stabilize(out, eps)?)?)?)]
        }
        Op::Embedding { .. } => vec![None],
        Op::ClassToken { .. } => vec![Some(r.f_narrow(1, 1, r.size()[1] - 1)?)],
        Op::PatchesToTokens => vec![Some(r.f_transpose(1, 2)?.f_reshape(x.size())?)],
        Op::SelectToken { index } => {
            let z = x.f_zeros_like()?;
            z.f_select(1, *index)?.f_copy_(r)?;
            vec![Some(z)]
        }
        Op::MeanPool => {
            let k = x.kind();
            let t = x.size()[1];
            let w = match xs.get(1) {
                Some(m) => {
                    let m = m.f_to_kind(k)?;
                    m.f_div(&m.f_sum_dim_intlist(1, true, k)?.f_clamp_min(1e-9)?)?
                }
                None => Tensor::f_full([x.size()[0], t], 1.0 / t as f64, (k, x.device()))?,
            };
            let s = r.f_div(&stabilize(out, eps)?)?;
            let rx = x.f_mul(&s.f_unsqueeze(1)?)?.f_mul(&w.f_unsqueeze(-1)?)?;
            let mut v = vec![Some(rx)];
            if xs.len() > 1 {
                v.push(None);
            }
            v
        }
        Op::Attention { heads, head_dim, packed } => attention(xs, r, *heads, *head_dim, *packed, config)?,
        _ => crate::bail!("no LRP rule for layer kind `{}`", node.op.kind_name()),
    })
}

/// Relevance at q, k, v (and none at the mask) of an attention node.
fn attention(
    xs: &[&Tensor],
    r: &Tensor,
    heads: i64,
    dh: i64,
    packed: bool,
    config: &LrpConfig,
) -> Result<Vec<Option<Tensor>>> {
    let eps = config.stabilizer;
    let (q, k, v, mask) = split_attention_inputs(xs, packed, heads * dh)?;
    let (qh, kh, vh) = (split_heads(&q, heads, dh)?, split_heads(&k, heads, dh)?, split_heads(&v, heads, dh)?);
    let scale = (dh as f64).sqrt();
    let z = qh.f_matmul(&kh.f_transpose(-2, -1)?)?.f_div_scalar(scale)?; // scaled scores
    let x = match mask {
        Some(m) => z.f_add(&key_mask_bias(m, z.kind())?)?,
        None => z.shallow_clone(),
    };
    let probs = x.f_softmax(-1, x.kind())?;
    let ctx = probs.f_matmul(&vh)?;
    let rh = split_heads(r, heads, dh)?;
    let cp = config.softmax == SoftmaxRule::Cp;
    // A·V: uniform split between A and V (denominator 2·ctx), or all to V under CP.
    let g = rh.f_div(&stabilize(&ctx.f_mul_scalar(if cp { 1.0 } else { 2.0 })?, eps)?)?;
    let rv = vh.f_mul(&probs.f_transpose(-2, -1)?.f_matmul(&g)?)?;
    let (rq, rk) = match config.softmax.apply(&x, &probs, &probs.f_mul(&g.f_matmul(&vh.f_transpose(-2, -1)?)?)?, eps)? {
        None => (qh.f_zeros_like()?, kh.f_zeros_like()?),
        Some(rx) => {
            // Masked keys carry no relevance; the 1/√dh scaling is linear and keeps it.
            let rz = match mask {
                Some(m) => rx.f_mul(&m.f_to_kind(rx.kind())?.f_unsqueeze(1)?.f_unsqueeze(1)?)?,
                None => rx,
            };
            // q·kᵀ: uniform split (denominator 2·z).
            let gz = rz.f_div(&stabilize(&z.f_mul_scalar(2.0)?, eps)?)?.f_div_scalar(scale)?;
            (qh.f_mul(&gz.f_matmul(&kh)?)?, kh.f_mul(&gz.f_transpose(-2, -1)?.f_matmul(&qh)?)?)
        }
    };
    let (rq, rk, rv) = (merge_heads(&rq)?, merge_heads(&rk)?, merge_heads(&rv)?);
    Ok(if packed {
        let mut v = vec![Some(Tensor::f_cat(&[rq, rk, rv], -1)?)];
        if xs.len() > 1 {
            v.push(None);
        }
        v
    } else {
        let mut v = vec![Some(rq), Some(rk), Some(rv)];
        if xs.len() > 3 {
            v.push(None);
        }
        v
    })
}
