//! LRP rules for linear layers, numerically as in zennit 0.5.1 (`zennit.rules`): each rule
//! maps the relevance at a layer's output to relevance at its input. A rule acts on one layer.

use super::affine::Affine;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// A rule for Conv2d / Linear layers, with its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// LRP-ε: R_i = x_i Σ_j w_ji R_j / (z_j + ε·sign z_j).
    Epsilon {
        #[serde(default = "default_epsilon")]
        epsilon: f64,
    },
    /// Generalised LRP-γ (positive and negative inputs), weights w + γ·w⁺. Without `gamma`,
    /// the layer's default ([`AffineOp::default_gamma`](crate::graph::ops::AffineOp::default_gamma),
    /// the paper's: 0.25 on convolutions, 0.05 on linear layers).
    Gamma {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gamma: Option<f64>,
    },
    /// z⁺ (= α1β0, the rule of Yeom et al.).
    Zplus,
    /// LRP-αβ with α − β = 1.
    Alphabeta { alpha: f64, beta: f64 },
}

pub fn default_epsilon() -> f64 {
    1e-6
}

/// Default stabiliser of every rule but ε, and of the proportional splits (zennit's default).
pub const STABILIZER: f64 = 1e-6;

impl Rule {
    /// Parses `epsilon[:ε]`, `gamma[:γ]`, `zplus`, `alphabeta[:α:β]` (default 2:1).
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text.trim().split(':');
        let name = parts.next().unwrap_or("").to_ascii_lowercase();
        let nums: Vec<f64> = parts
            .map(|p| {
                p.trim()
                    .parse::<f64>()
                    .map_err(|_| crate::Error::invalid(format!("`{p}` in rule `{text}` is not a number")))
            })
            .collect::<Result<_>>()?;
        let rule = match (name.as_str(), nums.as_slice()) {
            ("epsilon" | "eps", []) => Rule::Epsilon { epsilon: default_epsilon() },
            ("epsilon" | "eps", [e]) => Rule::Epsilon { epsilon: *e },
            ("gamma", []) => Rule::Gamma { gamma: None },
            ("gamma", [g]) => Rule::Gamma { gamma: Some(*g) },
            ("zplus" | "z+" | "alpha1beta0", []) => Rule::Zplus,
            ("alphabeta" | "alpha2beta1", []) => Rule::Alphabeta { alpha: 2.0, beta: 1.0 },
            ("alphabeta", [a, b]) => Rule::Alphabeta { alpha: *a, beta: *b },
            _ => crate::bail!(
                "unknown rule `{text}`; use epsilon[:ε], gamma[:γ], zplus or alphabeta[:α:β] (e.g. gamma:0.25, alphabeta:2:1)"
            ),
        };
        rule.check()?;
        Ok(rule)
    }

    /// Rejects impossible parameters.
    pub fn check(&self) -> Result<()> {
        match *self {
            Rule::Epsilon { epsilon } if !(epsilon > 0.0 && epsilon.is_finite()) => {
                crate::bail!("epsilon must be positive and finite, got {epsilon}")
            }
            Rule::Gamma { gamma: Some(g) } if !(g >= 0.0 && g.is_finite()) => {
                crate::bail!("gamma must be non-negative and finite, got {g}")
            }
            Rule::Alphabeta { alpha, beta } if alpha < 0.0 || beta < 0.0 || (alpha - beta - 1.0).abs() > 1e-9 => {
                crate::bail!("alphabeta needs α ≥ 0, β ≥ 0 and α − β = 1 (conservation), got α={alpha}, β={beta}")
            }
            _ => Ok(()),
        }
    }

    /// Short text form (as parsed by [`Rule::parse`]).
    pub fn label(&self) -> String {
        match self {
            Rule::Epsilon { epsilon } => format!("epsilon:{epsilon:e}"),
            Rule::Gamma { gamma: Some(g) } => format!("gamma:{g}"),
            Rule::Gamma { gamma: None } => "gamma".into(),
            Rule::Zplus => "zplus".into(),
            Rule::Alphabeta { alpha, beta } => format!("alphabeta:{alpha}:{beta}"),
        }
    }

    /// Relevance at the input `x` of `layer` given relevance `r` at its output; `stabilizer`
    /// is added (with the sign of the denominator) by every rule but ε. `z`, when given, is the
    /// layer's output on `x` with these weights (the forward pass's), which ε then reuses.
    pub fn apply(&self, layer: &Affine, x: &Tensor, z: Option<&Tensor>, r: &Tensor, stabilizer: f64) -> Result<Tensor> {
        let k = layer.op;
        let (w, b) = (&layer.weight, layer.bias.as_ref());
        let size = x.size();
        match *self {
            Rule::Epsilon { epsilon } => {
                if let Some((index, rt)) = one_per_row(r)? {
                    // One target per row (an LM head under a next-token target): only its z.
                    let zt = match z {
                        Some(z) => z.f_gather(-1, &index, false)?,
                        None => k.affine_forward(x, w, b)?.f_gather(-1, &index, false)?,
                    };
                    if let Some(c) = k.sparse_transpose(&index, &rt.f_div(&stabilize(&zt, epsilon)?)?, w)? {
                        return Ok(x.f_mul(&c)?);
                    }
                }
                let z = match z {
                    Some(z) => z.shallow_clone(),
                    None => k.affine_forward(x, w, b)?,
                };
                let s = r.f_div(&stabilize(&z, epsilon)?)?;
                Ok(x.f_mul(&k.affine_transpose(&s, w, &size)?)?)
            }
            Rule::Zplus => {
                let (xp, xn) = (x.f_clamp_min(0.0)?, x.f_clamp_max(0.0)?);
                let (wp, wn) = (w.f_clamp_min(0.0)?, w.f_clamp_max(0.0)?);
                let bp = b.map(|b| b.f_clamp_min(0.0)).transpose()?;
                let z = k.affine_forward(&xp, &wp, bp.as_ref())?.f_add(&k.affine_forward(&xn, &wn, None)?)?;
                let s = r.f_div(&stabilize(&z, stabilizer)?)?;
                Ok(xp
                    .f_mul(&k.affine_transpose(&s, &wp, &size)?)?
                    .f_add(&xn.f_mul(&k.affine_transpose(&s, &wn, &size)?)?)?)
            }
            Rule::Alphabeta { alpha, beta } => {
                let (xp, xn) = (x.f_clamp_min(0.0)?, x.f_clamp_max(0.0)?);
                let (wp, wn) = (w.f_clamp_min(0.0)?, w.f_clamp_max(0.0)?);
                let bp = b.map(|b| b.f_clamp_min(0.0)).transpose()?;
                let bn = b.map(|b| b.f_clamp_max(0.0)).transpose()?;
                let zp = k.affine_forward(&xp, &wp, bp.as_ref())?.f_add(&k.affine_forward(&xn, &wn, None)?)?;
                let zn = k.affine_forward(&xp, &wn, bn.as_ref())?.f_add(&k.affine_forward(&xn, &wp, None)?)?;
                let sp = r.f_div(&stabilize(&zp, stabilizer)?)?;
                let sn = r.f_div(&stabilize(&zn, stabilizer)?)?;
                let pos = xp
                    .f_mul(&k.affine_transpose(&sp, &wp, &size)?)?
                    .f_add(&xn.f_mul(&k.affine_transpose(&sp, &wn, &size)?)?)?;
                let neg = xp
                    .f_mul(&k.affine_transpose(&sn, &wn, &size)?)?
                    .f_add(&xn.f_mul(&k.affine_transpose(&sn, &wp, &size)?)?)?;
                Ok(pos.f_mul_scalar(alpha)?.f_sub(&neg.f_mul_scalar(beta)?)?)
            }
            Rule::Gamma { gamma } => {
                let g = gamma.unwrap_or_else(|| k.default_gamma());
                let (xp, xn) = (x.f_clamp_min(0.0)?, x.f_clamp_max(0.0)?);
                let gp = |t: &Tensor| -> Result<Tensor> { Ok(t.f_add(&t.f_clamp_min(0.0)?.f_mul_scalar(g)?)?) };
                let gn = |t: &Tensor| -> Result<Tensor> { Ok(t.f_add(&t.f_clamp_max(0.0)?.f_mul_scalar(g)?)?) };
                let (wgp, wgn) = (gp(w)?, gn(w)?);
                let bgp = b.map(gp).transpose()?;
                let bgn = b.map(gn).transpose()?;
                let o0 = k.affine_forward(&xp, &wgp, bgp.as_ref())?;
                let o1 = k.affine_forward(&xn, &wgn, None)?;
                let o2 = k.affine_forward(&xp, &wgn, bgn.as_ref())?;
                let o3 = k.affine_forward(&xn, &wgp, None)?;
                let o4 = k.affine_forward(x, w, b)?;
                let gpos = r.f_mul(&o4.f_gt(0.0)?)?.f_div(&stabilize(&o0.f_add(&o1)?, stabilizer)?)?;
                let gneg = r.f_mul(&o4.f_lt(0.0)?)?.f_div(&stabilize(&o2.f_add(&o3)?, stabilizer)?)?;
                let mut out = xp.f_mul(&k.affine_transpose(&gpos, &wgp, &size)?)?;
                out = out.f_add(&xn.f_mul(&k.affine_transpose(&gpos, &wgn, &size)?)?)?;
                out = out.f_add(&xp.f_mul(&k.affine_transpose(&gneg, &wgn, &size)?)?)?;
                out = out.f_add(&xn.f_mul(&k.affine_transpose(&gneg, &wgp, &size)?)?)?;
                Ok(out)
            }
        }
    }
}

/// z + ε·sign(z), with sign(0) = +1 (zennit's `stabilize`).
pub fn stabilize(z: &Tensor, eps: f64) -> Result<Tensor> {
    let sign = z.f_ge(0.0)?.f_to_kind(z.kind())?.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?;
    Ok(z.f_add(&sign.f_mul_scalar(eps)?)?)
}

/// Output widths from which ε looks for relevance with one nonzero per row (an LM head).
const SPARSE_FROM: i64 = 4096;

/// Where a wide relevance `r` (…, out) has at most one nonzero per row: its index and value
/// there, (…, 1) each (a row without one gives index 0, value 0).
fn one_per_row(r: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
    if r.dim() < 2 || r.numel() == 0 || r.size().last().is_none_or(|&n| n < SPARSE_FROM) {
        return Ok(None);
    }
    let nonzero = r.f_ne(0.0)?;
    if nonzero.f_sum_dim_intlist(-1, false, Kind::Int64)?.f_max()?.int64_value(&[]) > 1 {
        return Ok(None);
    }
    let index = nonzero.f_to_kind(Kind::Uint8)?.f_argmax(-1, true)?;
    let value = r.f_gather(-1, &index, false)?;
    Ok(Some((index, value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ops::Linear;

    /// ε on a wide layer whose relevance has one target per row (or none) takes only those
    /// targets' z and rows of W: the dense rule's values, with z recomputed or given.
    #[test]
    fn epsilon_with_one_target_per_row_equals_the_dense_rule() {
        tch::manual_seed(1);
        let f = (Kind::Double, tch::Device::Cpu);
        let (out, inp) = (SPARSE_FROM + 7, 6);
        let op = Linear::new(inp, out);
        let (w, b) = (Tensor::randn([out, inp], f), Tensor::randn([out], f));
        let x = Tensor::randn([2, 3, inp], f);
        let index = Tensor::from_slice(&[3i64, 4100, 0, 17, 2, 4000]).view([2, 3, 1]);
        let r = Tensor::zeros([2, 3, out], f).scatter(-1, &index, &Tensor::randn([2, 3, 1], f));
        let _ = r.get(1).get(1).fill_(0.0);
        let z = x.linear(&w, Some(&b));
        let want = &x * (&r / stabilize(&z, 1e-6).unwrap()).matmul(&w);
        let layer = Affine { op: &op, weight: w.shallow_clone(), bias: Some(b.shallow_clone()) };
        let rule = Rule::Epsilon { epsilon: 1e-6 };
        for given in [None, Some(&z)] {
            let got = rule.apply(&layer, &x, given, &r, 1e-9).unwrap();
            assert!(got.allclose(&want, 1e-12, 1e-12, false), "z given: {}", given.is_some());
        }
        assert!(one_per_row(&r).unwrap().is_some());
        // Two targets in a row: the dense rule.
        let two = &r + Tensor::zeros_like(&r).index_fill(-1, &Tensor::from_slice(&[5i64]), 1.0);
        assert!(one_per_row(&two).unwrap().is_none());
    }
}
