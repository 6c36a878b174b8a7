//! Cost of attribution and of a pruning curve relative to plain passes (benchmarks/cnn_criteria).
//!
//! Usage: cargo run --release --example cost -- MODEL [CLASSES] [EVAL_SAMPLES] [EVAL_BATCH]
//! Prints one JSON object: seconds per reference sample for LRP-ε and for a plain
//! forward+backward of the same batch, and the time of a 20-rate LRP-ε curve against 20
//! plain evaluation passes over the same samples.

use relprune::attribution::{lrp::Lrp, CriterionSpec, LatentAttribution};
use relprune::data::{fashion_mnist, SplitName};
use relprune::evaluate::{accuracy, EvalOptions};
use relprune::experiment::{measure_curve, score, RunOptions, Task, TaskSpec};
use relprune::graph::Mode;
use relprune::models::load_model;
use relprune::prune::components::ComponentSet;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_name = args.get(1).map(String::as_str).unwrap_or("fmnist-resnet18");
    let classes: Option<usize> = args.get(2).and_then(|s| s.parse().ok()).filter(|&k| k < 10);
    let eval_samples: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let mut model = load_model(model_name, None, 0)?;
    let splits = fashion_mnist::load_splits(&fashion_mnist::resolve_dir(None))?;
    let spec = TaskSpec { classes, seed: 0, refs_per_class: 10, split: SplitName::Test, eval_samples };
    let task = Task::prepare(&splits, 10, &spec)?;
    let kind = ComponentSet::default_kind(&model.graph);
    let comps = ComponentSet::find(&model.graph, kind)?;
    let batch = task.refs.full_batch()?;
    let n = task.refs.len() as f64;

    // Attribution: LRP-ε on all references in one batch vs. a plain forward + backward.
    let lrp_spec = CriterionSpec::from_name("lrp-epsilon", None, 0)?;
    let CriterionSpec::Lrp { lrp, .. } = lrp_spec.clone() else { unreachable!() };
    let lrp = Lrp { config: lrp, label: "lrp-epsilon".into() };
    let mut t_lrp = Vec::new();
    let mut t_fb = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        lrp.attribute(&model.graph, &comps, &batch)?;
        t_lrp.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        tch::with_grad(|| -> anyhow::Result<()> {
            let x = batch.inputs[0].detach().set_requires_grad(true);
            let y = model.graph.forward(&[x.shallow_clone()], Mode::Eval)?;
            let loss = y.cross_entropy_for_logits(&batch.labels);
            let _ = tch::Tensor::run_backward(&[&loss], &[&x], false, false);
            Ok(())
        })?;
        t_fb.push(t.elapsed().as_secs_f64());
    }
    let (lrp_s, fb_s) = (median(t_lrp), median(t_fb));

    // A whole 20-rate curve vs. 20 plain evaluation passes.
    let mut opts = RunOptions::default();
    if let Some(b) = args.get(4).and_then(|s| s.parse().ok()) {
        opts.eval_batch = b;
    }
    let t = Instant::now();
    let scores = score(&model.graph, &comps, &task, &lrp_spec, opts.attribution_batch)?;
    let scoring = t.elapsed().as_secs_f64();
    let t = Instant::now();
    measure_curve(&mut model.graph, &comps, &scores, &task, &opts, &mut |_| {})?;
    let curve = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..opts.rates.len() {
        accuracy(
            &model.graph,
            &task.eval,
            &EvalOptions { batch_size: opts.eval_batch, classes: task.classes.clone() },
        )?;
    }
    let plain = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "model": model_name,
            "components": comps.total,
            "references": task.refs.len(),
            "eval_samples": task.eval.len(),
            "eval_batch": opts.eval_batch,
            "lrp_seconds_per_reference": lrp_s / n,
            "forward_backward_seconds_per_reference": fb_s / n,
            "lrp_over_forward_backward": lrp_s / fb_s,
            "lrp_epsilon_curve_seconds": scoring + curve,
            "scoring_seconds": scoring,
            "curve_seconds": curve,
            "twenty_plain_evaluations_seconds": plain,
            "curve_over_plain": curve / plain,
            "threads": tch::get_num_threads(),
        })
    );
    Ok(())
}
