//! Tree-structured Parzen estimator (Bergstra et al. 2011), with Optuna's defaults: 10 random
//! start-up trials; the best γ(n) = min(⌈0.1·n⌉, 25) completed trials form the "good" set, the
//! rest (and pruned trials) the "bad" set; per parameter, 24 candidates are drawn from the good
//! density l(x) and the one maximising l(x)/g(x) is kept. Continuous parameters use a mixture
//! of truncated Gaussians (one per observation plus a wide prior; bandwidth from the distance
//! to neighbouring observations, clipped), categorical ones smoothed frequencies. Conditional
//! parameters only learn from trials where they were active.

use super::sampler::{draw, normal_cdf, trial_rng, RandomSampler, Sampler};
use super::space::{Domain, Params, SearchSpace};
use super::{Trial, TrialState};
use crate::error::Result;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

pub struct Tpe {
    pub seed: u64,
    pub startup_trials: usize,
    pub candidates: usize,
    pub prior_weight: f64,
}

impl Tpe {
    pub fn new(seed: u64) -> Self {
        Tpe { seed, startup_trials: 10, candidates: 24, prior_weight: 1.0 }
    }
}

/// A mixture of Gaussians truncated to [lo, hi].
struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    weights: Vec<f64>,
    lo: f64,
    hi: f64,
}

impl Parzen {
    fn new(obs: &[f64], lo: f64, hi: f64, prior_weight: f64) -> Self {
        let mut mus: Vec<f64> = obs.to_vec();
        mus.push(0.5 * (lo + hi));
        let mut weights = vec![1.0; obs.len()];
        weights.push(prior_weight);
        let n = obs.len();
        let mut order: Vec<usize> = (0..mus.len()).collect();
        order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
        let mut sigmas = vec![0.0; mus.len()];
        for (k, &i) in order.iter().enumerate() {
            let left = if k == 0 { lo } else { mus[order[k - 1]] };
            let right = if k + 1 == order.len() { hi } else { mus[order[k + 1]] };
            sigmas[i] = (mus[i] - left).max(right - mus[i]);
        }
        let max_s = hi - lo;
        let min_s = (hi - lo) / (100f64).min(1.0 + n as f64);
        for s in &mut sigmas {
            *s = s.clamp(min_s, max_s);
        }
        sigmas[n] = hi - lo; // the prior stays wide
        let total: f64 = weights.iter().sum();
        Parzen { mus, sigmas, weights: weights.iter().map(|w| w / total).collect(), lo, hi }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let mut k = self.weights.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            acc += w;
            if u < acc {
                k = i;
                break;
            }
        }
        for _ in 0..100 {
            // Box–Muller draw, rejected outside the bounds.
            let (u1, u2): (f64, f64) = (rng.random_range(f64::MIN_POSITIVE..1.0), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let x = self.mus[k] + self.sigmas[k] * z;
            if (self.lo..=self.hi).contains(&x) {
                return x;
            }
        }
        self.mus[k].clamp(self.lo, self.hi)
    }

    fn log_pdf(&self, x: f64) -> f64 {
        let mut p = 0.0;
        for ((m, s), w) in self.mus.iter().zip(&self.sigmas).zip(&self.weights) {
            let z = (x - m) / s;
            let mass = (normal_cdf((self.hi - m) / s) - normal_cdf((self.lo - m) / s)).max(1e-12);
            p += w * (-0.5 * z * z).exp() / (s * (2.0 * std::f64::consts::PI).sqrt() * mass);
        }
        p.max(1e-300).ln()
    }
}

impl Sampler for Tpe {
    fn name(&self) -> String {
        "tpe".into()
    }

    fn sample(&self, space: &SearchSpace, history: &[Trial], number: i64) -> Result<Params> {
        let mut complete: Vec<&Trial> =
            history.iter().filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite)).collect();
        if complete.len() < self.startup_trials {
            return RandomSampler { seed: self.seed }.sample(space, history, number);
        }
        complete.sort_by(|a, b| b.value.unwrap().total_cmp(&a.value.unwrap()).then(a.number.cmp(&b.number)));
        let n_good = ((0.1 * complete.len() as f64).ceil() as usize).clamp(1, 25);
        let good: Vec<&Params> = complete[..n_good].iter().map(|t| &t.params).collect();
        let bad: Vec<&Params> = complete[n_good..]
            .iter()
            .map(|t| &t.params)
            .chain(history.iter().filter(|t| t.state == TrialState::Pruned).map(|t| &t.params))
            .collect();
        let mut rng = trial_rng(self.seed, number, "tpe");
        let mut out = Params::new();
        for param in &space.params {
            if !SearchSpace::active(param, &out) {
                continue;
            }
            let vals =
                |set: &[&Params]| -> Vec<Value> { set.iter().filter_map(|p| p.get(&param.name).cloned()).collect() };
            let (gv, bv) = (vals(&good), vals(&bad));
            let v = match &param.domain {
                Domain::Categorical(c) if c.len() == 1 => c[0].clone(),
                Domain::Categorical(c) => {
                    let k = c.len() as f64;
                    let weights = |obs: &[Value]| -> Vec<f64> {
                        let w: Vec<f64> = c
                            .iter()
                            .map(|x| self.prior_weight / k + obs.iter().filter(|o| *o == x).count() as f64)
                            .collect();
                        let s: f64 = w.iter().sum();
                        w.iter().map(|v| v / s).collect()
                    };
                    let (wg, wb) = (weights(&gv), weights(&bv));
                    let mut best = (f64::NEG_INFINITY, 0usize);
                    for _ in 0..self.candidates {
                        let u: f64 = rng.random();
                        let mut acc = 0.0;
                        let mut idx = c.len() - 1;
                        for (i, w) in wg.iter().enumerate() {
                            acc += w;
                            if u < acc {
                                idx = i;
                                break;
                            }
                        }
                        let score = wg[idx].ln() - wb[idx].ln();
                        if score > best.0 {
                            best = (score, idx);
                        }
                    }
                    c[best.1].clone()
                }
                Domain::Float { low, high, log } => {
                    let t = |x: f64| if *log { x.ln() } else { x };
                    let (lo, hi) = (t(*low), t(*high));
                    let obs = |v: &[Value]| -> Vec<f64> { v.iter().filter_map(Value::as_f64).map(t).collect() };
                    if gv.is_empty() {
                        draw(&param.domain, &mut rng)
                    } else {
                        let (l, g) = (
                            Parzen::new(&obs(&gv), lo, hi, self.prior_weight),
                            Parzen::new(&obs(&bv), lo, hi, self.prior_weight),
                        );
                        let mut best = (f64::NEG_INFINITY, lo);
                        for _ in 0..self.candidates {
                            let x = l.sample(&mut rng);
                            let score = l.log_pdf(x) - g.log_pdf(x);
                            if score > best.0 {
                                best = (score, x);
                            }
                        }
                        let x = if *log { best.1.exp() } else { best.1 };
                        x.clamp(*low, *high).into()
                    }
                }
            };
            out.insert(param.name.clone(), v);
        }
        Ok(out)
    }
}
