//! Scaled dot-product multi-head attention core: inputs (q, k, v) or one packed (q|k|v) input,
//! plus an optional (B, T) attention mask. Output (B, T, heads·head_dim): the heads' outputs
//! concatenated, before the output projection. Heads are its prunable units; `heads` may differ
//! between layers after surgery, `head_dim` stays.
//!
//! LRP (AttnLRP, Achtibat et al. 2024, in zennit's convention): the matmuls q·kᵀ and A·V split
//! relevance uniformly between their operands (each gets half: the denominator is 2·z); the
//! softmax follows a [`SoftmaxRule`]. Under CP-LRP, A is a constant and V gets all.

use super::{at_least, check_range, check_size, Arity, ChannelMap, Ctx, OpKind, Units};
use super::{Attr, LrpContext, OnnxContext, FLOAT};
use crate::error::Result;
use crate::graph::MAX_FIELD;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Additive bias that removes masked keys from the softmax (as Hugging Face does).
const MASK_BIAS: f64 = -3.402_823_466e38;

/// Attention's head layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attention {
    pub heads: i64,
    pub head_dim: i64,
    pub packed: bool,
}

impl Attention {
    fn width(&self) -> i64 {
        self.heads * self.head_dim
    }

    /// Splits the inputs into (q, k, v, optional mask), each (B, T, width).
    fn split<'a>(&self, xs: &[&'a Tensor]) -> Result<(Tensor, Tensor, Tensor, Option<&'a Tensor>)> {
        let width = self.width();
        if self.packed {
            let qkv = xs[0];
            if qkv.size().last() != Some(&(3 * width)) {
                crate::bail!("packed q|k|v input has last dimension {:?}, expected 3·{width}", qkv.size().last());
            }
            let part = |i: i64| qkv.f_narrow(-1, i * width, width);
            Ok((part(0)?, part(1)?, part(2)?, xs.get(1).copied()))
        } else {
            for t in &xs[..3] {
                if t.size().last() != Some(&width) {
                    crate::bail!("q/k/v input has last dimension {:?}, expected {width}", t.size().last());
                }
            }
            Ok((xs[0].shallow_clone(), xs[1].shallow_clone(), xs[2].shallow_clone(), xs.get(3).copied()))
        }
    }

    /// (B, T, H·dh) → (B, H, T, dh).
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.size();
        Ok(x.f_reshape([s[0], s[1], self.heads, self.head_dim])?.f_transpose(1, 2)?)
    }
}

/// (B, H, T, dh) → (B, T, H·dh).
fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let s = x.size();
    Ok(x.f_transpose(1, 2)?.f_reshape([s[0], s[2], s[1] * s[3]])?)
}

/// (B, T) 0/1 mask → (B, 1, 1, T) additive bias.
fn key_mask_bias(mask: &Tensor, kind: Kind) -> Result<Tensor> {
    let m = mask.f_to_kind(kind)?;
    Ok(m.f_neg()?.f_add_scalar(1.0)?.f_mul_scalar(MASK_BIAS)?.f_unsqueeze(1)?.f_unsqueeze(1)?)
}

impl OpKind for Attention {
    fn describe(&self) -> String {
        format!("{} heads × {}", self.heads, self.head_dim)
    }
    fn arity(&self) -> Arity {
        if self.packed {
            Arity::Between(1, 2)
        } else {
            Arity::Between(3, 4)
        }
    }
    fn check(&self) -> std::result::Result<(), String> {
        // Pruning may remove every head.
        check_range("heads", self.heads, 0, MAX_FIELD)?;
        check_size("head_dim", self.head_dim)?;
        check_range("heads·head_dim", self.heads * self.head_dim, 0, MAX_FIELD)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        let qkv = if self.packed { &inputs[..1] } else { &inputs[..3] };
        for &r in qkv {
            at_least(2, r)?;
        }
        Ok(3)
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let (q, k, v, mask) = self.split(xs)?;
        let (q, k) = (self.split_heads(&q)?, self.split_heads(&k)?);
        let mut scores = q.f_matmul(&k.f_transpose(-2, -1)?)?.f_div_scalar((self.head_dim as f64).sqrt())?;
        if let Some(m) = mask {
            scores = scores.f_add(&key_mask_bias(m, scores.kind())?)?;
        }
        let probs = scores.f_softmax(-1, scores.kind())?;
        merge_heads(&probs.f_matmul(&self.split_heads(&v)?)?)
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
        Some(Units::Heads { heads: self.heads, head_dim: self.head_dim })
    }
    fn resize(&mut self, output: Option<i64>, _input: Option<i64>) {
        if let Some(w) = output {
            self.heads = w / self.head_dim;
        }
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (q, k, v, mask) = self.split(xs)?;
        let (qh, kh, vh) = (self.split_heads(&q)?, self.split_heads(&k)?, self.split_heads(&v)?);
        let scale = (self.head_dim as f64).sqrt();
        let z = qh.f_matmul(&kh.f_transpose(-2, -1)?)?.f_div_scalar(scale)?; // scaled scores
        let x = match mask {
            Some(m) => z.f_add(&key_mask_bias(m, z.kind())?)?,
            None => z.shallow_clone(),
        };
        let probs = x.f_softmax(-1, x.kind())?;
        let ctx = probs.f_matmul(&vh)?;
        let rh = self.split_heads(r)?;
        let softmax = cx.softmax_rule();
        let cp = softmax == SoftmaxRule::Cp;
        // A·V: uniform split between A and V (denominator 2·ctx), or all to V under CP.
        let g = rh.f_div(&cx.stabilize(&ctx.f_mul_scalar(if cp { 1.0 } else { 2.0 })?)?)?;
        let rv = vh.f_mul(&probs.f_transpose(-2, -1)?.f_matmul(&g)?)?;
        let ra = probs.f_mul(&g.f_matmul(&vh.f_transpose(-2, -1)?)?)?;
        let (rq, rk) = match softmax.apply(&x, &probs, &ra, cx.stabilizer())? {
            None => (qh.f_zeros_like()?, kh.f_zeros_like()?),
            Some(rx) => {
                // Masked keys carry no relevance; the 1/√dh scaling is linear and keeps it.
                let rz = match mask {
                    Some(m) => rx.f_mul(&m.f_to_kind(rx.kind())?.f_unsqueeze(1)?.f_unsqueeze(1)?)?,
                    None => rx,
                };
                // q·kᵀ: uniform split (denominator 2·z).
                let gz = rz.f_div(&cx.stabilize(&z.f_mul_scalar(2.0)?)?)?.f_div_scalar(scale)?;
                (qh.f_mul(&gz.f_matmul(&kh)?)?, kh.f_mul(&gz.f_transpose(-2, -1)?.f_matmul(&qh)?)?)
            }
        };
        let (rq, rk, rv) = (merge_heads(&rq)?, merge_heads(&rk)?, merge_heads(&rv)?);
        let mut v = if self.packed {
            vec![Some(Tensor::f_cat(&[rq, rk, rv], -1)?)]
        } else {
            vec![Some(rq), Some(rk), Some(rv)]
        };
        if xs.len() > v.len() {
            v.push(None); // the mask
        }
        Ok(v)
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let x = cx.x(0);
        if self.heads == 0 {
            // No heads left: the context is empty, [batch, tokens, 0], as in relprune's
            // forward; the output projection after it then only adds its bias.
            let zero = cx.ints("zero", &[0])?;
            let axis = cx.ints("axis", &[2])?;
            return Ok(cx.output("Slice", &[&x, &zero, &zero, &axis], &[]));
        }
        let w = self.width();
        let (q, k, v) = if self.packed {
            let axis = cx.ints("axis", &[2])?;
            let mut part = |i: i64| -> Result<String> {
                let s = cx.ints("start", &[i * w])?;
                let e = cx.ints("end", &[(i + 1) * w])?;
                Ok(cx.step("Slice", &[&x, &s, &e, &axis], &[]))
            };
            (part(0)?, part(1)?, part(2)?)
        } else {
            (cx.x(0), cx.x(1), cx.x(2))
        };
        let split = cx.ints("heads", &[0, 0, self.heads, self.head_dim])?;
        let mut heads_of = |t: &str, perm: &[i64]| {
            let r = cx.step("Reshape", &[t, &split], &[]);
            cx.step("Transpose", &[&r], &[("perm", Attr::Ints(perm))])
        };
        let qh = heads_of(&q, &[0, 2, 1, 3]);
        let kt = heads_of(&k, &[0, 2, 3, 1]);
        let vh = heads_of(&v, &[0, 2, 1, 3]);
        let scores = cx.step("MatMul", &[&qh, &kt], &[]);
        let scale = cx.scalar("scale", (self.head_dim as f32).sqrt())?;
        let mut scores = cx.step("Div", &[&scores, &scale], &[]);
        let mask_at = if self.packed { 1 } else { 3 };
        if cx.arity() > mask_at {
            let m = cx.x(mask_at);
            let mf = cx.step("Cast", &[&m], &[("to", Attr::Int(FLOAT))]);
            let one = cx.scalar("one", 1.0)?;
            let inv = cx.step("Sub", &[&one, &mf], &[]);
            let big = cx.scalar("mask_bias", MASK_BIAS as f32)?;
            let bias = cx.step("Mul", &[&inv, &big], &[]);
            let axes = cx.ints("axes", &[1, 2])?;
            let bias = cx.step("Unsqueeze", &[&bias, &axes], &[]);
            scores = cx.step("Add", &[&scores, &bias], &[]);
        }
        let probs = cx.step("Softmax", &[&scores], &[("axis", Attr::Int(-1))]);
        let ctx = cx.step("MatMul", &[&probs, &vh], &[]);
        let ctx = cx.step("Transpose", &[&ctx], &[("perm", Attr::Ints(&[0, 2, 1, 3]))]);
        let merge = cx.ints("merge", &[0, 0, w])?;
        Ok(cx.output("Reshape", &[&ctx, &merge], &[]))
    }

    fn attends(&self) -> bool {
        true
    }
    fn unit_spans(&self) -> Vec<super::UnitSpan> {
        use super::{UnitAt, UnitSpan};
        let head = |at, parts, silences| UnitSpan { at, size: self.head_dim, parts, silences, shared: false };
        // A head is silenced by its columns of the output projection alone (zeroing q or k
        // rows leaves a uniform softmax). Readers first: the weight criterion sums in this order.
        let mut spans = vec![head(UnitAt::Readers, 1, true)];
        if self.packed {
            spans.push(head(UnitAt::Input(0), 3, false));
        } else {
            spans.extend((0..3).map(|k| head(UnitAt::Input(k), 1, false)));
        }
        spans.push(head(UnitAt::Output, 1, false));
        spans
    }
}

/// How relevance passes the attention softmax s = softmax(x) (per query row, over keys).
///
/// - `attn_lrp` (AttnLRP, Achtibat et al. 2024): R_x = x ⊙ (R − s ⊙ Σ R) — input × gradient
///   of the softmax; the linearisation's implicit bias absorbs relevance.
/// - `cp` (CP-LRP, Ali et al. 2022): the attention weights are constants; no relevance
///   reaches x (the value path carries all of it).
/// - `zplus` / `zplus_bias` (the z⁺ variants of Hatefi et al. 2024's released code): the
///   softmax is linearised at x with contributions c_ab = ∂s_b/∂x_a · x_a, only positive
///   contributions are kept, and R_b is split in proportion to them:
///   R_x_a = Σ_b c⁺_ab R_b / (z_b + ε), z_b = Σ_a c⁺_ab (`zplus`) or
///   z_b = Σ_a c⁺_ab + (s_b − Σ_a c_ab)⁺ (`zplus_bias`: the virtual bias takes its share).
///   With ∂s_b/∂x_a = s_b(δ_ab − s_a) this needs O(T) per row: c⁺_ab = s_a s_b (−x_a)⁺ for
///   a ≠ b and c⁺_bb = s_b (1 − s_b) x_b⁺.
///
/// The variants of this op's LRP rule are defined with the op, so the rule and its choices stay
/// in one place and the graph depends on nothing above it; `attribution::lrp` re-exports the
/// type under its old name as part of the LRP configuration, which picks one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftmaxRule {
    /// AttnLRP's softmax rule (input × gradient); relevance reaches q and k.
    #[default]
    AttnLrp,
    /// CP-LRP: attention weights are constants; relevance flows only through the values.
    Cp,
    /// z⁺ linearisation of the softmax, without its virtual bias.
    Zplus,
    /// z⁺ linearisation of the softmax, with its virtual bias absorbing relevance.
    ZplusBias,
}

impl SoftmaxRule {
    pub const ALL: [SoftmaxRule; 4] =
        [SoftmaxRule::AttnLrp, SoftmaxRule::Cp, SoftmaxRule::Zplus, SoftmaxRule::ZplusBias];

    pub fn name(self) -> &'static str {
        match self {
            SoftmaxRule::AttnLrp => "attn_lrp",
            SoftmaxRule::Cp => "cp",
            SoftmaxRule::Zplus => "zplus",
            SoftmaxRule::ZplusBias => "zplus_bias",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| {
            crate::Error::invalid(format!("unknown softmax rule `{s}`; use attn_lrp, cp, zplus or zplus_bias"))
        })
    }

    /// Under AttnLRP the relevance at the softmax input is x ⊙ h with h = r − s ⊙ Σr. For a
    /// caller that divides that relevance by x again (the uniform rule of q·kᵀ, whose z is x),
    /// this turns `r` into h in place and says so (true), sparing the T × T product and the
    /// stabilised division (LXT's gradient form); false, `r` untouched, for the other rules.
    pub fn factor_in_place(self, s: &Tensor, r: &mut Tensor) -> Result<bool> {
        if self != SoftmaxRule::AttnLrp {
            return Ok(false);
        }
        let total = r.f_sum_dim_intlist(-1, true, r.kind())?;
        let _ = r.f_sub_(&s.f_mul(&total)?)?;
        Ok(true)
    }

    /// Relevance at the softmax input `x` given relevance `r` at its output `s` (all
    /// (…, T) over keys); None under CP.
    pub fn apply(self, x: &Tensor, s: &Tensor, r: &Tensor, eps: f64) -> Result<Option<Tensor>> {
        let k = x.kind();
        let sum_last = |t: &Tensor| t.f_sum_dim_intlist(-1, true, k);
        Ok(match self {
            SoftmaxRule::Cp => None,
            SoftmaxRule::AttnLrp => Some(x.f_mul(&r.f_sub(&s.f_mul(&sum_last(r)?)?)?)?),
            SoftmaxRule::Zplus | SoftmaxRule::ZplusBias => {
                let p = x.f_clamp_min(0.0)?;
                let n = x.f_neg()?.f_clamp_min(0.0)?;
                let sn = s.f_mul(&n)?; // s_a (−x_a)⁺, exactly 0 where s is 0 (masked keys)
                let total = sum_last(&sn)?;
                let one_minus_s = s.f_neg()?.f_add_scalar(1.0)?;
                let mut z = s.f_mul(&total.f_sub(&sn)?.f_add(&one_minus_s.f_mul(&p)?)?)?;
                if self == SoftmaxRule::ZplusBias {
                    let sx = sum_last(&s.f_mul(&x.f_where_scalarother(&s.f_gt(0.0)?, 0.0)?)?)?;
                    let bias = s.f_mul(&x.f_neg()?.f_add_scalar(1.0)?.f_add(&sx)?)?;
                    z = z.f_add(&bias.f_clamp_min(0.0)?)?;
                }
                let c = s.f_mul(r)?.f_div(&z.f_add_scalar(eps)?)?;
                let big_c = sum_last(&c)?;
                Some(sn.f_mul(&big_c.f_sub(&c)?)?.f_add(&one_minus_s.f_mul(&p)?.f_mul(&c)?)?)
            }
        })
    }
}
