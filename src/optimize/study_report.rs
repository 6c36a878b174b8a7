//! What a study writes besides its trials: the objective's noise next to the gain found, and
//! the plots (history, gain over LRP-ε, parallel coordinates).

use super::objective::PruningObjective;
use super::space::{Domain, Params, SearchSpace};
use super::{Trial, TrialState};
use crate::error::Result;
use crate::report::{line_plot, parallel_plot, LinePlot, ParallelAxis, Polyline, Series};
use std::path::Path;

/// The objective's own noise next to the gain found: LRP-ε (trial 0) and the best trial, each
/// on the same reference draws of the validation split, draws the study did not optimise on
/// (held out), so the gain is not the selection's own luck.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ObjectiveNoise {
    pub draws: usize,
    /// The first held-out draw (draws `first_draw`..`first_draw + draws`); the study optimised
    /// on draws 0..`first_draw`.
    #[serde(default)]
    pub first_draw: usize,
    /// Validation A_PR of LRP-ε and of the best trial on each draw.
    pub baseline: Vec<f64>,
    pub best: Vec<f64>,
    pub baseline_sd: f64,
    /// Mean over draws of best − baseline, and its standard error (paired by draw).
    pub gain: f64,
    pub gain_se: f64,
}

impl ObjectiveNoise {
    /// One line for the terminal.
    pub fn describe(&self) -> String {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        format!(
            "objective noise over {} held-out reference draws (validation A_PR): LRP-ε {:.4} ± {:.4} (sd), \
             best {:.4}; gain {:+.4} ± {:.4} (se){}",
            self.draws,
            mean(&self.baseline),
            self.baseline_sd,
            mean(&self.best),
            self.gain,
            self.gain_se,
            if self.gain > 2.0 * self.gain_se { "" } else { " — within noise" }
        )
    }
}

/// Measures `baseline` and `best` on reference draws `first_draw`..`first_draw + draws` of
/// `objective`'s task (`first_draw`: the number of draws the study optimised on).
pub fn objective_noise(
    objective: &mut PruningObjective,
    baseline: &Params,
    best: &Params,
    first_draw: usize,
    draws: usize,
) -> Result<ObjectiveNoise> {
    let ids: Vec<usize> = (first_draw..first_draw + draws).collect();
    let b = objective.per_draw(baseline, &ids)?;
    let w = objective.per_draw(best, &ids)?;
    let (mean_sd, d) = (crate::util::mean_sd, draws as f64);
    let diffs: Vec<f64> = w.iter().zip(&b).map(|(w, b)| w - b).collect();
    let (gain, diff_sd) = mean_sd(&diffs);
    Ok(ObjectiveNoise {
        draws,
        first_draw,
        baseline_sd: mean_sd(&b).1,
        best: w,
        baseline: b,
        gain,
        gain_se: diff_sd / d.sqrt(),
    })
}

/// The best validation A_PR so far minus trial 0's (LRP-ε), against the number of trials; with
/// the noise measurement, the band of two standard errors of a gain.
pub fn write_gain_plot(path: &Path, name: &str, trials: &[Trial], noise: Option<&ObjectiveNoise>) -> Result<()> {
    let mut done: Vec<&Trial> =
        trials.iter().filter(|t| t.state == TrialState::Complete && t.value.is_some()).collect();
    done.sort_by_key(|t| t.number);
    let Some(base) = trials.iter().find(|t| t.number == 0).and_then(|t| t.value) else { return Ok(()) };
    let mut best = f64::NEG_INFINITY;
    let points: Vec<(f64, f64)> = done
        .iter()
        .map(|t| {
            best = best.max(t.value.unwrap_or(f64::NEG_INFINITY));
            ((t.number + 1) as f64, best - base)
        })
        .collect();
    let hi = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let band = noise.map(|n| 2.0 * n.gain_se.max(n.baseline_sd / (n.draws as f64).sqrt()));
    let mut series = vec![Series { label: "best so far − LRP-ε (validation A_PR)".into(), points }];
    let n = trials.iter().map(|t| t.number + 1).max().unwrap_or(1) as f64;
    if let Some(b) = band {
        series.push(Series { label: "2 standard errors of the objective".into(), points: vec![(1.0, b), (n, b)] });
    }
    line_plot(
        path,
        &LinePlot {
            title: &format!("{name}: gain over LRP-ε"),
            x_label: "trials",
            y_label: "gain in A_PR",
            x_range: (0.0, n.max(1.0)),
            y_range: (-0.005, (hi.max(band.unwrap_or(0.0)) * 1.2).max(0.01)),
            series: &series,
            reference: Some(("no gain", 0.0)),
            marks: &[],
            y_log10: false,
        },
    )?;
    Ok(())
}

/// Parallel coordinates of the completed trials: one axis per parameter, one line per trial
/// coloured by its validation A_PR.
pub fn write_parallel_plot(path: &Path, name: &str, space: &SearchSpace, trials: &[Trial]) -> Result<()> {
    let params: Vec<&super::space::Param> =
        space.params.iter().filter(|p| !matches!(&p.domain, Domain::Categorical(c) if c.len() < 2)).collect();
    let axes: Vec<ParallelAxis> = params
        .iter()
        .map(|p| {
            let (low, high) = p.ends();
            ParallelAxis { name: p.name.clone(), low, high }
        })
        .collect();
    let lines: Vec<Polyline> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| {
            Some(Polyline {
                positions: params.iter().map(|p| t.params.get(&p.name).and_then(|v| p.position(v))).collect(),
                value: t.value?,
            })
        })
        .collect();
    parallel_plot(path, &format!("{name}: trials by parameter (colour: validation A_PR)"), &axes, &lines)?;
    Ok(())
}

/// Validation A_PR of every trial (complete and pruned) and the best so far.
pub fn write_history_plot(path: &Path, name: &str, trials: &[Trial]) -> Result<()> {
    let done: Vec<(f64, f64)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| Some((t.number as f64, t.value?)))
        .collect();
    let pruned: Vec<(f64, f64)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Pruned)
        .filter_map(|t| Some((t.number as f64, t.value?)))
        .collect();
    let mut best = f64::NEG_INFINITY;
    let best_line: Vec<(f64, f64)> = done
        .iter()
        .map(|&(x, y)| {
            best = best.max(y);
            (x, best)
        })
        .collect();
    let lo = done.iter().chain(&pruned).map(|p| p.1).fold(1.0, f64::min);
    let n = trials.iter().map(|t| t.number).max().unwrap_or(1) as f64;
    let series = [
        Series { label: "complete trial (A_PR on validation)".into(), points: done },
        Series { label: "best so far".into(), points: best_line },
        Series { label: "pruned (value when stopped)".into(), points: pruned },
    ];
    line_plot(
        path,
        &LinePlot {
            title: &format!("{name}: optimisation history"),
            x_label: "trial",
            y_label: "A_PR (validation)",
            x_range: (0.0, n.max(1.0)),
            y_range: ((lo - 0.02).max(0.0), 1.0),
            series: &series,
            reference: None,
            marks: &[],
            y_log10: false,
        },
    )?;
    Ok(())
}
