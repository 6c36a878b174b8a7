//! Components, ranking, masks, curves and their error handling, on small graphs.

use relprune::attribution::spec::{CriterionSpec, CRITERION_NAMES};
use relprune::attribution::Scores;
use relprune::data::fashion_mnist::{split_train_file, GreyImages};
use relprune::data::{Dataset, SplitName, Splits};
use relprune::evaluate::summarize;
use relprune::experiment::{run_criterion, RunOptions, Task, TaskSpec};
use relprune::graph::{Graph, Mode, Op};
use relprune::models::Architecture;
use relprune::prune::components::{depth_groups, ComponentKind, ComponentSet, DepthGroup};
use relprune::prune::masking::apply_mask;
use relprune::prune::ranking::{parse_rates, PruneOrder, Ranking};
use std::sync::Arc;
use tch::{Kind, Tensor};

fn grey(n: usize, seed: u64) -> Arc<dyn Dataset> {
    use rand::RngExt;
    let mut rng = relprune::util::rng(seed);
    let bytes: Vec<u8> = (0..n * 64).map(|_| rng.random::<u8>()).collect();
    let labels = (0..n).map(|i| (i % 4) as i64).collect();
    Arc::new(GreyImages::from_bytes(&bytes, n, 8, 8, labels, "noise".into()).unwrap())
}

fn splits() -> Splits {
    split_train_file(grey(240, 1), grey(64, 2))
}

fn small_resnet() -> Graph {
    Architecture::parse("cifar_resnet18:width=4,in=1,size=8,classes=4").unwrap().build(7).unwrap()
}

fn small_vgg() -> Graph {
    Architecture::parse("cifar_vgg11_bn:width=4,hidden=16,in=1,size=8,classes=4").unwrap().build(7).unwrap()
}

fn task(s: &Splits) -> Task {
    Task::prepare(
        s,
        4,
        &TaskSpec { classes: None, seed: 3, refs_per_class: 5, split: SplitName::Test, eval_samples: 0 },
    )
    .unwrap()
}

fn snapshot(g: &Graph) -> Vec<(String, Tensor, bool)> {
    g.params().iter().map(|(k, t)| (k.clone(), t.detach().copy(), t.requires_grad())).collect()
}

fn unchanged(g: &Graph, snap: &[(String, Tensor, bool)]) -> bool {
    snap.iter().all(|(k, t, rg)| g.params().get(k).is_some_and(|u| u.equal(t) && u.requires_grad() == *rg))
}

#[test]
fn depth_groups_of_resnet18_and_vgg16_bn_are_three_ordered_conv_groups() {
    for arch in ["resnet18", "vgg16_bn"] {
        let g = Architecture::parse(arch).unwrap().build(0).unwrap();
        let groups = depth_groups(&g);
        let conv_groups: Vec<DepthGroup> = g
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.op, Op::Conv2d(_)))
            .map(|(i, _)| groups[i].unwrap())
            .collect();
        for want in [DepthGroup::Low, DepthGroup::Mid, DepthGroup::High] {
            assert!(conv_groups.contains(&want), "{arch}: no {want:?} convs");
        }
        assert!(conv_groups.windows(2).all(|w| w[0] <= w[1]), "{arch}: groups follow forward order");
        let fc: Vec<&str> = g
            .nodes()
            .iter()
            .enumerate()
            .filter(|(i, _)| groups[*i] == Some(DepthGroup::Fc))
            .map(|(_, n)| n.name.as_str())
            .collect();
        match arch {
            "resnet18" => assert_eq!(fc, ["fc"]),
            _ => assert_eq!(fc, ["classifier.0", "classifier.3", "classifier.6"]),
        }
    }
    let vgg = Architecture::parse("vgg16_bn").unwrap().build(0).unwrap();
    let neurons = ComponentSet::find(&vgg, ComponentKind::Neurons).unwrap();
    let names: Vec<&str> = neurons.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["classifier.0", "classifier.3"], "hidden neurons, never the classifier");
    assert_eq!(neurons.total, 8192);
    let filters = ComponentSet::find(&vgg, ComponentKind::Filters).unwrap();
    assert_eq!(filters.layers.len(), 13);
    assert_eq!(filters.total, 4224);
    let r18 = ComponentSet::find(&Architecture::parse("resnet18").unwrap().build(0).unwrap(), ComponentKind::Filters)
        .unwrap();
    assert_eq!(r18.layers.len(), 20, "17 convs + 3 downsample convs");
    assert!(r18.layers.iter().any(|l| l.name == "layer2.0.downsample.0"));
}

#[test]
fn no_prunable_components_is_an_error() {
    let e = ComponentSet::find(&small_resnet(), ComponentKind::Heads).unwrap_err();
    assert!(e.to_string().contains("no prunable heads"), "{e}");
    let e = ComponentSet::find(&small_resnet(), ComponentKind::Neurons).unwrap_err();
    assert!(e.to_string().contains("no prunable neurons"), "{e}");
}

#[test]
fn prune_sets_are_nested_and_floor_of_n_r() {
    let scores = Scores { values: (0..37).map(|i| ((i * 7919) % 37) as f64).collect() };
    let r = Ranking::new(&scores, PruneOrder::LeastRelevantFirst);
    let rates = parse_rates("0:0.95:0.05").unwrap();
    assert_eq!(rates.len(), 20);
    let mut prev: &[usize] = &[];
    for &rate in &rates {
        let sel = r.selection(rate).unwrap();
        assert_eq!(sel.len(), (37.0 * rate + 1e-9).floor() as usize);
        assert!(sel.starts_with(prev), "selection at {rate} must contain the previous one");
        prev = sel;
    }
    assert!(r.order.windows(2).all(|w| scores.values[w[0]] <= scores.values[w[1]]));
    assert!(r.selection(1.0).is_err() && r.selection(-0.1).is_err());
    assert!(parse_rates("0,0.5,1.2").is_err());
    assert!(parse_rates("0.5,0.2").is_err());
}

#[test]
fn masks_zero_the_units_and_restore_bit_for_bit() {
    let mut g = small_vgg();
    let before = snapshot(&g);
    let x = Tensor::randn([3, 1, 8, 8], (Kind::Float, tch::Device::Cpu));
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let selected: Vec<usize> = (0..comps.total).step_by(3).collect();
    {
        let guard = apply_mask(&mut g, &comps, &selected).unwrap();
        let outs = tch::no_grad(|| guard.forward_all(&[x.shallow_clone()], Mode::Eval)).unwrap();
        for &i in &selected {
            let (layer, unit) = comps.locate(i);
            let ch = outs[layer.read_at].select(1, unit as i64);
            assert_eq!(ch.abs().max().double_value(&[]), 0.0, "masked filter {unit} of {} still active", layer.name);
        }
    }
    assert!(unchanged(&g, &before), "dropping the guard restores every parameter exactly");
    let neurons = ComponentSet::find(&g, ComponentKind::Neurons).unwrap();
    {
        let guard = apply_mask(&mut g, &neurons, &[0, 5, 17]).unwrap();
        let outs = tch::no_grad(|| guard.forward_all(&[x.shallow_clone()], Mode::Eval)).unwrap();
        for i in [0usize, 5, 17] {
            let (l, u) = neurons.locate(i);
            assert_eq!(outs[l.node].select(1, u as i64).abs().max().double_value(&[]), 0.0);
        }
    }
    assert!(unchanged(&g, &before));
    assert!(apply_mask(&mut g, &neurons, &[neurons.total]).is_err());
}

#[test]
fn every_criterion_leaves_the_graph_as_it_found_it_and_is_deterministic() {
    let s = splits();
    let t = task(&s);
    let mut g = small_resnet();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let snap = snapshot(&g);
    let opts = RunOptions { rates: parse_rates("0:0.75:0.25").unwrap(), attribution_batch: 7, ..Default::default() };
    for name in CRITERION_NAMES {
        let spec = CriterionSpec::from_name(name, None, 11).unwrap();
        let a = run_criterion(&mut g, &comps, &t, &spec, &opts, &mut |_| {}).unwrap();
        assert!(unchanged(&g, &snap), "{name} changed the graph");
        let b = run_criterion(&mut g, &comps, &t, &spec, &opts, &mut |_| {}).unwrap();
        assert_eq!(a.curve.accuracies, b.curve.accuracies, "{name}: same seed, same curve");
        let s1 = relprune::experiment::score(&g, &comps, &t, &spec, 7).unwrap();
        let s2 = relprune::experiment::score(&g, &comps, &t, &spec, 64).unwrap();
        for (x, y) in s1.values.iter().zip(&s2.values) {
            assert!(
                (x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1e-6),
                "{name}: batching changed a score: {x} vs {y}"
            );
        }
    }
}

#[test]
fn nan_scores_are_an_error_naming_the_layer() {
    let s = splits();
    let t = task(&s);
    let mut g = small_resnet();
    let key = "layer3.0.conv1.weight".to_string();
    let w = g.params().get(&key).unwrap().copy();
    let _ = tch::no_grad(|| w.get(0).get(0).fill_(f64::NAN));
    g.params_mut().insert(key, w);
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let e = relprune::experiment::score(&g, &comps, &t, &CriterionSpec::from_name("lrp-epsilon", None, 0).unwrap(), 16)
        .unwrap_err();
    assert!(e.to_string().contains("non-finite score"), "{e}");
}

#[test]
fn summary_figures() {
    let rates = [0.0, 0.25, 0.5, 0.75];
    let acc = [0.9, 0.895, 0.86, 0.2];
    let s = summarize(&rates, &acc, 0.9);
    assert!((s.a_pr - (0.9 + 0.895 + 0.86 + 0.2) / 4.0).abs() < 1e-12);
    let auc = 0.25 * ((0.9 + 0.895) / 2.0 + (0.895 + 0.86) / 2.0 + (0.86 + 0.2) / 2.0);
    assert!((s.auc_trapezoid - auc).abs() < 1e-12);
    assert_eq!(s.top_pr_95, 0.5, "0.86 ≥ 0.95·0.9 = 0.855");
    assert_eq!(s.top_pr_1pt, 0.25, "0.895 is within one point of 0.9, 0.86 is not");
    // A recovery after a drop does not count.
    let s = summarize(&rates, &[0.9, 0.5, 0.9, 0.9], 0.9);
    assert_eq!(s.top_pr_95, 0.0);
}

#[test]
fn stopping_at_chance_fills_the_rest_and_says_so() {
    let s = splits();
    let t = task(&s);
    let mut g = small_resnet();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let spec = CriterionSpec::from_name("random", None, 0).unwrap();
    let opts = RunOptions { rates: parse_rates("0:0.95:0.05").unwrap(), stop_at_chance: true, ..Default::default() };
    let r = run_criterion(&mut g, &comps, &t, &spec, &opts, &mut |_| {}).unwrap();
    // An untrained net on noise is at chance from the start.
    let i = r.curve.filled_from.expect("stopped early");
    assert!(r.curve.accuracies[i..].iter().all(|&a| a == 0.25));
    assert_eq!(r.curve.accuracies.len(), 20);
    // Where the global ranking takes its filters from, per layer and rate.
    assert_eq!(r.layers.len(), comps.layers.len());
    assert_eq!(r.curve.pruned_per_layer.len(), 20);
    for (per_layer, &total) in r.curve.pruned_per_layer.iter().zip(&r.curve.pruned) {
        assert_eq!(per_layer.iter().sum::<usize>(), total);
        assert!(per_layer.iter().zip(&r.layers).all(|(&k, l)| k <= l.units));
    }
    let first_half: Vec<usize> = (0..comps.total / 2).collect();
    let mut expect = vec![0; comps.layers.len()];
    for (l, layer) in comps.layers.iter().enumerate() {
        expect[l] = layer.count.min((comps.total / 2).saturating_sub(layer.offset));
    }
    assert_eq!(relprune::prune::ranking::units_per_layer(&comps, &first_half), expect);
}

/// The optimiser measures rates coarse first; the curve must not depend on the order: the same
/// accuracies, counts and kept fractions as ascending, on masks, physically, and on a MACs axis.
#[test]
fn coarse_first_visit_gives_the_ascending_curve() {
    use relprune::evaluate::{CurveAxis, RateVisit};
    let s = splits();
    let t = task(&s);
    let mut g = small_resnet();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let spec = CriterionSpec::from_name("weight", None, 0).unwrap();
    let base = RunOptions { rates: parse_rates("0:0.9:0.1").unwrap(), ..Default::default() };
    for opts in [
        base.clone(),
        RunOptions { physical: true, ..base.clone() },
        RunOptions { axis: CurveAxis::Macs, rates: parse_rates("0:0.6:0.1").unwrap(), ..base.clone() },
    ] {
        let asc = run_criterion(&mut g, &comps, &t, &spec, &opts, &mut |_| {}).unwrap().curve;
        let coarse = RunOptions { visit: RateVisit::CoarseFirst, ..opts.clone() };
        let c = run_criterion(&mut g, &comps, &t, &spec, &coarse, &mut |_| {}).unwrap().curve;
        assert_eq!(asc.accuracies, c.accuracies, "physical {} axis {:?}", opts.physical, opts.axis);
        assert_eq!((&asc.pruned, &asc.pruned_per_layer, &asc.kept), (&c.pruned, &c.pruned_per_layer, &c.kept));
        assert_eq!(asc.summary.a_pr, c.summary.a_pr);
    }
}

#[test]
fn cli_errors_leave_no_result_files() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("res");
    let bin = env!("CARGO_BIN_EXE_relprune");
    for args in [
        vec!["curve", "--model", "cifar_resnet18:width=4,in=1,size=28,classes=10", "--criterion", "lrp-bogus"],
        vec!["curve", "--model", "cifar_resnet18:width=4,in=1,size=28,classes=10", "--rates", "0,0.5,1.5"],
        vec![
            "curve",
            "--model",
            "cifar_resnet18:width=4,in=1,size=28,classes=10",
            "--criterion",
            "lrp",
            "--rules",
            "mid=gama",
        ],
        vec!["curve", "--model", "cifar_resnet18:width=4,in=1,size=28,classes=10", "--component", "heads"],
        vec!["curve", "--model", "cifar_resnet18:width=4,in=1,size=28,classes=10", "--refs-per-class", "0"],
    ] {
        let o = std::process::Command::new(bin).args(&args).arg("--out").arg(&dir).output().unwrap();
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert!(!dir.exists(), "{args:?} left {dir:?} behind");
    }
}

#[test]
fn criteria_rank_the_trained_zoo_resnet_differently() {
    let (model, manifest) = relprune::models::zoo::load("fmnist-resnet18").unwrap();
    let splits = manifest.recipe.data.splits(None).expect("Fashion-MNIST (run ./run-tests)");
    let spec = TaskSpec { classes: Some(3), refs_per_class: 5, eval_samples: 10, ..TaskSpec::default() };
    let t = Task::prepare(&splits, 10, &spec).unwrap();
    let comps = ComponentSet::find(&model.graph, ComponentKind::Filters).unwrap();
    let names = ["lrp-epsilon", "lrp-zplus", "gradient", "taylor", "activation", "weight", "random"];
    // The 30 % each criterion would prune first.
    let pruned: Vec<std::collections::HashSet<usize>> = names
        .iter()
        .map(|n| {
            let spec = CriterionSpec::from_name(n, None, 0).unwrap();
            let scores = relprune::experiment::score(&model.graph, &comps, &t, &spec, 16).unwrap();
            Ranking::new(&scores, PruneOrder::LeastRelevantFirst).selection(0.3).unwrap().iter().copied().collect()
        })
        .collect();
    for i in 0..names.len() {
        for j in i + 1..names.len() {
            let shared = pruned[i].intersection(&pruned[j]).count();
            assert!(shared < pruned[i].len(), "{} and {} prune the same 30 %", names[i], names[j]);
        }
    }
}
