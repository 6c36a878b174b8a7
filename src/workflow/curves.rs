//! Curves: accuracy against the pruning rate (or MACs / parameters removed) for one or several
//! criteria on the same references and evaluation samples — `relprune curve` and `compare`.

use super::source::Session;
use crate::attribution::CriterionSpec;
use crate::error::Result;
use crate::experiment::{run_criterion, CurveResult, RunOptions, Stage};
use crate::report::{write_curves, CurvesReport, RunHeader};
use crate::util::OutputDir;
use std::path::PathBuf;

/// Progress of a curve run, per criterion.
pub trait CurveObserver {
    /// `spec`'s curve starts (scoring first).
    fn criterion_started(&mut self, _spec: &CriterionSpec, _rates: usize) {}
    /// A stage of `spec`'s curve.
    fn stage(&mut self, _spec: &CriterionSpec, _stage: &Stage) {}
    /// `spec`'s curve is measured.
    fn criterion_done(&mut self, _result: &CurveResult) {}
}

/// No progress reports.
impl CurveObserver for () {}

/// Each criterion's curve on the session's task, best A_PR first when there are several.
pub fn curves(
    session: &mut Session,
    specs: &[CriterionSpec],
    opts: &RunOptions,
    observer: &mut dyn CurveObserver,
) -> Result<CurvesReport> {
    session.data()?;
    // The fields apart: the graph is borrowed mutably beside the task.
    let data = session.data.as_ref().expect("checked above");
    let mut results = Vec::with_capacity(specs.len());
    for spec in specs {
        observer.criterion_started(spec, opts.rates.len());
        let r = run_criterion(&mut session.model.graph, &session.comps, &data.task, spec, opts, &mut |s| {
            observer.stage(spec, &s)
        })?;
        observer.criterion_done(&r);
        results.push(r);
    }
    if results.len() > 1 {
        results.sort_by(|a, b| b.curve.summary.a_pr.total_cmp(&a.curve.summary.a_pr));
    }
    Ok(CurvesReport { header: RunHeader::new(&session.model, &data.task), results })
}

/// Measures the curves into `outdir` as `<stem>.json` and `<stem>.png` (and a language
/// model's `<stem>-perplexity.png`), staged and moved into place together (create the [`OutputDir`] before loading anything: it checks the folder).
/// Returns the report and the two files' final paths.
pub fn curves_to(
    outdir: OutputDir,
    stem: &str,
    session: &mut Session,
    specs: &[CriterionSpec],
    opts: &RunOptions,
    observer: &mut dyn CurveObserver,
) -> Result<(CurvesReport, Vec<PathBuf>)> {
    let report = curves(session, specs, opts, observer)?;
    write_curves(outdir.path(), stem, &report)?;
    let json = format!("{stem}.json");
    let png = format!("{stem}.png");
    // Named so that a stale one goes: written only for language models.
    let perplexity = format!("{stem}-perplexity.png");
    let files = outdir.commit(&[&json, &png, &perplexity])?;
    Ok((report, files))
}
