//! Causal scaled dot-product attention of a decoder (LLaMA, Qwen2, Mistral): inputs q
//! (B, T, heads·head_dim), k and v (B, T, kv_heads·head_dim) and an optional (B, T) padding mask
//! of the keys. Query head h reads key/value head h / (heads / kv_heads) (grouped-query
//! attention; kv_heads = heads is plain multi-head attention); after pruning, the groups may
//! differ in size (`groups`: query heads per key/value head, in order). With `rope_theta`, q and k are
//! rotated by their position first (rotary position embedding, Hugging Face's half-split
//! layout). Output (B, T, heads·head_dim), before the output projection.
//!
//! The rotary embedding lives inside this op rather than as an op of its own: it is a linear
//! map of q and k, and inside the attention its LRP needs no division by the rotated q and k
//! (relevance reaches the unrotated q as q ⊙ Rᵀ(∂)), which a separate node would need.
//!
//! LRP (AttnLRP as LXT applies it to LLaMA): the q·kᵀ and A·V products split relevance uniformly
//! between their operands, the softmax follows the configured [`SoftmaxRule`], the rotation
//! passes relevance through as the linear map it is, and a key/value head collects the
//! relevance of every query head of its group.

use super::attention::SoftmaxRule;
use super::{at_least, check_non_negative, check_range, check_size, Arity, ChannelMap, Ctx, OpKind, Units};
use super::{Attr, LrpContext, OnnxContext, FLOAT};
use crate::error::Result;
use crate::graph::MAX_FIELD;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// What a masked score becomes before the softmax (as Hugging Face does).
const MASK_BIAS: f64 = -3.402_823_466e38;

/// A decoder attention layer's head layout and position encoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CausalAttention {
    /// Query heads.
    pub heads: i64,
    /// Key/value heads; divides `heads`.
    pub kv_heads: i64,
    pub head_dim: i64,
    /// Base of the rotary embedding's frequencies (None: no rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Query heads of each key/value head, in order, where they differ (pruned groups); empty:
    /// heads / kv_heads each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<i64>,
}

/// The tensors of one attention evaluation that LRP reads whole (the scores are built per
/// chunk of queries: [`CausalAttention::scores`]).
struct Parts {
    /// Rotated queries (B, H, T, dh) and keys/values repeated per query head (B, H, T, dh).
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Where a query may look: (1 or B, 1, T, T) booleans.
    allowed: Tensor,
    /// cos and sin of the rotation, (T, dh), when there is one.
    rot: Option<(Tensor, Tensor)>,
}

/// Score elements (batch × heads × queries × keys) LRP builds at once: longer sequences are
/// attributed in chunks of query rows, each row's softmax being its own (2²⁴ elements: 64 MB in
/// float32, a whole 1,024-token sequence of a 9-head layer).
const SCORE_CHUNK: i64 = 1 << 24;

impl CausalAttention {
    /// Query heads of each key/value head.
    pub fn group_sizes(&self) -> Vec<i64> {
        if self.groups.is_empty() {
            vec![if self.kv_heads > 0 { self.heads / self.kv_heads } else { 0 }; self.kv_heads.max(0) as usize]
        } else {
            self.groups.clone()
        }
    }

    /// The key/value head each query head reads.
    fn kv_index(&self) -> Vec<i64> {
        self.group_sizes().iter().enumerate().flat_map(|(j, &g)| std::iter::repeat_n(j as i64, g as usize)).collect()
    }

    /// Whether every key/value head serves the same number of query heads.
    fn uniform(&self) -> bool {
        self.groups.windows(2).all(|w| w[0] == w[1])
    }

    /// (B, T, n·dh) → (B, n, T, dh).
    fn split(&self, x: &Tensor, n: i64, what: &str) -> Result<Tensor> {
        let s = x.size();
        if s.len() != 3 || s[2] != n * self.head_dim {
            crate::bail!("{what} input has shape {s:?}, expected (batch, tokens, {})", n * self.head_dim);
        }
        Ok(x.f_reshape([s[0], s[1], n, self.head_dim])?.f_transpose(1, 2)?)
    }

    /// cos and sin of position · frequency, (T, dh), in the float type `kind` (frequencies in
    /// float32 or wider, as transformers computes them).
    fn rotation(&self, tokens: i64, kind: Kind, device: tch::Device) -> Result<Option<(Tensor, Tensor)>> {
        let Some(theta) = self.rope_theta else { return Ok(None) };
        let wide = if kind == Kind::Double { Kind::Double } else { Kind::Float };
        let half = self.head_dim / 2;
        let exps = Tensor::f_arange_start_step(0, 2 * half, 2, (Kind::Int64, device))?
            .f_to_kind(wide)?
            .f_div_scalar(self.head_dim as f64)?;
        let inv_freq = Tensor::f_full([half], theta, (wide, device))?.f_pow(&exps)?.f_reciprocal()?;
        let pos = Tensor::f_arange(tokens, (Kind::Int64, device))?.f_to_kind(wide)?;
        let freqs = pos.f_unsqueeze(1)?.f_mul(&inv_freq.f_unsqueeze(0)?)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        Ok(Some((emb.f_cos()?.f_to_kind(kind)?, emb.f_sin()?.f_to_kind(kind)?)))
    }

    fn parts(&self, xs: &[&Tensor]) -> Result<Parts> {
        let q = self.split(xs[0], self.heads, "q")?;
        let k = self.split(xs[1], self.kv_heads, "k")?;
        let v = self.split(xs[2], self.kv_heads, "v")?;
        let tokens = q.size()[2];
        let rot = self.rotation(tokens, q.kind(), q.device())?;
        let (q, k) = match &rot {
            Some((c, s)) => (rotate(&q, c, s)?, rotate(&k, c, s)?),
            None => (q, k),
        };
        let (k, v) = (self.repeat(&k)?, self.repeat(&v)?);
        let allowed = self.allowed(tokens, xs.get(3).copied(), q.device())?;
        Ok(Parts { q, k, v, allowed, rot })
    }

    /// The scaled, masked scores x and their softmax for the queries `q` (B, H, rows, dh) whose
    /// keys `allowed` (…, rows, T) says, built in place: these T-wide tensors dominate the cost
    /// of LRP through attention.
    fn scores(&self, q: &Tensor, k: &Tensor, allowed: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut x = q.f_matmul(&k.f_transpose(-2, -1)?)?;
        let _ = x.f_div_scalar_((self.head_dim as f64).sqrt())?.f_masked_fill_(&allowed.f_logical_not()?, MASK_BIAS)?;
        // Softmax in float32 or wider, as transformers does.
        let wide = if x.kind() == Kind::Double { Kind::Double } else { Kind::Float };
        let probs = x.f_softmax(-1, wide)?.f_to_kind(x.kind())?;
        Ok((x, probs))
    }

    /// LRP through the op ([`OpKind::lrp`]) with the scores built `rows` query rows at a time
    /// (any chunking gives the same relevances).
    fn lrp_by_rows(&self, cx: &dyn LrpContext, xs: &[&Tensor], r: &Tensor, rows: i64) -> Result<Vec<Option<Tensor>>> {
        let p = self.parts(xs)?;
        let rh = self.split(r, self.heads, "relevance")?;
        let softmax = cx.softmax_rule();
        let cp = softmax == SoftmaxRule::Cp;
        let scale = (self.head_dim as f64).sqrt();
        let s = p.q.size();
        let rows = rows.clamp(1, s[2].max(1));
        // Per query row everything is local but the sums over rows into v and k.
        let (mut va, mut gq_parts, mut gk) = (p.v.f_zeros_like()?, Vec::new(), p.k.f_zeros_like()?);
        let mut start = 0;
        while start < s[2] {
            let n = rows.min(s[2] - start);
            let q_c = p.q.f_narrow(2, start, n)?;
            let allowed_c = p.allowed.f_narrow(2, start, n)?;
            let (x, probs) = self.scores(&q_c, &p.k, &allowed_c)?;
            let ctx = probs.f_matmul(&p.v)?;
            // A·V: uniform split between A and V (denominator 2·ctx), or all to V under CP.
            let g =
                rh.f_narrow(2, start, n)?.f_div(&cx.stabilize(&ctx.f_mul_scalar(if cp { 1.0 } else { 2.0 })?)?)?;
            let _ = va.f_add_(&probs.f_transpose(-2, -1)?.f_matmul(&g)?)?;
            let mut ra = g.f_matmul(&p.v.f_transpose(-2, -1)?)?;
            let _ = ra.f_mul_(&probs)?;
            // q·kᵀ: uniform split (denominator 2·z); g_q, g_k are ∂/∂q and ∂/∂k of Σ R/z, with
            // gz = R/(2z)/√dh (the 1/√dh scaling is linear and keeps relevance); masked scores
            // carry none.
            let gz = if softmax.factor_in_place(&probs, &mut ra)? {
                // AttnLRP: the relevance at the scores is x ⊙ h, and an allowed score x is z,
                // so R/2z is h/2.
                let _ = ra.f_mul_(&allowed_c.f_to_kind(ra.kind())?.f_mul_scalar(0.5 / scale)?)?;
                Some(ra)
            } else {
                match softmax.apply(&x, &probs, &ra, cx.stabilizer())? {
                    None => None,
                    Some(rx) => {
                        let rz = rx.f_mul(&allowed_c.f_to_kind(rx.kind())?)?;
                        // z is x where allowed; elsewhere rz is 0, and 1 keeps the division finite.
                        let z = x.f_masked_fill(&allowed_c.f_logical_not()?, 1.0)?;
                        Some(rz.f_div(&cx.stabilize(&z.f_mul_scalar(2.0)?)?)?.f_div_scalar(scale)?)
                    }
                }
            };
            match gz {
                Some(gz) => {
                    gq_parts.push(gz.f_matmul(&p.k)?);
                    let _ = gk.f_add_(&gz.f_transpose(-2, -1)?.f_matmul(&q_c)?)?;
                }
                None => gq_parts.push(q_c.f_zeros_like()?),
            }
            start += n;
        }
        let gq = Tensor::f_cat(&gq_parts, 2)?;
        let rv = self.gather(&p.v.f_mul(&va)?)?;
        // Back through the repetition of k and the rotation: relevance is x ⊙ ∂ at the
        // unrotated q and k.
        let gk = self.gather(&gk)?;
        let (gq, gk) = match &p.rot {
            Some((c, s)) => (rotate_transposed(&gq, c, s)?, rotate_transposed(&gk, c, s)?),
            None => (gq, gk),
        };
        let q0 = self.split(xs[0], self.heads, "q")?;
        let k0 = self.split(xs[1], self.kv_heads, "k")?;
        let mut v = vec![Some(merge(&q0.f_mul(&gq)?)?), Some(merge(&k0.f_mul(&gk)?)?), Some(merge(&rv)?)];
        if xs.len() > 3 {
            v.push(None); // the mask
        }
        Ok(v)
    }

    /// Where each query may look, (1 or B, 1, T, T) booleans: earlier positions and itself, and
    /// only real keys where a padding mask is given.
    fn allowed(&self, tokens: i64, mask: Option<&Tensor>, device: tch::Device) -> Result<Tensor> {
        let mut allowed =
            Tensor::f_ones([tokens, tokens], (Kind::Bool, device))?.f_tril(0)?.f_unsqueeze(0)?.f_unsqueeze(0)?;
        if let Some(m) = mask {
            allowed = allowed.f_logical_and(&m.f_ne(0)?.f_unsqueeze(1)?.f_unsqueeze(1)?)?;
        }
        Ok(allowed)
    }

    /// (B, KV, T, dh) → (B, H, T, dh): each key/value head once per query head of its group.
    fn repeat(&self, t: &Tensor) -> Result<Tensor> {
        if self.kv_heads == self.heads {
            return Ok(t.shallow_clone());
        }
        let index = Tensor::from_slice(&self.kv_index()).f_to_device(t.device())?;
        Ok(t.f_index_select(1, &index)?)
    }

    /// (B, H, T, dh) → (B, KV, T, dh): the sum over each group's query heads (the transpose of
    /// [`Self::repeat`]).
    fn gather(&self, t: &Tensor) -> Result<Tensor> {
        if self.kv_heads == self.heads {
            return Ok(t.shallow_clone());
        }
        let s = t.size();
        let index = Tensor::from_slice(&self.kv_index()).f_to_device(t.device())?;
        let zeros = Tensor::f_zeros([s[0], self.kv_heads, s[2], s[3]], (t.kind(), t.device()))?;
        Ok(zeros.f_index_add(1, &index, t)?)
    }
}

/// x·cos + rotate_half(x)·sin over the last dimension, rotate_half(x) = (−x₂, x₁).
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.size()[3] / 2;
    let (x1, x2) = (x.f_narrow(-1, 0, half)?, x.f_narrow(-1, half, half)?);
    let turned = Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?;
    Ok(x.f_mul(cos)?.f_add(&turned.f_mul(sin)?)?)
}

/// The transpose of [`rotate`] applied to g: g·cos + rotate_halfᵀ(g·sin), rotate_halfᵀ(y) =
/// (y₂, −y₁).
fn rotate_transposed(g: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = g.size()[3] / 2;
    let gs = g.f_mul(sin)?;
    let (y1, y2) = (gs.f_narrow(-1, 0, half)?, gs.f_narrow(-1, half, half)?);
    Ok(g.f_mul(cos)?.f_add(&Tensor::f_cat(&[&y2, &y1.f_neg()?], -1)?)?)
}

/// (B, H, T, dh) → (B, T, H·dh).
fn merge(x: &Tensor) -> Result<Tensor> {
    let s = x.size();
    Ok(x.f_transpose(1, 2)?.f_reshape([s[0], s[2], s[1] * s[3]])?)
}

impl OpKind for CausalAttention {
    fn describe(&self) -> String {
        let rope = self.rope_theta.map(|t| format!(", rotary θ = {t}")).unwrap_or_default();
        let groups = if self.uniform() { String::new() } else { format!(" (groups {:?})", self.groups) };
        format!("{} heads × {} on {} key/value heads{groups}, causal{rope}", self.heads, self.head_dim, self.kv_heads)
    }
    fn arity(&self) -> Arity {
        Arity::Between(3, 4)
    }
    fn check(&self) -> std::result::Result<(), String> {
        // Pruning may remove every head.
        check_range("heads", self.heads, 0, MAX_FIELD)?;
        check_range("kv_heads", self.kv_heads, 0, MAX_FIELD)?;
        check_size("head_dim", self.head_dim)?;
        check_range("heads·head_dim", self.heads * self.head_dim, 0, MAX_FIELD)?;
        if self.groups.is_empty() {
            if (self.kv_heads == 0) != (self.heads == 0) || (self.kv_heads > 0 && self.heads % self.kv_heads != 0) {
                return Err(format!("{} key/value heads do not divide {} query heads", self.kv_heads, self.heads));
            }
        } else if self.groups.len() as i64 != self.kv_heads
            || self.groups.iter().any(|&g| g < 1)
            || self.groups.iter().sum::<i64>() != self.heads
        {
            return Err(format!(
                "groups {:?} must give each of the {} key/value heads at least one of the {} query heads",
                self.groups, self.kv_heads, self.heads
            ));
        }
        if let Some(t) = self.rope_theta {
            check_non_negative("rope_theta", t)?;
            if self.head_dim % 2 != 0 {
                return Err(format!("a rotary embedding needs an even head_dim, not {}", self.head_dim));
            }
        }
        Ok(())
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        for &r in &inputs[..3] {
            at_least(3, r)?;
        }
        Ok(3)
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        if self.heads == 0 {
            return Ok(xs[0].f_narrow(-1, 0, 0)?);
        }
        // libtorch's fused attention: what `parts` computes, without the (T, T) tensors kept.
        // The mask is additive (0 or MASK_BIAS) rather than boolean, so that a query with no
        // allowed key averages all values, as `parts` does, instead of giving NaN.
        let q = self.split(xs[0], self.heads, "q")?;
        let k = self.split(xs[1], self.kv_heads, "k")?;
        let v = self.split(xs[2], self.kv_heads, "v")?;
        let tokens = q.size()[2];
        let (q, k) = match self.rotation(tokens, q.kind(), q.device())? {
            Some((c, s)) => (rotate(&q, &c, &s)?, rotate(&k, &c, &s)?),
            None => (q, k),
        };
        let bias = self.allowed(tokens, xs.get(3).copied(), q.device())?.f_logical_not()?;
        let bias = Tensor::f_zeros(bias.size(), (q.kind(), q.device()))?.f_masked_fill(&bias, MASK_BIAS)?;
        // Equal groups: libtorch repeats the key/value heads itself; unequal ones are spelled out.
        let (k, v) = if self.uniform() { (k, v) } else { (self.repeat(&k)?, self.repeat(&v)?) };
        let gqa = self.uniform() && self.kv_heads != self.heads;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let ctx = Tensor::f_scaled_dot_product_attention(&q, &k, &v, Some(&bias), 0.0, false, scale, gqa)?;
        merge(&ctx)
    }
    fn macs(&self, _inputs: &[Vec<i64>], output: &[i64]) -> i64 {
        let t = output[1];
        2 * self.heads * t * t * self.head_dim
    }
    fn channels(&self) -> ChannelMap {
        ChannelMap::New
    }
    fn channel_block(&self) -> Option<String> {
        Some("it feeds or leaves an attention layer (prune heads instead)".into())
    }
    fn units(&self) -> Option<Units> {
        // The query heads; a key/value head goes once no query head reads it.
        Some(Units::Heads { heads: self.heads, head_dim: self.head_dim })
    }
    fn reindex(&mut self, output: Option<&[i64]>, _input: Option<&[i64]>) {
        let Some(kept) = output else { return };
        let index = self.kv_index();
        let heads: Vec<i64> = kept.iter().filter(|&&c| c % self.head_dim == 0).map(|&c| c / self.head_dim).collect();
        let mut sizes = vec![0i64; self.kv_heads.max(0) as usize];
        for &h in &heads {
            if let Some(&j) = index.get(h as usize) {
                sizes[j as usize] += 1;
            }
        }
        sizes.retain(|&g| g > 0);
        self.heads = heads.len() as i64;
        self.kv_heads = sizes.len() as i64;
        self.groups = if sizes.windows(2).all(|w| w[0] == w[1]) { Vec::new() } else { sizes };
    }
    fn unit_blocks(&self) -> Vec<usize> {
        self.group_sizes().iter().map(|&g| g as usize).collect()
    }
    fn unit_positions(&self, span: &super::UnitSpan, units: i64, which: &[i64]) -> Vec<i64> {
        if !span.shared {
            return span.positions(units, which);
        }
        // The key/value heads that a kept query head still reads, in order.
        let index = self.kv_index();
        let mut kv: Vec<i64> = which.iter().filter_map(|&u| index.get(u as usize).copied()).collect();
        kv.sort_unstable();
        kv.dedup();
        kv.iter().flat_map(|&j| j * self.head_dim..(j + 1) * self.head_dim).collect()
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        if self.heads == 0 {
            let mut v: Vec<Option<Tensor>> = xs[..3].iter().map(|t| t.f_zeros_like().ok()).collect();
            v.extend(xs[3..].iter().map(|_| None));
            return Ok(v);
        }
        let s = xs[0].size();
        let rows = SCORE_CHUNK / (s[0] * self.heads * s[1]).max(1);
        self.lrp_by_rows(cx, xs, r, rows)
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let q = cx.x(0);
        if self.heads == 0 {
            // No heads left: the context is empty, [batch, tokens, 0], as in the forward pass.
            let zero = cx.ints("zero", &[0])?;
            let axis = cx.ints("axis", &[2])?;
            return Ok(cx.output("Slice", &[&q, &zero, &zero, &axis], &[]));
        }
        let (k, v) = (cx.x(1), cx.x(2));
        let dh = self.head_dim;
        let heads_of = |cx: &mut dyn OnnxContext, t: &str, n: i64| -> Result<String> {
            let shape = cx.ints("heads", &[0, 0, n, dh])?;
            let r = cx.step("Reshape", &[t, &shape], &[]);
            Ok(cx.step("Transpose", &[&r], &[("perm", Attr::Ints(&[0, 2, 1, 3]))]))
        };
        let mut qh = heads_of(cx, &q, self.heads)?;
        let mut kh = heads_of(cx, &k, self.kv_heads)?;
        let vh = heads_of(cx, &v, self.kv_heads)?;
        // Positions 0..T and the (T, T) causal pattern, from q's shape.
        let shape = cx.step("Shape", &[&q], &[]);
        let one_idx = cx.ints("one", &[1])?;
        let t1 = cx.step("Gather", &[&shape, &one_idx], &[("axis", Attr::Int(0))]);
        if let Some(theta) = self.rope_theta {
            let half = dh / 2;
            let inv: Vec<f32> = (0..half).map(|i| (1.0 / theta.powf((2 * i) as f64 / dh as f64)) as f32).collect();
            // Initializer names are the model's: one per attention layer.
            let named = |cx: &mut dyn OnnxContext, base: &str, t: &Tensor| {
                let name = cx.fresh(base);
                cx.tensor(&name, t)
            };
            let inv = named(cx, "inv_freq", &Tensor::from_slice(&inv).reshape([1, half]))?;
            let t = cx.step("Squeeze", &[&t1], &[]);
            let zero = named(cx, "zero", &Tensor::from_slice(&[0i64]).reshape([] as [i64; 0]))?;
            let step = named(cx, "one", &Tensor::from_slice(&[1i64]).reshape([] as [i64; 0]))?;
            let pos = cx.step("Range", &[&zero, &t, &step], &[]);
            let pos = cx.step("Cast", &[&pos], &[("to", Attr::Int(FLOAT))]);
            let axes = cx.ints("axes", &[1])?;
            let pos = cx.step("Unsqueeze", &[&pos, &axes], &[]);
            let freqs = cx.step("Mul", &[&pos, &inv], &[]);
            let emb = cx.step("Concat", &[&freqs, &freqs], &[("axis", Attr::Int(-1))]);
            let cos = cx.step("Cos", &[&emb], &[]);
            let sin = cx.step("Sin", &[&emb], &[]);
            let lo = cx.ints("lo", &[0])?;
            let mid = cx.ints("mid", &[half])?;
            let hi = cx.ints("hi", &[dh])?;
            let last = cx.ints("last", &[-1])?;
            let rotated = |cx: &mut dyn OnnxContext, x: &str| {
                let x1 = cx.step("Slice", &[x, &lo, &mid, &last], &[]);
                let x2 = cx.step("Slice", &[x, &mid, &hi, &last], &[]);
                let neg = cx.step("Neg", &[&x2], &[]);
                let turned = cx.step("Concat", &[&neg, &x1], &[("axis", Attr::Int(-1))]);
                let a = cx.step("Mul", &[x, &cos], &[]);
                let b = cx.step("Mul", &[&turned, &sin], &[]);
                cx.step("Add", &[&a, &b], &[])
            };
            qh = rotated(cx, &qh);
            kh = rotated(cx, &kh);
        }
        let index = self.kv_index();
        let repeat = |cx: &mut dyn OnnxContext, t: &str| -> Result<String> {
            if self.kv_heads == self.heads {
                return Ok(t.to_string());
            }
            let idx = cx.ints("kv_index", &index)?;
            Ok(cx.step("Gather", &[t, &idx], &[("axis", Attr::Int(1))]))
        };
        let kh = repeat(cx, &kh)?;
        let vh = repeat(cx, &vh)?;
        let kt = cx.step("Transpose", &[&kh], &[("perm", Attr::Ints(&[0, 1, 3, 2]))]);
        let scores = cx.step("MatMul", &[&qh, &kt], &[]);
        let scale = cx.scalar("scale", (dh as f32).sqrt())?;
        let scores = cx.step("Div", &[&scores, &scale], &[]);
        // allowed = lower triangle (· key mask); scores where allowed, MASK_BIAS elsewhere.
        let tt = cx.step("Concat", &[&t1, &t1], &[("axis", Attr::Int(0))]);
        let ones = cx.step("ConstantOfShape", &[&tt], &[]);
        let ones = cx.step("Cast", &[&ones], &[("to", Attr::Int(FLOAT))]);
        let one = cx.scalar("one", 1.0)?;
        let ones = cx.step("Add", &[&ones, &one], &[]);
        let mut allowed = cx.step("Trilu", &[&ones], &[("upper", Attr::Int(0))]);
        if cx.arity() > 3 {
            let m = cx.x(3);
            let mf = cx.step("Cast", &[&m], &[("to", Attr::Int(FLOAT))]);
            let axes = cx.ints("axes", &[1, 2])?;
            let mf = cx.step("Unsqueeze", &[&mf, &axes], &[]);
            allowed = cx.step("Mul", &[&allowed, &mf], &[]);
        }
        let half = cx.scalar("half", 0.5)?;
        let allowed = cx.step("Greater", &[&allowed, &half], &[]);
        let big = cx.scalar("mask_bias", MASK_BIAS as f32)?;
        let scores = cx.step("Where", &[&allowed, &scores, &big], &[]);
        let probs = cx.step("Softmax", &[&scores], &[("axis", Attr::Int(-1))]);
        let ctx = cx.step("MatMul", &[&probs, &vh], &[]);
        let ctx = cx.step("Transpose", &[&ctx], &[("perm", Attr::Ints(&[0, 2, 1, 3]))]);
        let merge = cx.ints("merge", &[0, 0, self.heads * dh])?;
        Ok(cx.output("Reshape", &[&ctx, &merge], &[]))
    }

    fn attends(&self) -> bool {
        true
    }
    fn unit_spans(&self) -> Vec<super::UnitSpan> {
        use super::{UnitAt, UnitSpan};
        let head = |at, silences, shared| UnitSpan { at, size: self.head_dim, parts: 1, silences, shared };
        // As in [`super::Attention`]: the output projection's columns silence a head. Key and
        // value rows are shared by a group of query heads unless each has its own.
        let shared = self.kv_heads != self.heads;
        vec![
            head(UnitAt::Readers, true, false),
            head(UnitAt::Input(0), false, false),
            head(UnitAt::Input(1), false, shared),
            head(UnitAt::Input(2), false, shared),
            head(UnitAt::Output, false, false),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AffineOp, GateRule, Role};
    use super::*;

    /// An LRP context with only what attention reads: the softmax rule and the stabiliser.
    struct Cx(SoftmaxRule);

    impl LrpContext for Cx {
        fn param(&self, _: Role) -> Result<&Tensor> {
            unreachable!("attention has no parameters")
        }
        fn stabilizer(&self) -> f64 {
            1e-9
        }
        fn stabilize(&self, z: &Tensor) -> Result<Tensor> {
            let sign = z.f_ge(0.0)?.f_to_kind(z.kind())?.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?;
            Ok(z.f_add(&sign.f_mul_scalar(1e-9)?)?)
        }
        fn gate_rule(&self) -> GateRule {
            GateRule::default()
        }
        fn softmax_rule(&self) -> SoftmaxRule {
            self.0
        }
        fn norm_rule(
            &self,
            _: &Tensor,
            _: &Tensor,
            _: &Tensor,
            _: &dyn Fn(&Tensor) -> Result<Tensor>,
        ) -> Result<Tensor> {
            unreachable!()
        }
        fn affine_rule(&self, _: &dyn AffineOp, _: &Tensor, _: &Tensor, _: &Tensor) -> Result<Tensor> {
            unreachable!()
        }
    }

    /// Long sequences are attributed a few query rows at a time; the relevances do not depend
    /// on the chunking, for every softmax rule, with grouped heads, rotation and padding.
    #[test]
    fn relevance_does_not_depend_on_the_query_chunks() {
        tch::manual_seed(3);
        let op = CausalAttention { heads: 4, kv_heads: 2, head_dim: 8, rope_theta: Some(10_000.0), groups: vec![3, 1] };
        let f = (Kind::Double, tch::Device::Cpu);
        let (q, k, v) = (Tensor::randn([2, 10, 32], f), Tensor::randn([2, 10, 16], f), Tensor::randn([2, 10, 16], f));
        let mask = Tensor::from_slice(&[1i64; 20]).view([2, 10]);
        let _ = mask.get(1).narrow(0, 7, 3).fill_(0);
        let r = Tensor::randn([2, 10, 32], f);
        let xs = [&q, &k, &v, &mask];
        for rule in [SoftmaxRule::AttnLrp, SoftmaxRule::Zplus, SoftmaxRule::Cp] {
            let whole = op.lrp_by_rows(&Cx(rule), &xs, &r, 10).unwrap();
            for rows in [1, 3, 4] {
                let chunked = op.lrp_by_rows(&Cx(rule), &xs, &r, rows).unwrap();
                for (i, (a, b)) in whole.iter().zip(&chunked).enumerate() {
                    match (a, b) {
                        (Some(a), Some(b)) => {
                            assert!(a.allclose(b, 1e-12, 1e-12, false), "{rule:?}, {rows} rows, input {i}")
                        }
                        (None, None) => {}
                        _ => panic!("{rule:?}: input {i} differs in having relevance"),
                    }
                }
            }
        }
    }
}
