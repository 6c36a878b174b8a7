//! Samplers: given the space and every finished trial, propose the next trial's parameters.
//! All are seeded: the proposal for trial number n depends only on the seed, n and the history.

use super::space::{Domain, Params, SearchSpace};
use super::Trial;
use crate::error::Result;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Proposes parameters.
pub trait Sampler {
    fn name(&self) -> String;
    fn sample(&self, space: &SearchSpace, history: &[Trial], number: i64) -> Result<Params>;
}

/// Which sampler, as chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Tree-structured Parzen estimator (Optuna's default algorithm).
    Tpe,
    /// Gaussian-process Bayesian optimisation with expected improvement.
    Gp,
    /// Independent uniform draws.
    Random,
    /// Every combination of the categorical parameters, in order.
    Grid,
}

crate::from_str_by_serde!(SamplerKind: "tpe, gp, random or grid");

/// Error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
pub(super) fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592)
            * t
            * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

/// Standard normal CDF.
pub(super) fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

/// A generator for trial `number` of a sampler seeded with `seed`.
pub fn trial_rng(seed: u64, number: i64, purpose: &str) -> ChaCha8Rng {
    crate::util::rng(crate::util::derive_seed(seed, &format!("{purpose}/{number}")))
}

/// A uniform draw from one parameter's domain.
pub fn draw(domain: &Domain, rng: &mut ChaCha8Rng) -> Value {
    match domain {
        Domain::Categorical(c) => c[rng.random_range(0..c.len())].clone(),
        Domain::Float { low, high, log: false } => rng.random_range(*low..*high).into(),
        Domain::Float { low, high, log: true } => rng.random_range(low.ln()..high.ln()).exp().into(),
    }
}

/// Independent uniform draws (respecting conditions).
pub struct RandomSampler {
    pub seed: u64,
}

impl Sampler for RandomSampler {
    fn name(&self) -> String {
        "random".into()
    }
    fn sample(&self, space: &SearchSpace, _history: &[Trial], number: i64) -> Result<Params> {
        let mut rng = trial_rng(self.seed, number, "random");
        let mut p = Params::new();
        for param in &space.params {
            if SearchSpace::active(param, &p) {
                p.insert(param.name.clone(), draw(&param.domain, &mut rng));
            }
        }
        Ok(p)
    }
}

/// Every combination of the categorical parameters (conditional ones only where active).
pub struct GridSampler;

impl GridSampler {
    /// All grid points, in a fixed order.
    pub fn points(space: &SearchSpace) -> Result<Vec<Params>> {
        let mut points = vec![Params::new()];
        for param in &space.params {
            let Domain::Categorical(choices) = &param.domain else {
                crate::bail!("grid search needs categorical parameters; `{}` is a continuous range", param.name);
            };
            let mut next = Vec::new();
            for p in points {
                if SearchSpace::active(param, &p) {
                    for c in choices {
                        let mut q = p.clone();
                        q.insert(param.name.clone(), c.clone());
                        next.push(q);
                    }
                } else {
                    next.push(p);
                }
            }
            points = next;
        }
        Ok(points)
    }
}

impl Sampler for GridSampler {
    fn name(&self) -> String {
        "grid".into()
    }
    fn sample(&self, space: &SearchSpace, history: &[Trial], number: i64) -> Result<Params> {
        let points = Self::points(space)?;
        // The first grid point not tried yet (a study's first trial may be enqueued).
        points
            .iter()
            .find(|p| !history.iter().any(|t| &&t.params == p && t.state != super::TrialState::Interrupted))
            .cloned()
            .ok_or_else(|| {
                crate::Error::invalid(format!(
                    "the grid has {} points and all are tried (trial {number}); lower --trials",
                    points.len()
                ))
            })
    }
}
