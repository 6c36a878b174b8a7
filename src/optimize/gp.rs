//! Gaussian-process Bayesian optimisation: parameters are encoded (one-hot categories,
//! continuous values scaled to [0, 1], log where the range is log; inactive conditional
//! parameters encode as 0), a GP with a Matérn-5/2 kernel is fitted to the standardised
//! objective (length scale and noise chosen by marginal likelihood on a small grid), and the
//! candidate with the highest expected improvement among random draws and one-parameter
//! mutations of the best trial is proposed. 10 random start-up trials, as for TPE.

use super::sampler::{draw, trial_rng, RandomSampler, Sampler};
use super::space::{Domain, Params, SearchSpace};
use super::{Trial, TrialState};
use crate::error::Result;
use rand::RngExt;
use serde_json::Value;

pub struct GpSampler {
    pub seed: u64,
    pub startup_trials: usize,
    pub candidates: usize,
}

impl GpSampler {
    pub fn new(seed: u64) -> Self {
        GpSampler { seed, startup_trials: 10, candidates: 512 }
    }
}

fn encode(space: &SearchSpace, p: &Params) -> Vec<f64> {
    let mut v = Vec::new();
    for param in &space.params {
        let val = p.get(&param.name);
        match &param.domain {
            Domain::Categorical(c) if c.len() > 1 => v.extend(c.iter().map(|x| (val == Some(x)) as i32 as f64)),
            Domain::Categorical(_) => {}
            Domain::Float { low, high, log } => {
                let t = |x: f64| if *log { x.ln() } else { x };
                v.push(val.and_then(Value::as_f64).map(|x| (t(x) - t(*low)) / (t(*high) - t(*low))).unwrap_or(0.0));
            }
        }
    }
    v
}

fn matern52(a: &[f64], b: &[f64], ell: f64) -> f64 {
    let d = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt() / ell;
    let s5 = 5f64.sqrt() * d;
    (1.0 + s5 + 5.0 * d * d / 3.0) * (-s5).exp()
}

/// Lower Cholesky factor of a symmetric positive-definite matrix (row-major n×n).
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - s;
                if d <= 0.0 {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Some(l)
}

fn solve_lower(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut x = vec![0.0; n];
    for i in 0..n {
        x[i] = (b[i] - (0..i).map(|k| l[i * n + k] * x[k]).sum::<f64>()) / l[i * n + i];
    }
    x
}

fn solve_upper_t(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (b[i] - (i + 1..n).map(|k| l[k * n + i] * x[k]).sum::<f64>()) / l[i * n + i];
    }
    x
}

struct Gp {
    xs: Vec<Vec<f64>>,
    l: Vec<f64>,
    alpha: Vec<f64>,
    ell: f64,
}

impl Gp {
    /// Fits on standardised targets; returns the fit and its log marginal likelihood.
    fn fit(xs: &[Vec<f64>], y: &[f64], ell: f64, noise: f64) -> Option<(Gp, f64)> {
        let n = xs.len();
        let mut k = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                k[i * n + j] = matern52(&xs[i], &xs[j], ell) + if i == j { noise } else { 0.0 };
            }
        }
        let l = cholesky(&k, n)?;
        let alpha = solve_upper_t(&l, n, &solve_lower(&l, n, y));
        let lml = -0.5 * y.iter().zip(&alpha).map(|(a, b)| a * b).sum::<f64>()
            - (0..n).map(|i| l[i * n + i].ln()).sum::<f64>();
        Some((Gp { xs: xs.to_vec(), l, alpha, ell }, lml))
    }

    fn predict(&self, x: &[f64]) -> (f64, f64) {
        let n = self.xs.len();
        let ks: Vec<f64> = self.xs.iter().map(|xi| matern52(xi, x, self.ell)).collect();
        let mean = ks.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = solve_lower(&self.l, n, &ks);
        let var = (1.0 - v.iter().map(|a| a * a).sum::<f64>()).max(1e-12);
        (mean, var.sqrt())
    }
}

fn expected_improvement(mean: f64, sd: f64, best: f64) -> f64 {
    let z = (mean - best - 0.01) / sd;
    let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let cdf = super::sampler::normal_cdf(z);
    (mean - best - 0.01) * cdf + sd * pdf
}

impl Sampler for GpSampler {
    fn name(&self) -> String {
        "gp".into()
    }

    fn sample(&self, space: &SearchSpace, history: &[Trial], number: i64) -> Result<Params> {
        let done: Vec<&Trial> =
            history.iter().filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite)).collect();
        let random = RandomSampler { seed: self.seed };
        if done.len() < self.startup_trials {
            return random.sample(space, history, number);
        }
        let xs: Vec<Vec<f64>> = done.iter().map(|t| encode(space, &t.params)).collect();
        let raw: Vec<f64> = done.iter().map(|t| t.value.unwrap()).collect();
        let mean = raw.iter().sum::<f64>() / raw.len() as f64;
        let sd = (raw.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / raw.len() as f64).sqrt().max(1e-9);
        let y: Vec<f64> = raw.iter().map(|v| (v - mean) / sd).collect();
        let mut best_fit: Option<(Gp, f64)> = None;
        for ell in [0.1, 0.2, 0.4, 0.8, 1.6] {
            for noise in [1e-4, 1e-2, 1e-1] {
                if let Some((gp, lml)) = Gp::fit(&xs, &y, ell, noise) {
                    if best_fit.as_ref().is_none_or(|(_, b)| lml > *b) {
                        best_fit = Some((gp, lml));
                    }
                }
            }
        }
        let Some((gp, _)) = best_fit else { return random.sample(space, history, number) };
        let y_best = y.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let incumbent = done[y.iter().position(|v| *v == y_best).unwrap_or(0)];
        let mut rng = trial_rng(self.seed, number, "gp");
        let mut best = (f64::NEG_INFINITY, None);
        for i in 0..self.candidates {
            let cand = if i % 2 == 0 {
                random.sample(space, &[], number * 100_000 + i as i64)?
            } else {
                // Mutate one active parameter of the incumbent.
                let mut p = Params::new();
                let idx = rng.random_range(0..space.params.len());
                for (j, param) in space.params.iter().enumerate() {
                    if !SearchSpace::active(param, &p) {
                        continue;
                    }
                    let v = match incumbent.params.get(&param.name) {
                        Some(v) if j != idx => v.clone(),
                        _ => draw(&param.domain, &mut rng),
                    };
                    p.insert(param.name.clone(), v);
                }
                p
            };
            let (m, s) = gp.predict(&encode(space, &cand));
            let ei = expected_improvement(m, s, y_best);
            if ei > best.0 {
                best = (ei, Some(cand));
            }
        }
        Ok(best.1.expect("at least one candidate"))
    }
}
