//! Physical pruning: the smaller graph computes exactly what the masked graph computes at the
//! same (group-level) selection, on every supported architecture; saving and reloading keeps
//! it; parameter counts follow the arithmetic; pruning nothing is the identity.

mod common;

use relprune::attribution::Scores;
use relprune::graph::ops::*;
use relprune::graph::{stats, Graph, Mode};
use relprune::models::{load_model, Architecture};
use relprune::prune::components::{ComponentKind, ComponentSet, Components};
use relprune::prune::masking::apply_mask;
use relprune::prune::ranking::PruneOrder;
use relprune::prune::surgery::{prune, GroupRanking};
use tch::{Kind, Tensor};

fn random_scores(n: usize, seed: u64) -> Scores {
    use rand::RngExt;
    let mut rng = relprune::util::rng(seed);
    Scores { values: (0..n).map(|_| rng.random::<f64>()).collect() }
}

fn inputs(g: &Graph) -> Vec<Tensor> {
    tch::manual_seed(11);
    stats::example_inputs(g, 12)
        .into_iter()
        .map(|t| match t.kind() {
            Kind::Float => Tensor::randn([2, t.size()[1], t.size()[2], t.size()[3]], (Kind::Float, tch::Device::Cpu)),
            _ if t.size() == [1, 12] && t.int64_value(&[0, 0]) == 0 => {
                Tensor::randint(90, [2, 12], (Kind::Int64, tch::Device::Cpu)) + 5
            }
            _ => {
                let m = Tensor::ones([2, 12], (Kind::Int64, tch::Device::Cpu));
                let _ = m.get(1).narrow(0, 8, 4).fill_(0);
                m
            }
        })
        .collect()
}

/// Random non-trivial BatchNorm statistics / classifier, so that equivalence is really tested.
fn perturb(g: &mut Graph) {
    tch::manual_seed(5);
    let keys: Vec<String> = g.params().keys().cloned().collect();
    for k in keys {
        let t = g.params().get(&k).unwrap();
        if !t.is_floating_point() {
            continue;
        }
        let v = if k.ends_with("running_var") {
            t.rand_like() + 0.5
        } else if k.ends_with("bias")
            || k.ends_with("running_mean")
            || k.starts_with("heads.head")
            || k == "class_token"
        {
            t.randn_like() * 0.1
        } else {
            t.shallow_clone()
        };
        g.params_mut().insert(k, v);
    }
}

fn check(mut g: Graph, kind: impl Into<Components>, rate: f64) -> (Graph, Graph) {
    perturb(&mut g);
    let kind = kind.into();
    let comps = ComponentSet::find(&g, kind.clone()).unwrap();
    let ranking =
        GroupRanking::new(&g, &comps, &random_scores(comps.total, 3), PruneOrder::LeastRelevantFirst).unwrap();
    let sel = ranking.selection(rate).unwrap();
    assert!(!sel.is_empty(), "something is selected");
    let x = inputs(&g);
    let before = tch::no_grad(|| g.forward(&x, Mode::Eval)).unwrap();
    let (small, report) = prune(&g, &comps, &ranking, &sel).unwrap();
    assert!(report.removed_components <= (comps.total as f64 * rate) as usize);
    assert!(small.num_parameters() < g.num_parameters());
    let masked = {
        let guard = apply_mask(&mut g, &comps, &ranking.component_indices(&comps, &sel)).unwrap();
        tch::no_grad(|| guard.forward(&x, Mode::Eval)).unwrap()
    };
    let pruned = tch::no_grad(|| small.forward(&x, Mode::Eval)).unwrap();
    let scale = masked.abs().max().double_value(&[]).max(1e-6);
    let err = (&pruned - &masked).abs().max().double_value(&[]) / scale;
    assert!(err < 1e-4, "{kind} at rate {rate}: pruned vs masked relative error {err:e}");
    let after = tch::no_grad(|| g.forward(&x, Mode::Eval)).unwrap();
    assert!(before.equal(&after), "the input graph is untouched");
    assert_plan_describes_surgery(&g, &small, &report.plan);
    (g, small)
}

/// The plan is exact: every pruned parameter is its unpruned tensor indexed by the plan's kept
/// indices, dimension by dimension, and every parameter the plan does not name is unchanged
/// (a front end slices the user's own tensors by it).
fn assert_plan_describes_surgery(g: &Graph, small: &Graph, plan: &relprune::prune::plan::Plan) {
    assert!(!plan.params.is_empty() && !plan.layers.is_empty());
    for (key, t) in g.params().iter() {
        let got = small.params().get(key).unwrap_or_else(|| panic!("`{key}` is gone after surgery"));
        let want = match plan.params.get(key) {
            Some(p) => {
                assert_eq!(p.shape, t.size(), "{key}: the plan's unpruned shape");
                p.kept.iter().fold(t.shallow_clone(), |acc, (dim, kept)| {
                    acc.index_select(*dim as i64, &Tensor::from_slice(kept))
                })
            }
            None => t.shallow_clone(),
        };
        assert!(got.equal(&want), "`{key}` is not what the plan says");
    }
    for (name, layer) in &plan.layers {
        assert!(layer.kept.windows(2).all(|w| w[0] < w[1]), "{name}: kept units ascending");
        assert_eq!(layer.kept.len() + layer.removed().len(), layer.count as usize, "{name}");
    }
}

#[test]
fn resnet18_and_resnet50_filters() {
    for arch in ["resnet18:size=64", "resnet50:size=64"] {
        let g = Architecture::parse(arch).unwrap().build(1).unwrap();
        for rate in [0.3, 0.6] {
            check(g.deep_clone(), ComponentKind::Filters, rate);
        }
    }
}

#[test]
fn vgg16_bn_filters_and_neurons() {
    let g = Architecture::parse("vgg16_bn:size=32,hidden=256").unwrap().build(1).unwrap();
    check(g.deep_clone(), ComponentKind::Filters, 0.5);
    check(g, ComponentKind::Neurons, 0.5);
}

#[test]
fn cifar_variants_and_zoo_cnns() {
    for arch in
        ["cifar_resnet18:width=8,in=1,size=28,classes=10", "cifar_vgg11_bn:width=8,hidden=32,in=1,size=28,classes=10"]
    {
        check(Architecture::parse(arch).unwrap().build(2).unwrap(), ComponentKind::Filters, 0.5);
    }
    for name in ["fmnist-resnet18", "fmnist-vgg16bn"] {
        check(load_model(name, None, 0).unwrap().graph, ComponentKind::Filters, 0.5);
    }
}

#[test]
fn vit_heads_and_neurons() {
    let g =
        Architecture::parse("vit:size=32,patch=8,layers=3,heads=4,dim=32,mlp=64,classes=10").unwrap().build(1).unwrap();
    check(g.deep_clone(), ComponentKind::Neurons, 0.5);
    joint(g.deep_clone());
    let (_, small) = check(g.deep_clone(), ComponentKind::Heads, 0.5);
    let heads: Vec<i64> = small
        .nodes()
        .iter()
        .filter_map(|n| match n.op {
            relprune::graph::Op::Attention(Attention { heads, .. }) => Some(heads),
            _ => None,
        })
        .collect();
    assert_eq!(heads.iter().sum::<i64>(), 6, "6 of 12 heads remain: {heads:?}");
    // A layer may lose every head and become a pure residual.
    let (_, small) = check(g, ComponentKind::Heads, 0.95);
    assert!(small.nodes().iter().any(|n| matches!(n.op, relprune::graph::Op::Attention(Attention { heads: 0, .. }))));
}

#[test]
fn bert_heads_and_neurons() {
    let arch = "bert:vocab=100,dim=32,layers=2,heads=4,mlp=64,positions=16,max_len=16,pooling=cls,classes=3";
    let g = Architecture::parse(arch).unwrap().build(1).unwrap();
    check(g.deep_clone(), ComponentKind::Heads, 0.5);
    joint(g.deep_clone());
    check(g, ComponentKind::Neurons, 0.5);
}

/// Neurons and heads in one set (`--component neurons+heads`): one numbering in forward order,
/// the two kinds' groups side by side, and a selection that takes both kinds prunes physically
/// as it masks.
fn joint(g: Graph) {
    let both: Components = "neurons+heads".parse().unwrap();
    let comps = ComponentSet::find(&g, both.clone()).unwrap();
    let (n, h) = (
        ComponentSet::find(&g, ComponentKind::Neurons).unwrap(),
        ComponentSet::find(&g, ComponentKind::Heads).unwrap(),
    );
    assert_eq!(comps.total, n.total + h.total);
    assert!(comps.layers.windows(2).all(|w| w[0].node < w[1].node && w[1].offset == w[0].offset + w[0].count));
    let kinds: Vec<ComponentKind> = comps.layers.iter().map(|l| l.kind).collect();
    assert!(kinds.contains(&ComponentKind::Heads) && kinds.contains(&ComponentKind::Neurons));
    let groups = relprune::prune::components::coupled_groups(&g, &comps).unwrap();
    assert_eq!(
        groups.len(),
        relprune::prune::components::coupled_groups(&g, &n).unwrap().len() + h.layers.len(),
        "every attention layer's heads are a group of their own"
    );
    let (_, small) = check(g.deep_clone(), both, 0.5);
    let count = |g: &Graph, kind| ComponentSet::find(g, kind).unwrap().total;
    assert!(count(&small, ComponentKind::Neurons) < n.total, "neurons were removed");
    assert!(count(&small, ComponentKind::Heads) < h.total, "heads were removed");
}

#[test]
fn zoo_transformers() {
    for name in ["fmnist-vit", "minilm-spam"] {
        let g = load_model(name, None, 0).unwrap().graph;
        check(g.deep_clone(), ComponentKind::Heads, 0.5);
        joint(g.deep_clone());
        check(g, ComponentKind::Neurons, 0.5);
    }
}

#[test]
fn residual_coupling_groups_and_parameter_arithmetic() {
    let g = Architecture::parse("resnet18:size=64").unwrap().build(1).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let groups = relprune::prune::components::coupled_groups(&g, &comps).unwrap();
    let names = |i: usize| -> Vec<&str> { groups[i].members.iter().map(|&m| comps.layers[m].name.as_str()).collect() };
    let stage1 = groups.iter().position(|gr| gr.members.iter().any(|&m| comps.layers[m].name == "conv1")).unwrap();
    assert_eq!(
        names(stage1),
        ["conv1", "layer1.0.conv2", "layer1.1.conv2"],
        "the stem and layer1's residual stream are one group"
    );
    let stage2 = groups
        .iter()
        .position(|gr| gr.members.iter().any(|&m| comps.layers[m].name == "layer2.0.downsample.0"))
        .unwrap();
    assert_eq!(names(stage2), ["layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2"]);
    assert_eq!(groups.len(), 8 + 4, "8 inner convs alone, 4 residual streams");
    // Removing k channels of layer1.0.conv1 (3×3, 64→64, followed by BN and conv2 64→64):
    // 64·9·k (its rows) + 2k (BN affine) + 64·9·k (conv2's columns) parameters go.
    let inner = groups.iter().position(|gr| names_of(&comps, gr) == ["layer1.0.conv1"]).unwrap();
    let ranking =
        GroupRanking::new(&g, &comps, &random_scores(comps.total, 1), PruneOrder::LeastRelevantFirst).unwrap();
    let sel: Vec<(usize, usize)> = (0..5).map(|u| (inner, u)).collect();
    let (small, _) = prune(&g, &comps, &ranking, &sel).unwrap();
    assert_eq!(g.num_parameters() - small.num_parameters(), 5 * (64 * 9 + 2 + 64 * 9));
    // Pruning nothing is the identity.
    let (same, r) = prune(&g, &comps, &ranking, &[]).unwrap();
    assert_eq!(r.removed_units, 0);
    assert_eq!(same.spec(), g.spec());
    // Emptying a conv layer is refused, and the input graph stays as it was.
    let all: Vec<(usize, usize)> = (0..64).map(|u| (inner, u)).collect();
    let e = prune(&g, &comps, &ranking, &all).err().unwrap().to_string();
    assert!(e.contains("removes every channel"), "{e}");
}

fn names_of<'a>(comps: &'a ComponentSet, g: &relprune::prune::components::CoupledGroup) -> Vec<&'a str> {
    g.members.iter().map(|&m| comps.layers[m].name.as_str()).collect()
}

#[test]
fn pruned_model_reloads_in_a_fresh_process() {
    let g = load_model("fmnist-resnet18", None, 0).unwrap().graph;
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let ranking =
        GroupRanking::new(&g, &comps, &random_scores(comps.total, 9), PruneOrder::LeastRelevantFirst).unwrap();
    let (small, _) = prune(&g, &comps, &ranking, &ranking.selection(0.4).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    small.save(dir.path()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
        .args(["--json", "info", "--model"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["parameters"].as_i64().unwrap(), small.num_parameters());
    let reloaded = Graph::load(dir.path()).unwrap();
    let x = Tensor::randn([3, 1, 28, 28], (Kind::Float, tch::Device::Cpu));
    let a = tch::no_grad(|| small.forward(&[x.shallow_clone()], Mode::Eval)).unwrap();
    let b = tch::no_grad(|| reloaded.forward(&[x], Mode::Eval)).unwrap();
    assert!(a.equal(&b));
}

#[test]
fn prune_command_writes_a_reloadable_model_onnx_and_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    common::synthetic_fmnist(&data, 1200, 200);
    let out = tmp.path().join("out");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
        .args(["--json", "prune", "--model", "cifar_resnet18:width=8,in=1,size=8,classes=10", "--fmnist-dir"])
        .arg(&data)
        .args([
            "--criterion",
            "lrp-zplus",
            "--rate",
            "0.4",
            "--refs-per-class",
            "2",
            "--eval-samples",
            "50",
            "--latency-runs",
            "3",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report["parameter_ratio"].as_f64().unwrap() < 1.0);
    assert!(report["macs_ratio"].as_f64().unwrap() < 1.0);
    assert!(report["after"]["latency_batch64"]["median_ms"].as_f64().unwrap() > 0.0);
    for f in ["model/graph.json", "model/model.safetensors", "model.onnx", "prune.json"] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    let m = load_model(out.join("model").to_str().unwrap(), None, 0).unwrap();
    assert_eq!(m.graph.num_parameters(), report["after"]["parameters"].as_i64().unwrap());
    // Bad rates are refused before any work.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
        .args(["prune", "--model", "cifar_resnet18:width=8,in=1,size=8,classes=10", "--rate", "1.0", "--out"])
        .arg(tmp.path().join("nope"))
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("outside [0, 1)"));
    assert!(!tmp.path().join("nope").exists());
}

#[test]
fn physical_curve_equals_masked_curve_at_group_level() {
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 1200, 200);
    let splits = relprune::data::fashion_mnist::load_splits(tmp.path()).unwrap();
    let mut g = Architecture::parse("cifar_resnet18:width=8,in=1,size=8,classes=10").unwrap().build(4).unwrap();
    perturb(&mut g);
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let task = relprune::experiment::Task::prepare(
        &splits,
        10,
        &relprune::experiment::TaskSpec { refs_per_class: 2, eval_samples: 100, ..Default::default() },
    )
    .unwrap();
    let scores = random_scores(comps.total, 2);
    let opts = relprune::experiment::RunOptions {
        rates: relprune::prune::ranking::parse_rates("0:0.8:0.2").unwrap(),
        physical: true,
        ..Default::default()
    };
    // One curve loop serves both: the physical curve goes through the same code as the masked one.
    let phys =
        relprune::experiment::measure_curve(&mut g.deep_clone(), &comps, &scores, &task, &opts, &mut |_| {}).unwrap();
    let ranking = GroupRanking::new(&g, &comps, &scores, PruneOrder::LeastRelevantFirst).unwrap();
    for (i, &rate) in opts.rates.iter().enumerate() {
        let sel = ranking.component_indices(&comps, &ranking.selection(rate).unwrap());
        assert_eq!(phys.pruned_per_layer[i], relprune::prune::ranking::units_per_layer(&comps, &sel), "rate {rate}");
        assert_eq!(phys.pruned_per_layer[i].iter().sum::<usize>(), sel.len());
        let guard = apply_mask(&mut g, &comps, &sel).unwrap();
        let acc = relprune::evaluate::accuracy(&guard, &task.eval, &task.eval_options(256)).unwrap();
        assert_eq!(acc, phys.accuracies[i], "rate {rate}");
    }
}

#[test]
fn mobilenets_filters_and_neurons() {
    for arch in
        ["mobilenet_v2:size=64,classes=10", "mobilenet_v3_small:size=64,classes=10", "mobilenet_v3_large:size=32"]
    {
        let g = Architecture::parse(arch).unwrap().build(1).unwrap();
        for rate in [0.3, 0.6] {
            check(g.deep_clone(), ComponentKind::Filters, rate);
        }
    }
    // MobileNetV3's classifier has a hidden layer; V2's expanded channels are filters.
    let g = Architecture::parse("mobilenet_v3_small:size=64,classes=10").unwrap().build(1).unwrap();
    check(g, ComponentKind::Neurons, 0.5);
}

/// A custom CNN as users write them: Dropout between Flatten and Linear (the Linear must lose
/// the flattened columns of removed channels), and a grouped conv, whose channels stay (its
/// groups are blocked, with the reason) while every other layer is pruned.
#[test]
fn dropout_after_flatten_and_grouped_convs() {
    use relprune::graph::GraphBuilder;
    let mut b = GraphBuilder::new();
    let x = b.input("x", InputKind::Image { channels: 3, height: 8, width: 8 });
    let mut y = b.add("c1", Op::Conv2d(Conv2d::new(3, 8, 3).padding(1)), &[x]);
    y = b.add("b1", Op::BatchNorm2d(BatchNorm2d::new(8)), &[y]);
    y = b.add("r1", Op::Relu(Relu), &[y]);
    y = b.add("g2", Op::Conv2d(Conv2d::new(8, 8, 3).padding(1).groups(2)), &[y]);
    y = b.add("r2", Op::Relu(Relu), &[y]);
    y = b.add("c3", Op::Conv2d(Conv2d::new(8, 6, 3).padding(1).stride(2)), &[y]);
    y = b.add("r3", Op::Relu(Relu), &[y]);
    y = b.add("flat", Op::Flatten(Flatten { start_dim: 1 }), &[y]);
    y = b.add("drop", Op::Dropout(Dropout { p: 0.5 }), &[y]);
    y = b.add("fc1", Op::Linear(Linear::new(6 * 16, 10)), &[y]);
    y = b.add("act", Op::Hardtanh(Hardtanh::relu6()), &[y]);
    let out = b.add("fc2", Op::Linear(Linear::new(10, 4)), &[y]);
    let g = b.finish(out, 3).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let groups = relprune::prune::components::coupled_groups(&g, &comps).unwrap();
    let blocked: Vec<Vec<&str>> =
        groups.iter().filter(|gr| gr.blocked.is_some()).map(|gr| names_of(&comps, gr)).collect();
    assert_eq!(blocked, vec![vec!["c1"], vec!["g2"]], "the grouped conv's input and output spaces are blocked");
    assert!(groups
        .iter()
        .find(|gr| names_of(&comps, gr) == ["g2"])
        .unwrap()
        .blocked
        .as_ref()
        .unwrap()
        .contains("grouped"));
    let (_, small) = check(g.deep_clone(), ComponentKind::Filters, 0.3);
    assert!(matches!(&small.node(small.find("fc1").unwrap()).op, Op::Linear(l) if l.in_features < 96));
    check(g, ComponentKind::Neurons, 0.5);
}

#[test]
fn efficientnet_and_resnext_filters() {
    // EfficientNet: the expanded channels tie the expand conv to the squeeze-and-excitation
    // gate's second conv; the gate's hidden channels are their own group.
    let g = Architecture::parse("efficientnet_b0:size=64,classes=10").unwrap().build(1).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let groups = relprune::prune::components::coupled_groups(&g, &comps).unwrap();
    let find = |name: &str| groups.iter().find(|gr| names_of(&comps, gr).contains(&name)).unwrap();
    assert_eq!(
        names_of(&comps, find("features.2.0.block.0.0")),
        ["features.2.0.block.0.0", "features.2.0.block.2.fc2"]
    );
    assert_eq!(names_of(&comps, find("features.2.0.block.2.fc1")), ["features.2.0.block.2.fc1"]);
    assert!(groups.iter().all(|gr| gr.blocked.is_none() || names_of(&comps, gr).contains(&"classifier.1")));
    for rate in [0.3, 0.6] {
        check(g.deep_clone(), ComponentKind::Filters, rate);
    }
    // RegNet-Y: grouped convs and gates; the stage widths are prunable through the residuals.
    let g = Architecture::parse("regnet_y_400mf:size=32,classes=10").unwrap().build(1).unwrap();
    check(g, ComponentKind::Filters, 0.3);
    // ResNeXt: the grouped 3×3 convs keep their channels, the rest is pruned.
    for arch in ["resnext50_32x4d:size=64,classes=10", "wide_resnet50_2:size=32,classes=10"] {
        check(Architecture::parse(arch).unwrap().build(1).unwrap(), ComponentKind::Filters, 0.3);
    }
}

#[test]
fn densenet_filters_through_concatenations() {
    // A removed channel leaves every later concatenation of its block, the BatchNorms reading
    // them and the 1×1 convs after them.
    let g = Architecture::parse("densenet121:size=32,classes=10").unwrap().build(1).unwrap();
    for rate in [0.3, 0.6] {
        check(g.deep_clone(), ComponentKind::Filters, rate);
    }
}

#[test]
fn single_input_concat_passes_channels_on() {
    // `torch.cat([x], 1)` (torchvision's DenseNet) is the identity: a removed channel still
    // reaches the BatchNorm after it, whose shift would otherwise turn it into a constant.
    use relprune::graph::GraphBuilder;
    let mut b = GraphBuilder::new();
    let x = b.input("x", InputKind::Image { channels: 3, height: 8, width: 8 });
    let c0 = b.add("c0", Op::Conv2d(Conv2d::new(3, 8, 3).padding(1)), &[x]);
    let r0 = b.add("r0", Op::Relu(Relu), &[c0]);
    let cat1 = b.add("cat1", Op::Concat(Concat { dim: 1 }), &[r0]);
    let bn = b.add("bn", Op::BatchNorm2d(BatchNorm2d::new(8)), &[cat1]);
    let r1 = b.add("r1", Op::Relu(Relu), &[bn]);
    let c1 = b.add("c1", Op::Conv2d(Conv2d::new(8, 4, 3).padding(1)), &[r1]);
    let cat2 = b.add("cat2", Op::Concat(Concat { dim: 1 }), &[r0, c1]);
    let p = b.add("pool", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [1, 1] }), &[cat2]);
    let f = b.add("flat", Op::Flatten(Flatten { start_dim: 1 }), &[p]);
    let out = b.add("fc", Op::Linear(Linear { in_features: 12, out_features: 3, bias: true }), &[f]);
    check(b.finish(out, 1).unwrap(), ComponentKind::Filters, 0.3);
}

#[test]
fn convnext_hidden_channels() {
    // The residual stream is normalised over its channels (blocked); the MLP's hidden channels go.
    let g = Architecture::parse("convnext_tiny:size=32,classes=10").unwrap().build(1).unwrap();
    check(g, ComponentKind::Filters, 0.3);
}

/// The pruned graph owns its parameters: changing every one of them in place (as fine-tuning
/// does) leaves the source model unchanged, also in layers the selection did not touch. Before
/// this, unedited layers were views, so fine-tuning a pruned VGG trained its classifier inside the
/// unpruned model too (the distillation teacher, and the "before" accuracy of `prune`).
#[test]
fn a_pruned_graph_shares_no_parameter_with_its_source() {
    let g = Architecture::parse("cifar_vgg11_bn:width=4,hidden=16,in=1,size=8,classes=10").unwrap().build(1).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let ranking =
        GroupRanking::new(&g, &comps, &random_scores(comps.total, 3), PruneOrder::LeastRelevantFirst).unwrap();
    // One unit only: most layers (the classifier's Linears among them) keep their tensors as they are.
    let (small, _) = prune(&g, &comps, &ranking, &ranking.prefix(1)).unwrap();
    let before: Vec<(String, Tensor)> = g.params().iter().map(|(k, t)| (k.clone(), t.copy())).collect();
    let mut untouched = 0;
    for (k, t) in small.params().iter() {
        if t.size() == g.params().get(k).unwrap().size() {
            untouched += 1;
        }
        let _ = tch::no_grad(|| t.shallow_clone().f_fill_(7)).unwrap();
    }
    assert!(untouched > 5, "the selection should leave layers as they were");
    for (k, t) in &before {
        assert!(t.equal(g.params().get(k).unwrap()), "{k} of the source changed with the pruned graph");
    }
}

/// Uniform removal (`--selection uniform`): every dependency group loses ⌊rate · width⌋ of its
/// units, its least relevant (by pooled score) first, nested across rates; prefixes of its
/// order stay balanced, and the pruned model computes what the masked one does.
#[test]
fn uniform_selection_takes_the_same_share_of_every_group() {
    use std::collections::BTreeMap;
    let g = Architecture::parse("resnet18:size=32,width=8").unwrap().build(1).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let scores = random_scores(comps.total, 3);
    let ranking = GroupRanking::new(&g, &comps, &scores, PruneOrder::LeastRelevantFirst).unwrap();
    let ranking = relprune::prune::budget::Selection::Uniform.arrange(ranking, &g, &comps).unwrap();
    let mut previous: Vec<(usize, usize)> = Vec::new();
    for rate in [0.2, 0.5, 0.9] {
        let sel = ranking.selection(rate).unwrap();
        let mut per: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &(gi, u) in &sel {
            per.entry(gi).or_default().push(u);
        }
        for (gi, grp) in ranking.groups.iter().enumerate() {
            let want = (grp.units as f64 * rate + 1e-9).floor() as usize;
            let got = per.get(&gi).map_or(&[][..], |v| &v[..]);
            assert_eq!(got.len(), want, "rate {rate}, group {gi} of {} units", grp.units);
            // Its least relevant units, the most relevant kept.
            let mut by_score: Vec<usize> = (0..grp.units).collect();
            by_score.sort_by(|&a, &b| ranking.pooled[gi][a].total_cmp(&ranking.pooled[gi][b]));
            let mut got_sorted = got.to_vec();
            got_sorted.sort();
            let mut least = by_score[..want].to_vec();
            least.sort();
            assert_eq!(got_sorted, least, "rate {rate}, group {gi}");
        }
        assert!(previous.iter().all(|p| sel.contains(p)), "selections are nested");
        previous = sel.clone();
        let (small, _) = prune(&g, &comps, &ranking, &sel).unwrap();
        let x = inputs(&g);
        let masked = {
            let mut gm = g.deep_clone();
            let guard = apply_mask(&mut gm, &comps, &ranking.component_indices(&comps, &sel)).unwrap();
            tch::no_grad(|| guard.forward(&x, Mode::Eval)).unwrap()
        };
        let physical = tch::no_grad(|| small.forward(&x, Mode::Eval)).unwrap();
        assert!(common::rel_err(&physical, &masked) < 1e-5, "rate {rate}");
    }
    // Any prefix of the order is within one unit of the same share in every group.
    let prefix = ranking.prefix(ranking.order.len() / 3);
    let mut counts = vec![0usize; ranking.groups.len()];
    for &(gi, _) in &prefix {
        counts[gi] += 1;
    }
    for (gi, grp) in ranking.groups.iter().enumerate() {
        let share = counts[gi] as f64 / grp.units as f64;
        assert!((share - 1.0 / 3.0).abs() <= 1.0 / grp.units as f64 + 1e-9, "group {gi}: {share}");
    }
}
