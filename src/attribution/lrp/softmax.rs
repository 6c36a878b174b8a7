//! How relevance passes the attention softmax s = softmax(x) (per query row, over keys).
//!
//! - `attn_lrp` (AttnLRP, Achtibat et al. 2024): R_x = x ⊙ (R − s ⊙ Σ R) — input × gradient
//!   of the softmax; the linearisation's implicit bias absorbs relevance.
//! - `cp` (CP-LRP, Ali et al. 2022): the attention weights are constants; no relevance
//!   reaches x (the value path carries all of it, see `transformer.rs`).
//! - `zplus` / `zplus_bias` (the z⁺ variants of Hatefi et al. 2024's released code): the
//!   softmax is linearised at x with contributions c_ab = ∂s_b/∂x_a · x_a, only positive
//!   contributions are kept, and R_b is split in proportion to them:
//!   R_x_a = Σ_b c⁺_ab R_b / (z_b + ε), z_b = Σ_a c⁺_ab (`zplus`) or
//!   z_b = Σ_a c⁺_ab + (s_b − Σ_a c_ab)⁺ (`zplus_bias`: the virtual bias takes its share).
//!   With ∂s_b/∂x_a = s_b(δ_ab − s_a) this needs O(T) per row: c⁺_ab = s_a s_b (−x_a)⁺ for
//!   a ≠ b and c⁺_bb = s_b (1 − s_b) x_b⁺.

use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// How relevance passes the attention softmax.
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
