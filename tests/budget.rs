//! Pruning to a budget: MACs and parameter targets land within one unit of the target, an
//! accuracy budget never exceeds its drop on validation, and the cost-aware order ranks units
//! by relevance per unit of cost.

mod common;

use relprune::attribution::Scores;
use relprune::evaluate::{accuracy, EvalOptions};
use relprune::graph::{stats, Graph};
use relprune::models::Architecture;
use relprune::prune::budget::{
    order_by_cost, select_for_max_drop, select_for_target, unit_costs, Measure, Selection, Target,
};
use relprune::prune::components::{ComponentKind, ComponentSet};
use relprune::prune::ranking::PruneOrder;
use relprune::prune::surgery::{prune, GroupRanking};

fn random_scores(n: usize, seed: u64) -> Scores {
    use rand::RngExt;
    let mut rng = relprune::util::rng(seed);
    Scores { values: (0..n).map(|_| rng.random::<f64>()).collect() }
}

fn models() -> Vec<Graph> {
    vec![
        Architecture::parse("cifar_resnet18:width=4,in=1,size=8,classes=10").unwrap().build(3).unwrap(),
        Architecture::parse("cifar_vgg11_bn:width=4,hidden=16,in=1,size=8,classes=10").unwrap().build(3).unwrap(),
    ]
}

#[test]
fn a_size_target_lands_within_one_unit_of_the_target() {
    for g in models() {
        let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
        for selection in [Selection::Relevance, Selection::CostAware] {
            for target in ["macs=0.7", "macs=0.5", "params=0.4"] {
                let target: Target = target.parse().unwrap();
                let mut ranking =
                    GroupRanking::new(&g, &comps, &random_scores(comps.total, 5), PruneOrder::LeastRelevantFirst)
                        .unwrap();
                if selection == Selection::CostAware {
                    let costs = unit_costs(&g, &comps, &ranking, 1).unwrap();
                    order_by_cost(&mut ranking, &costs, target.measure);
                }
                let c = select_for_target(&g, &comps, &ranking, target, 1).unwrap();
                let limit = (c.before as f64 * target.ratio).floor() as i64;
                let (small, _) = prune(&g, &comps, &ranking, &ranking.prefix(c.units)).unwrap();
                let achieved = target.measure.of(&small, 1).unwrap();
                assert_eq!(achieved, c.after, "the report gives the measured size");
                assert!(achieved <= limit, "{target:?} {selection:?}: {achieved} > {limit}");
                // One unit fewer would not meet the target: the choice is the smallest removal.
                let (prev, _) = prune(&g, &comps, &ranking, &ranking.prefix(c.units - 1)).unwrap();
                let before_last = target.measure.of(&prev, 1).unwrap();
                assert!(before_last > limit, "{target:?} {selection:?}: one unit fewer already meets it");
                assert!(limit - achieved < before_last - achieved, "within the last unit's saving of the target");
                assert!((c.ratio - achieved as f64 / c.before as f64).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn a_target_that_cannot_be_met_is_a_clear_error() {
    let g = &models()[0];
    let comps = ComponentSet::find(g, ComponentKind::Filters).unwrap();
    let ranking = GroupRanking::new(g, &comps, &random_scores(comps.total, 1), PruneOrder::LeastRelevantFirst).unwrap();
    let e = select_for_target(g, &comps, &ranking, "macs=0.001".parse().unwrap(), 1).err().unwrap().to_string();
    assert!(e.contains("keeps at least one unit") && e.contains("larger fraction"), "{e}");
}

#[test]
fn the_cost_aware_order_ranks_by_relevance_per_unit_saved() {
    let g = &models()[0];
    let comps = ComponentSet::find(g, ComponentKind::Filters).unwrap();
    let scores = random_scores(comps.total, 2);
    let mut ranking = GroupRanking::new(g, &comps, &scores, PruneOrder::LeastRelevantFirst).unwrap();
    let costs = unit_costs(g, &comps, &ranking, 1).unwrap();
    // Each group's cost is what removing one of its units saves, measured independently here.
    let macs0 = stats::macs(g, 1).unwrap();
    for (gi, c) in costs.iter().enumerate() {
        if let Some(&(_, u)) = ranking.order.iter().find(|(x, _)| *x == gi) {
            let (small, _) = prune(g, &comps, &ranking, &[(gi, u)]).unwrap();
            assert_eq!(c.macs, macs0 - stats::macs(&small, 1).unwrap());
            assert_eq!(c.params, g.num_parameters() - small.num_parameters());
            assert!(c.macs > 0 && c.params > 0);
        }
    }
    let before: std::collections::BTreeSet<_> = ranking.order.iter().copied().collect();
    order_by_cost(&mut ranking, &costs, Measure::Macs);
    let after: std::collections::BTreeSet<_> = ranking.order.iter().copied().collect();
    assert_eq!(before, after, "the same units, reordered");
    let key = |&(gi, u): &(usize, usize)| {
        ranking.pooled[gi][u] * ranking.groups[gi].members.len() as f64 / costs[gi].macs as f64
    };
    for w in ranking.order.windows(2) {
        assert!(key(&w[0]) <= key(&w[1]));
    }
}

#[test]
fn an_accuracy_budget_never_exceeds_its_drop_on_validation() {
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 1200, 200);
    let splits = relprune::data::fashion_mnist::load_splits(tmp.path()).unwrap();
    let mut g = Architecture::parse("cifar_resnet18:width=8,in=1,size=8,classes=10").unwrap().build(4).unwrap();
    // Two epochs of training so that accuracy has something to lose.
    let cfg = relprune::train::TrainConfig {
        epochs: 2,
        batch_size: 64,
        optimizer: relprune::train::Optimizer::Sgd { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.0 },
        warmup_epochs: 0.0,
        label_smoothing: 0.0,
        augment: relprune::train::Augment { crop_padding: 0, hflip: false, fill: 0.0 },
        seed: 0,
        val_samples: 200,
        head_only: false,
        keep_start: false,
        steps_per_epoch: None,
    };
    relprune::train::train(&mut g, &splits, &cfg, &tmp.path().join("work"), &mut relprune::train::Silent).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let ranking =
        GroupRanking::new(&g, &comps, &random_scores(comps.total, 3), PruneOrder::LeastRelevantFirst).unwrap();
    let val = splits.val.head(300);
    let opts = EvalOptions { batch_size: 64, classes: None };
    for drop in [0.0, 2.0, 10.0] {
        let c = select_for_max_drop(&g, &comps, &ranking, &val, &opts, drop, 1).unwrap();
        let (base, chosen) = c.val_accuracy.unwrap();
        let (small, _) = prune(&g, &comps, &ranking, &ranking.prefix(c.units)).unwrap();
        let measured = accuracy(&small, &val, &opts).unwrap();
        assert_eq!(measured, chosen, "the reported accuracy is the pruned model's");
        assert!(measured >= base - drop / 100.0 - 1e-12, "drop {drop}: {base} → {measured}");
    }
    let c0 = select_for_max_drop(&g, &comps, &ranking, &val, &opts, 0.0, 1).unwrap();
    let c10 = select_for_max_drop(&g, &comps, &ranking, &val, &opts, 10.0, 1).unwrap();
    assert!(c10.units >= c0.units, "a larger budget never removes less here");
}

#[test]
fn round_to_keeps_widths_multiples_of_k_and_equals_the_masked_model() {
    use relprune::graph::{Mode, Op};
    let mut g = Architecture::parse("cifar_resnet18:width=16,in=1,size=8,classes=10").unwrap().build(5).unwrap();
    // Non-trivial BatchNorm statistics so that a wrong channel would show.
    let keys: Vec<String> = g.params().keys().filter(|k| k.contains("running_") || k.contains("bn")).cloned().collect();
    for k in keys {
        let t = g.params().get(&k).unwrap();
        if t.is_floating_point() {
            let v = (t.rand_like() * 0.5 + 0.75).to_kind(t.kind());
            g.params_mut().insert(k, v);
        }
    }
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let ranking = GroupRanking::new(&g, &comps, &random_scores(comps.total, 8), PruneOrder::LeastRelevantFirst)
        .unwrap()
        .with_round_to(8)
        .unwrap();
    for rate in [0.2, 0.45, 0.7] {
        let sel = ranking.selection(rate).unwrap();
        let (small, _) = prune(&g, &comps, &ranking, &sel).unwrap();
        for n in small.nodes() {
            if let Op::Conv2d(c) = &n.op {
                assert_eq!(c.out_channels % 8, 0, "{} keeps {} channels at rate {rate}", n.name, c.out_channels);
            }
        }
        let plain = GroupRanking::new(&g, &comps, &random_scores(comps.total, 8), PruneOrder::LeastRelevantFirst)
            .unwrap()
            .selection(rate)
            .unwrap();
        assert!(sel.len() <= plain.len() && sel.iter().all(|u| plain.contains(u)), "rounding only keeps more");
        let x = stats::example_inputs(&g, 1);
        let x = vec![x[0].randn_like()];
        let masked = {
            let guard =
                relprune::prune::masking::apply_mask(&mut g, &comps, &ranking.component_indices(&comps, &sel)).unwrap();
            tch::no_grad(|| guard.forward(&x, Mode::Eval)).unwrap()
        };
        let pruned = tch::no_grad(|| small.forward(&x, Mode::Eval)).unwrap();
        let err = (&pruned - &masked).abs().max().double_value(&[]) / masked.abs().max().double_value(&[]).max(1e-6);
        assert!(err < 1e-4, "rate {rate}: pruned vs masked {err:e}");
    }
    // A MACs target with rounding still meets the target.
    let c = select_for_target(&g, &comps, &ranking, "macs=0.6".parse().unwrap(), 1).unwrap();
    assert!(c.ratio <= 0.6);
    let (small, _) = prune(&g, &comps, &ranking, &c.selection).unwrap();
    assert!(small.nodes().iter().all(|n| !matches!(&n.op, Op::Conv2d(cv) if cv.out_channels % 8 != 0)));
}

#[test]
fn prune_command_meets_a_macs_target_in_steps_with_fine_tuning() {
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 1200, 200);
    let out = tmp.path().join("out");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
            .args(["--threads", "1", "--json", "prune", "--model", "cifar_resnet18:width=8,in=1,size=8,classes=10"])
            .arg("--fmnist-dir")
            .arg(tmp.path())
            .args(["--criterion", "taylor", "--refs-per-class", "2", "--eval-samples", "100", "--latency-runs", "2"])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = run(&["--target", "macs=0.5", "--steps", "2", "--finetune", "1", "--ft-samples", "300"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(r["macs_ratio"].as_f64().unwrap() <= 0.5);
    assert_eq!(r["normalize"], "mean", "conv filters are ranked per-layer-mean by default");
    assert_eq!(r["steps"].as_array().unwrap().len(), 2);
    assert!(r["finetune"]["accuracy"].as_f64().is_some());
    let m = relprune::models::load_model(out.join("model").to_str().unwrap(), None, 0).unwrap();
    assert_eq!(m.graph.num_parameters(), r["after"]["parameters"].as_i64().unwrap());
    assert!(!out.join("finetune-work").exists(), "checkpoints go once the model is in place");
    // Exactly one amount; steps need fine-tuning; an accuracy budget is one step.
    for (args, want) in [
        (&["--target", "macs=0.5", "--rate", "0.3"][..], "cannot be used with"),
        (&["--target", "macs=0.5", "--steps", "2"][..], "--finetune"),
        (&["--max-drop", "1", "--steps", "2", "--finetune", "1"][..], "one step"),
        (&["--target", "flops=0.5"][..], "unknown target"),
    ] {
        let o = run(args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(want), "{args:?}: {e}");
    }
}

#[test]
fn a_latency_target_is_measured_and_met_or_refused() {
    let g = Architecture::parse("cifar_resnet18:width=16,in=1,size=28,classes=10").unwrap().build(2).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let ranking =
        GroupRanking::new(&g, &comps, &random_scores(comps.total, 4), PruneOrder::LeastRelevantFirst).unwrap();
    let target: Target = "latency=0.7@32".parse().unwrap();
    match select_for_target(&g, &comps, &ranking, target, 1) {
        Ok(c) => {
            // The search only settles on a measured selection within the target.
            let limit = (c.before as f64 * 0.7).floor() as i64;
            assert!(c.after <= limit && c.ratio <= 0.7, "{c:?}");
            assert!(c.units > 0 && c.evaluations > 1);
        }
        // On a machine too busy to time, the refusal names the measure.
        Err(e) => assert!(e.to_string().contains("latency"), "{e}"),
    }
}

/// A curve on a MACs axis: each point keeps at most the asked fraction of MACs (one unit more
/// would cross it), its accuracy is that of the physically pruned model, and the cost-aware
/// order is available there too.
#[test]
fn curves_on_a_macs_axis_remove_what_each_point_asks() {
    use relprune::evaluate::CurveAxis;
    use relprune::experiment::{measure_curve, RunOptions, Task, TaskSpec};
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 600, 200);
    let splits = relprune::data::fashion_mnist::load_splits(tmp.path()).unwrap();
    let task =
        Task::prepare(&splits, 10, &TaskSpec { refs_per_class: 1, eval_samples: 100, ..Default::default() }).unwrap();
    for g in models() {
        let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
        let scores = random_scores(comps.total, 8);
        let macs0 = stats::macs(&g, 1).unwrap();
        for selection in [Selection::Relevance, Selection::CostAware] {
            for axis in [CurveAxis::Macs, CurveAxis::Params] {
                let opts = RunOptions {
                    rates: relprune::prune::ranking::parse_rates("0:0.6:0.2").unwrap(),
                    axis,
                    selection,
                    ..Default::default()
                };
                let curve = measure_curve(&mut g.deep_clone(), &comps, &scores, &task, &opts, &mut |_| {}).unwrap();
                assert_eq!(curve.axis, axis);
                assert_eq!(curve.kept.len(), opts.rates.len());
                assert_eq!(curve.kept[0], 1.0);
                for (x, k) in opts.rates.iter().zip(&curve.kept) {
                    assert!(*k <= 1.0 - x + 1e-9, "{axis:?} {selection:?}: asked to remove {x}, kept {k}");
                }
                assert!(curve.kept.windows(2).all(|w| w[1] <= w[0]));
                assert!(curve.pruned.windows(2).all(|w| w[1] >= w[0]));
                if axis == CurveAxis::Macs && selection == Selection::Relevance {
                    // The point at 0.4 is the physical model of the bisection's selection.
                    let ranking = GroupRanking::new(&g, &comps, &scores, PruneOrder::LeastRelevantFirst).unwrap();
                    let target = Target { measure: Measure::Macs, ratio: 0.6 };
                    let choice = select_for_target(&g, &comps, &ranking, target, 1).unwrap();
                    let (small, _) = prune(&g, &comps, &ranking, &choice.selection).unwrap();
                    assert!((stats::macs(&small, 1).unwrap() as f64) <= 0.6 * macs0 as f64);
                    let acc = accuracy(&small, &task.eval, &task.eval_options(64)).unwrap();
                    assert_eq!(acc, curve.accuracies[2]);
                    assert_eq!(curve.kept[2], stats::macs(&small, 1).unwrap() as f64 / macs0 as f64);
                }
            }
        }
    }
}

/// Budget marks on a curve (`curve --target`): each is the model `prune --target` gives (the
/// bisection's selection, pruned physically, measured on the curve's samples); on a MACs axis it
/// sits on the curve's own point for that budget; the cost-aware order applies to marks; a target
/// the order cannot reach is flagged, not an error; and marks survive the JSON round trip.
#[test]
fn budget_marks_are_the_models_prune_target_gives() {
    use relprune::evaluate::CurveAxis;
    use relprune::experiment::{mark_targets, measure_curve, RunOptions, Task, TaskSpec};
    // The trained zoo ResNet on real data, so accuracies differ from one selection to the next.
    let (model, manifest) = relprune::models::zoo::load("fmnist-resnet18").unwrap();
    let splits = manifest.recipe.data.splits(None).expect("the model's data (run ./run-tests)");
    let task =
        Task::prepare(&splits, 10, &TaskSpec { refs_per_class: 1, eval_samples: 200, ..Default::default() }).unwrap();
    let g = &model.graph;
    let comps = ComponentSet::find(g, ComponentKind::Filters).unwrap();
    let scores = random_scores(comps.total, 9);
    let targets: Vec<Target> = ["macs=0.6", "params=0.5", "macs=0.001"].iter().map(|t| t.parse().unwrap()).collect();
    let opts = RunOptions {
        rates: relprune::prune::ranking::parse_rates("0:0.4:0.2").unwrap(),
        axis: CurveAxis::Macs,
        marks: targets.clone(),
        ..Default::default()
    };
    let marks = mark_targets(g, &comps, &scores, &task, &opts).unwrap();
    assert_eq!(marks.len(), 3);
    let (macs0, seq) = (stats::macs(g, 128).unwrap() as f64, 128);
    let ranking = GroupRanking::new(g, &comps, &scores, PruneOrder::LeastRelevantFirst).unwrap();
    for (m, t) in marks.iter().zip(&targets).take(2) {
        let choice = select_for_target(g, &comps, &ranking, *t, seq).unwrap();
        let (small, _) = prune(g, &comps, &ranking, &choice.selection).unwrap();
        assert!(m.reached && m.target == *t);
        assert_eq!(m.macs_kept, stats::macs(&small, seq).unwrap() as f64 / macs0);
        assert_eq!(m.rate, choice.rate);
        assert_eq!(m.accuracy, accuracy(&small, &task.eval, &task.eval_options(64)).unwrap());
        assert_eq!(m.params_kept, small.num_parameters() as f64 / g.num_parameters() as f64);
        assert!(if t.measure == Measure::Macs { m.macs_kept } else { m.params_kept } <= t.ratio);
    }
    // On the MACs axis, the mark at macs=0.6 is the curve's point at 0.4 removed.
    let curve = measure_curve(&mut g.deep_clone(), &comps, &scores, &task, &opts, &mut |_| {}).unwrap();
    assert_eq!(marks[0].x(CurveAxis::Macs), 1.0 - curve.kept[2]);
    assert_eq!(marks[0].accuracy, curve.accuracies[2]);
    assert_eq!(marks[1].x(CurveAxis::Rate), marks[1].rate);
    // Nothing removable keeps 0.1 % of the MACs: flagged at the largest removal.
    assert!(!marks[2].reached && marks[2].macs_kept > 0.001);
    // Cost-aware marks follow the order by relevance per MAC saved.
    let cost_opts = RunOptions { selection: Selection::CostAware, marks: targets[..1].to_vec(), ..opts.clone() };
    let cost_mark = &mark_targets(g, &comps, &scores, &task, &cost_opts).unwrap()[0];
    let mut cost_ranking = GroupRanking::new(g, &comps, &scores, PruneOrder::LeastRelevantFirst).unwrap();
    order_by_cost(&mut cost_ranking, &unit_costs(g, &comps, &ranking, 128).unwrap(), Measure::Macs);
    let choice = select_for_target(g, &comps, &cost_ranking, targets[0], seq).unwrap();
    assert_eq!(cost_mark.rate, choice.rate);
    assert!(cost_mark.rate != marks[0].rate, "the cost-aware order selects other units");
    // serde_json reads floats to within an ulp (no float_roundtrip feature).
    let back: Vec<relprune::prune::budget::BudgetMark> =
        serde_json::from_str(&serde_json::to_string(&marks).unwrap()).unwrap();
    for (a, b) in back.iter().zip(&marks) {
        assert!(a.target == b.target && a.reached == b.reached && a.accuracy == b.accuracy);
        for (x, y) in [(a.rate, b.rate), (a.macs_kept, b.macs_kept), (a.params_kept, b.params_kept)] {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }
    assert!(marks[0].accuracy != marks[1].accuracy, "{marks:?}");
    assert_eq!(marks[1].label(), "params=0.5");
}

/// `compare --target` lists the marks in the JSON and the table, and refuses a bad target first.
#[test]
fn compare_marks_budget_targets() {
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 600, 200);
    let out = tmp.path().join("cmp");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
            .args(["--threads", "1", "--json", "compare", "--model", "cifar_resnet18:width=4,in=1,size=8,classes=10"])
            .arg("--fmnist-dir")
            .arg(tmp.path())
            .args([
                "--criteria",
                "weight,taylor",
                "--refs-per-class",
                "1",
                "--eval-samples",
                "50",
                "--rates",
                "0:0.4:0.2",
            ])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = run(&["--target", "macs=0.5", "--target", "params=0.7"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for res in r["results"].as_array().unwrap() {
        let marks = res["marks"].as_array().unwrap();
        assert_eq!(marks.len(), 2);
        assert!(marks[0]["macs_kept"].as_f64().unwrap() <= 0.5);
        assert!(marks[1]["params_kept"].as_f64().unwrap() <= 0.7);
        assert!(marks[0]["accuracy"].as_f64().is_some());
    }
    assert!(out.join("compare.png").exists());
    for (args, want) in [
        (&["--target", "flops=0.5"][..], "unknown target"),
        (&["--target", "macs=1.5"][..], "between 0 and 1"),
        (&["--selection", "cost-aware"][..], "--target"),
    ] {
        let o = run(args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(want), "{args:?}: {e}");
    }
}

/// `--normalize` on curves scales the scores per layer before the ranking, as `prune` does: a
/// criterion that fixes its normalisation draws the curve of the scaled scores, which differs
/// from the raw ranking's (the curve's default for a criterion that leaves it open).
#[test]
fn curves_take_the_per_layer_normalisation_of_prune() {
    use relprune::attribution::CriterionSpec;
    use relprune::experiment::{measure_curve, run_criterion, score, RunOptions, Task, TaskSpec};
    use relprune::prune::ranking::{normalize_per_layer, LayerNormalization};
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 600, 200);
    let splits = relprune::data::fashion_mnist::load_splits(tmp.path()).unwrap();
    let task =
        Task::prepare(&splits, 10, &TaskSpec { refs_per_class: 1, eval_samples: 50, ..Default::default() }).unwrap();
    let g = &models()[1];
    let comps = ComponentSet::find(g, ComponentKind::Filters).unwrap();
    let opts = RunOptions { rates: relprune::prune::ranking::parse_rates("0:0.6:0.3").unwrap(), ..Default::default() };
    let weight = CriterionSpec::from_name("weight", None, 0).unwrap();
    let curve = |spec: &CriterionSpec| {
        run_criterion(&mut g.deep_clone(), &comps, &task, spec, &opts, &mut |_| {}).unwrap().curve
    };
    let mean = curve(&weight.clone().with_normalization(Some(LayerNormalization::Mean)).unwrap());
    let raw_scores = score(g, &comps, &task, &weight, 16).unwrap();
    let scaled_scores = normalize_per_layer(&raw_scores, &comps, LayerNormalization::Mean);
    let scaled = measure_curve(&mut g.deep_clone(), &comps, &scaled_scores, &task, &opts, &mut |_| {}).unwrap();
    let raw = curve(&weight);
    assert_eq!(mean.pruned_per_layer, scaled.pruned_per_layer);
    assert_eq!(mean.accuracies, scaled.accuracies);
    assert_ne!(mean.pruned_per_layer, raw.pruned_per_layer);
}

/// `prune`'s default per-layer normalisation follows the component kind: none for neurons (the
/// ViT rows of benchmarks/deploy), mean for filters (above); an explicit one is kept.
#[test]
fn prune_normalises_neurons_raw_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
            .args([
                "--threads",
                "1",
                "--json",
                "prune",
                "--model",
                "vit:size=8,patch=4,layers=1,heads=2,dim=8,mlp=16,in=1,classes=10",
            ])
            .args(["--data", "none", "--criterion", "weight", "--rate", "0.25", "--latency-runs", "1"])
            .args(extra)
            .arg("--out")
            .arg(tmp.path().join("o"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    assert_eq!(run(&[])["normalize"], "none");
    assert_eq!(run(&["--normalize", "max"])["normalize"], "max");
    assert!(run(&[])["after"]["latency_batch64"]["median_ms"].as_f64().unwrap() > 0.0);
}

/// `prune --latency-runs 0` skips measuring latency (minutes on a large model on a CPU): the
/// report has no latency figures and no latency ratios, and everything else.
#[test]
fn prune_can_skip_the_latency_measurement() {
    let tmp = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
        .args(["--threads", "1", "--json", "prune", "--model", "cifar_vgg11_bn:width=4,hidden=16,in=1,size=8"])
        .args(["--data", "none", "--criterion", "weight", "--rate", "0.25", "--latency-runs", "0", "--out"])
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in ["latency_batch1", "latency_batch64"] {
        assert!(r["before"][k].is_null() && r["after"][k].is_null(), "{k}: {r}");
    }
    assert!(r["latency_ratio_batch1"].is_null() && r["latency_ratio_batch64"].is_null());
    assert!(r["macs_ratio"].as_f64().unwrap() < 1.0);
}
