//! The default criterion: chosen on the validation split at the user's budget. The best
//! criterion, per-layer normalisation and selection differ by model and budget
//! (docs/benchmarks.md, "deploy"), so `prune` without `--criterion` tries each candidate at the
//! budget: one scoring pass per criterion, then per candidate one selection, one surgery and a
//! validation pass on a small subset; the best few are measured again on more validation
//! samples — after a short recovery probe where the model will be fine-tuned — and the best of
//! those wins. The test split is never looked at.

use super::compress::{deploy_ranking, Amount, CompressConfig, TaskData};
use crate::attribution::normalize::{normalize_per_layer, LayerNormalization};
use crate::attribution::CriterionSpec;
use crate::data::SplitName;
use crate::error::Result;
use crate::experiment::{score, Task, TaskSpec};
use crate::graph::Graph;
use crate::prune::budget::{select_for_target, Selection};
use crate::prune::components::ComponentSet;
use crate::prune::surgery::prune;
use crate::recovery::{EpochLength, FinetuneConfig};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What is tried, and on how many validation samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChooseConfig {
    /// Criteria, as `--criterion` names them (a normalisation in the name is refused: the
    /// normalisations tried are `normalizations`).
    pub criteria: Vec<String>,
    pub normalizations: Vec<LayerNormalization>,
    pub selections: Vec<Selection>,
    /// Validation samples every candidate is measured on.
    pub first_samples: usize,
    /// Candidates measured again, on `final_samples` validation samples.
    pub finalists: usize,
    pub final_samples: usize,
    /// With fine-tuning: each finalist is fine-tuned this many optimiser steps (the recipe's
    /// settings otherwise) before its final measure, so the choice is the one that recovers best
    /// (0: finalists are compared as pruned).
    pub probe_steps: usize,
}

/// LRP-ε, the ε-plus preset, gradient and Taylor; the per-layer mean or no normalisation; the
/// paper's global order or cost-aware: 16 candidates, the four best measured again on 1,000
/// validation samples.
impl Default for ChooseConfig {
    fn default() -> Self {
        ChooseConfig {
            criteria: ["lrp-epsilon", "lrp-epsilon-plus", "gradient", "taylor"].map(String::from).to_vec(),
            normalizations: vec![LayerNormalization::Mean, LayerNormalization::None],
            selections: vec![Selection::Relevance, Selection::CostAware],
            first_samples: 250,
            finalists: 4,
            final_samples: 1000,
            probe_steps: 25,
        }
    }
}

/// One candidate and what it scored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    pub criterion: String,
    pub normalize: LayerNormalization,
    pub selection: Selection,
    /// The kept fraction of the budget's measure (None for a rate).
    pub kept: Option<f64>,
    /// Validation accuracy on the first samples, and on the final samples for a finalist.
    pub first_accuracy: f64,
    pub final_accuracy: Option<f64>,
    /// A finalist's final-sample accuracy after the recovery probe (with fine-tuning only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_accuracy: Option<f64>,
    /// The candidate whose removal this one equals: its first-round figure, never a finalist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as: Option<usize>,
    /// Selection, surgery and validation (its criterion's scoring is counted once, in the first
    /// candidate of that criterion).
    pub seconds: f64,
}

impl Candidate {
    /// The options that prune with this candidate directly.
    pub fn options(&self) -> String {
        format!("--criterion {} --normalize {} --selection {}", self.criterion, self.normalize, self.selection)
    }
}

/// Every candidate's figures and the one chosen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Choice {
    pub candidates: Vec<Candidate>,
    /// Index of the winner in `candidates`.
    pub chosen: usize,
    pub first_samples: usize,
    pub final_samples: usize,
    /// Optimiser steps of each finalist's recovery probe (0: none; the winner is the best as
    /// pruned).
    pub probe_steps: usize,
    pub seconds: f64,
}

impl Choice {
    pub fn winner(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }

    /// The winner as a criterion with its normalisation fixed.
    pub fn spec(&self, seed: u64) -> Result<CriterionSpec> {
        let w = self.winner();
        CriterionSpec::parse(&w.criterion, None, seed)?.with_normalization(Some(w.normalize))
    }
}

/// Tries every candidate of `choose` at `cfg`'s budget on the validation split of `data` and
/// returns their figures with the best: highest validation accuracy on the final samples among
/// the finalists, after the recovery probe where `cfg` fine-tunes (ties: the earlier candidate,
/// LRP-ε with the per-layer mean first). Probe checkpoints go to `work_dir` and are removed.
pub fn choose(
    graph: &Graph,
    comps: &ComponentSet,
    data: &TaskData<'_>,
    cfg: &CompressConfig,
    choose: &ChooseConfig,
    seed: u64,
    work_dir: &std::path::Path,
) -> Result<Choice> {
    let started = Instant::now();
    if choose.criteria.is_empty() || choose.normalizations.is_empty() || choose.selections.is_empty() {
        crate::bail!("choosing a criterion needs at least one criterion, normalisation and selection");
    }
    if !matches!(cfg.amount, Amount::Rate(_) | Amount::Target(_)) || cfg.steps > 1 {
        crate::bail!("the criterion is chosen for one step at a rate or a size target; give --criterion");
    }
    let val_spec = TaskSpec {
        split: SplitName::Val,
        eval_samples: choose.final_samples.max(choose.first_samples),
        ..data.task.spec.clone()
    };
    let val = Task::prepare(data.splits, graph.num_outputs().unwrap_or(0), &val_spec)?;
    let first = val.eval.head(choose.first_samples);
    let opts = val.eval_options(cfg.eval_batch);
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut graphs = Vec::new();
    let mut removals: Vec<Vec<(usize, usize)>> = Vec::new();
    for name in &choose.criteria {
        let base = CriterionSpec::parse(name, None, seed)?;
        if base.normalization().is_some() {
            crate::bail!("candidate `{name}` fixes its normalisation; the normalisations tried are listed apart");
        }
        let t0 = Instant::now();
        let raw = score(graph, comps, data.task, &base, cfg.attribution_batch)?;
        let mut scoring = t0.elapsed().as_secs_f64();
        for &normalize in &choose.normalizations {
            // As the criterion fixing this normalisation would score (`Criterion::score`).
            let spec = base.clone().with_normalization(Some(normalize))?;
            let scores = normalize_per_layer(&raw, comps, normalize);
            for &selection in &choose.selections {
                let t = Instant::now();
                let c = CompressConfig { selection, ..cfg.clone() };
                let ranking = deploy_ranking(graph, comps, &spec, &scores, &c)?;
                let (sel, kept) = match cfg.amount {
                    Amount::Rate(r) => (ranking.selection(r)?, None),
                    Amount::Target(target) => {
                        let b = select_for_target(graph, comps, &ranking, target, cfg.seq_len)?;
                        (b.selection.clone(), Some(b.ratio))
                    }
                    Amount::MaxDrop(_) => unreachable!("refused above"),
                };
                // The same removal as an earlier candidate (the cost-aware order equals the
                // relevance order where every unit costs the same): its figures, not measured again.
                if let Some(j) = removals.iter().position(|r| *r == sel) {
                    let same = Candidate {
                        normalize,
                        selection,
                        same_as: Some(j),
                        seconds: t.elapsed().as_secs_f64() + std::mem::take(&mut scoring),
                        ..candidates[j].clone()
                    };
                    candidates.push(same);
                    graphs.push(None);
                    removals.push(sel);
                    continue;
                }
                let (small, _) = prune(graph, comps, &ranking, &sel)?;
                removals.push(sel);
                let hits = crate::metrics::evaluate_split(&small, &first, &opts)?;
                candidates.push(Candidate {
                    criterion: name.clone(),
                    normalize,
                    selection,
                    kept,
                    first_accuracy: hits.accuracy(),
                    final_accuracy: None,
                    probe_accuracy: None,
                    same_as: None,
                    seconds: t.elapsed().as_secs_f64() + std::mem::take(&mut scoring),
                });
                graphs.push(Some(small));
                // Only the models that may still be finalists are kept.
                for j in ranked(&candidates).into_iter().skip(choose.finalists.max(1)) {
                    graphs[j] = None;
                }
            }
        }
    }
    // The recovery probe: the user's recipe, one epoch of `probe_steps` steps.
    let probe = cfg.finetune.as_ref().filter(|_| choose.probe_steps > 0).map(|ft| FinetuneConfig {
        epochs: 1,
        epoch_length: Some(EpochLength::Steps(choose.probe_steps)),
        ..ft.clone()
    });
    let order = ranked(&candidates);
    let finalists = &order[..choose.finalists.clamp(1, order.len())];
    for &i in finalists {
        let t = Instant::now();
        let small = graphs[i].as_ref().expect("a finalist's model is kept");
        let hits = crate::metrics::evaluate_split(small, &val.eval, &opts)?;
        candidates[i].final_accuracy = Some(hits.accuracy());
        if let Some(ft) = probe.as_ref() {
            let mut recovered = small.deep_clone();
            let work = work_dir.join(format!("probe-{i}"));
            crate::recovery::finetune(
                &mut recovered,
                graph,
                data.splits,
                data.task.classes.as_ref(),
                ft,
                &work,
                &mut crate::train::Silent,
            )?;
            let _ = std::fs::remove_dir_all(&work);
            candidates[i].probe_accuracy =
                Some(crate::metrics::evaluate_split(&recovered, &val.eval, &opts)?.accuracy());
        }
        candidates[i].seconds += t.elapsed().as_secs_f64();
    }
    let measure = |c: &Candidate| c.probe_accuracy.or(c.final_accuracy).unwrap_or(0.0);
    let chosen = finalists
        .iter()
        .copied()
        .max_by(|&a, &b| measure(&candidates[a]).total_cmp(&measure(&candidates[b])).then(b.cmp(&a)))
        .expect("at least one finalist");
    Ok(Choice {
        candidates,
        chosen,
        first_samples: first.len(),
        final_samples: val.eval.len(),
        probe_steps: if probe.is_some() { choose.probe_steps } else { 0 },
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Indices of the candidates with a removal of their own by first-round accuracy, best first;
/// the earlier candidate on ties.
fn ranked(candidates: &[Candidate]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].same_as.is_none()).collect();
    order.sort_by(|&a, &b| candidates[b].first_accuracy.total_cmp(&candidates[a].first_accuracy).then(a.cmp(&b)));
    order
}
