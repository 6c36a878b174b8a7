//! LRP properties that need no oracle: a hand-computed example, conservation layer by layer on
//! bias-free nets, and where BatchNorm merging must not change relevances.

use relprune::attribution::lrp::{relevances, BatchNormTreatment, GroupRules, Lrp, LrpConfig, Rule};
use relprune::attribution::LatentAttribution;
use relprune::data::Batch;
use relprune::graph::ops::*;
use relprune::graph::{Conv2d, Graph, GraphBuilder, InputKind, Op};
use relprune::models::Architecture;
use relprune::prune::components::{ComponentKind, ComponentSet};
use tch::{Kind, Tensor};

fn set(g: &mut Graph, key: &str, values: &[f32], shape: &[i64]) {
    g.params_mut().insert(key.into(), Tensor::from_slice(values).reshape(shape));
}

fn eps(e: f64) -> GroupRules {
    GroupRules::all(Rule::Epsilon { epsilon: e })
}

#[test]
fn hand_computed_epsilon_on_a_two_layer_net() {
    // x = [2, 1];  z1 = W1 x = [4, -1];  a1 = relu(z1) = [4, 0];  z2 = W2 a1 = [4, 2].
    let mut b = GraphBuilder::new();
    let x = b.input("x", InputKind::Image { channels: 2, height: 1, width: 1 });
    let f = b.add("flat", Op::Flatten(Flatten { start_dim: 1 }), &[x]);
    let l1 = b.add("l1", Op::Linear(Linear { in_features: 2, out_features: 2, bias: false }), &[f]);
    let r = b.add("relu", Op::Relu(Relu), &[l1]);
    let l2 = b.add("l2", Op::Linear(Linear { in_features: 2, out_features: 2, bias: false }), &[r]);
    let mut g = b.finish(l2, 0).unwrap();
    set(&mut g, "l1.weight", &[1.0, 2.0, -1.0, 1.0], &[2, 2]);
    set(&mut g, "l2.weight", &[1.0, -1.0, 0.5, 2.0], &[2, 2]);
    let e = 0.01;
    let xin = Tensor::from_slice(&[2.0f32, 1.0]).reshape([1, 2, 1, 1]);
    let labels = Tensor::from_slice(&[1i64]);
    let mut keep = vec![false; g.nodes().len()];
    keep[x] = true;
    keep[l1] = true;
    let rel = relevances(&g, &[xin], &labels, &LrpConfig::new(eps(e)), &keep).unwrap();
    // Output relevance [0, 1] on class 1 (z = 2): R_hidden_j = a1_j · W2[1, j] / (2 + ε).
    let r_hidden = [4.0 * 0.5 / (2.0 + e), 0.0];
    let got: Vec<f64> = Vec::try_from(rel[l1].as_ref().unwrap().to_kind(Kind::Double).view([-1])).unwrap();
    for (a, b) in got.iter().zip(r_hidden) {
        assert!((a - b).abs() < 1e-6, "hidden relevance {got:?} vs {r_hidden:?}");
    }
    // Input: s = R_hidden / (z1 + ε·sign z1);  R_x = x ⊙ W1ᵀ s.
    let s = [r_hidden[0] / (4.0 + e), r_hidden[1] / (-1.0 - e)];
    let r_x = [2.0 * (1.0 * s[0] - 1.0 * s[1]), 1.0 * (2.0 * s[0] + 1.0 * s[1])];
    let got: Vec<f64> = Vec::try_from(rel[x].as_ref().unwrap().to_kind(Kind::Double).view([-1])).unwrap();
    for (a, b) in got.iter().zip(r_x) {
        assert!((a - b).abs() < 1e-6, "input relevance {got:?} vs {r_x:?}");
    }
}

/// A bias-free chain: conv → relu → maxpool → conv → relu → avgpool → flatten → linear → relu → linear.
fn bias_free_chain() -> (Graph, Vec<usize>) {
    let mut b = GraphBuilder::new();
    let x = b.input("x", InputKind::Image { channels: 3, height: 16, width: 16 });
    let c1 = b.add("c1", Op::Conv2d(Conv2d::new(3, 8, 3).padding(1)), &[x]);
    let r1 = b.add("r1", Op::Relu(Relu), &[c1]);
    let p1 = b.add(
        "p1",
        Op::MaxPool2d(MaxPool2d { kernel: [2, 2], stride: [2, 2], padding: [0, 0], ceil_mode: false }),
        &[r1],
    );
    let c2 = b.add("c2", Op::Conv2d(Conv2d::new(8, 8, 3).padding(1).stride(2)), &[p1]);
    let r2 = b.add("r2", Op::Relu(Relu), &[c2]);
    let p2 = b.add("p2", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [2, 2] }), &[r2]);
    let f = b.add("f", Op::Flatten(Flatten { start_dim: 1 }), &[p2]);
    let l1 = b.add("l1", Op::Linear(Linear { in_features: 32, out_features: 16, bias: false }), &[f]);
    let r3 = b.add("r3", Op::Relu(Relu), &[l1]);
    let l2 = b.add("l2", Op::Linear(Linear { in_features: 16, out_features: 5, bias: false }), &[r3]);
    let g = b.finish(l2, 4).unwrap();
    (g, vec![x, c1, r1, p1, c2, r2, p2, f, l1, r3, l2])
}

fn per_sample_sums(t: &Tensor) -> Vec<f64> {
    Vec::try_from(t.to_kind(Kind::Double).flatten(1, -1).sum_dim_intlist(1, false, Kind::Double)).unwrap()
}

/// Checks Σ R at every cut equals Σ R at the output, per sample, to `tol` (relative).
/// ε = 1e-9 and a stabiliser of 1e-12 leave only float rounding: tolerance 1e-4. (With
/// zennit's default stabiliser 1e-6 each unit loses ≈ 1e-6/z of its relevance, and where a
/// residual sum nearly cancels, the proportional split multiplies such losses.)
fn assert_conserved(g: &Graph, cuts: &[usize], rules: GroupRules, tol: f64) {
    tch::manual_seed(1);
    let x = Tensor::randn([4, 3, 16, 16], (Kind::Float, tch::Device::Cpu));
    let keep: Vec<bool> = (0..g.nodes().len()).map(|i| cuts.contains(&i) || i == g.output()).collect();
    let labels = Tensor::from_slice(&[0i64, 1, 2, 3]);
    let mut cfg = LrpConfig::new(rules.clone());
    cfg.stabilizer = 1e-12;
    let rel = relevances(g, &[x], &labels, &cfg, &keep).unwrap();
    let total = per_sample_sums(rel[g.output()].as_ref().unwrap());
    for &c in cuts {
        let s = per_sample_sums(rel[c].as_ref().unwrap());
        for (a, b) in s.iter().zip(&total) {
            assert!(
                (a - b).abs() <= tol * b.abs().max(1.0),
                "{}: Σ R = {a} at `{}`, {b} at the output",
                rules.label(),
                g.node(c).name
            );
        }
    }
}

#[test]
fn conservation_layer_by_layer_on_a_bias_free_chain() {
    // Bias-free, so no relevance is absorbed; ε tiny, so only float rounding remains.
    let (g, cuts) = bias_free_chain();
    assert_conserved(&g, &cuts, eps(1e-9), 1e-4);
    assert_conserved(&g, &cuts, GroupRules::all(Rule::Zplus), 1e-4);
    assert_conserved(&g, &cuts, GroupRules::all(Rule::Gamma { gamma: Some(0.25) }), 1e-4);
    assert_conserved(&g, &cuts, GroupRules::all(Rule::Alphabeta { alpha: 2.0, beta: 1.0 }), 1e-4);
}

/// ResNet-18 made bias-free: BatchNorm shift and mean zero (so merged convs have no bias) and a
/// bias-free classifier; conservation is checked at every block boundary (a full cut).
#[test]
fn conservation_at_block_boundaries_of_a_bias_free_resnet() {
    let arch = Architecture::parse("cifar_resnet18:width=8,in=3,size=16,classes=5").unwrap();
    let g0 = arch.build(1).unwrap();
    let spec = {
        let mut s = g0.spec().clone();
        for n in &mut s.nodes {
            if let Op::Linear(Linear { bias, .. }) = &mut n.op {
                *bias = false;
                n.params.remove(&Role::Bias);
            }
        }
        s
    };
    let mut store = g0.params().deep_clone();
    store.remove("fc.bias");
    for n in &spec.nodes {
        if let Op::BatchNorm2d(BatchNorm2d { features, eps, .. }) = n.op {
            let k = |r: Role| n.params[&r].clone();
            store.insert(k(Role::Bias), Tensor::zeros([features], (Kind::Float, tch::Device::Cpu)));
            store.insert(k(Role::RunningMean), Tensor::zeros([features], (Kind::Float, tch::Device::Cpu)));
            store.insert(k(Role::Weight), Tensor::rand([features], (Kind::Float, tch::Device::Cpu)) + 0.5);
            store.insert(k(Role::RunningVar), Tensor::ones([features], (Kind::Float, tch::Device::Cpu)) - eps);
        }
    }
    let g = Graph::new(spec, store).unwrap();
    let cuts: Vec<usize> = g
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            matches!(n.op, Op::Input(_))
                || n.name.ends_with(".relu") && !n.name.ends_with("relu1")
                || n.name == "flatten"
        })
        .map(|(i, _)| i)
        .collect();
    assert!(cuts.len() >= 9, "input, 8 block outputs, flatten");
    let mut x = GroupRules::all(Rule::Epsilon { epsilon: 1e-9 });
    assert_conserved(&g, &cuts, x.clone(), 1e-4);
    // γ keeps the sign of each pre-activation, so it conserves even where residual sums carry
    // relevance of both signs. (z⁺ does not there: a unit that receives relevance but has no
    // positive contribution, z⁺ = 0, drops it — a property of the rule, not of the engine.)
    x.mid = Rule::Gamma { gamma: Some(0.5) };
    x.high = Rule::Gamma { gamma: Some(0.25) };
    assert_conserved(&g, &cuts, x, 1e-4);
}

fn filter_relevances(g: &Graph, treatment: BatchNormTreatment) -> Vec<Tensor> {
    // Our own seeded generator: libtorch's global one is shared by tests running in parallel.
    let batch = Batch {
        inputs: vec![relprune::graph::init::normal(&mut relprune::util::rng(3), &[3, 3, 32, 32], 1.0)],
        labels: Tensor::from_slice(&[1i64, 2, 3]),
    };
    let comps = ComponentSet::find(g, ComponentKind::Filters).unwrap();
    let mut cfg = LrpConfig::new(GroupRules::all(Rule::Zplus));
    cfg.batch_norm = treatment;
    Lrp { config: cfg, label: "t".into() }.attribute(g, &comps, &batch).unwrap()
}

#[test]
fn batchnorm_merging_changes_relevance_only_where_it_should() {
    let g = Architecture::parse("cifar_resnet18:width=8,in=3,size=32,classes=5").unwrap().build(2).unwrap();
    let mut g = g;
    // Non-trivial BatchNorm statistics.
    let keys: Vec<String> =
        g.params().keys().filter(|k| k.contains("bn") || k.contains("downsample.1")).cloned().collect();
    let mut rng = relprune::util::rng(4);
    for k in keys {
        let t = g.params().get(&k).unwrap();
        if t.is_floating_point() {
            let v = relprune::graph::init::normal(&mut rng, &t.size(), 0.2).abs() + 0.6;
            g.params_mut().insert(k, v);
        }
    }
    let merged = filter_relevances(&g, BatchNormTreatment::Merge);
    let passed = filter_relevances(&g, BatchNormTreatment::Pass);
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let last = comps.layers.len() - 1;
    assert_eq!(comps.layers[last].name, "layer4.1.conv2");
    // The top conv's relevance comes only from layers above it, where no BatchNorm is merged.
    assert!(
        merged[last].allclose(&passed[last], 1e-5, 1e-7, false),
        "top conv must not depend on the BatchNorm treatment"
    );
    // Below, the rule sees different weights (z+ of merged vs. raw conv), so relevances differ.
    assert!(!merged[0].allclose(&passed[0], 1e-3, 1e-6, false), "lower layers should depend on the treatment");

    // With identity BatchNorms (γ = 1, β = 0, μ = 0, σ² = 1 − eps) the treatments agree everywhere.
    let keys: Vec<(Role, String)> = g
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::BatchNorm2d(_)))
        .flat_map(|n| n.params.iter().map(|(r, k)| (*r, k.clone())).collect::<Vec<_>>())
        .collect();
    for (role, key) in keys {
        let t = g.params().get(&key).unwrap();
        let v = match role {
            Role::Weight => t.ones_like(),
            Role::RunningVar => t.ones_like() - 1e-5,
            Role::NumBatchesTracked => continue,
            _ => t.zeros_like(),
        };
        g.params_mut().insert(key, v);
    }
    let merged = filter_relevances(&g, BatchNormTreatment::Merge);
    let passed = filter_relevances(&g, BatchNormTreatment::Pass);
    for (a, b) in merged.iter().zip(&passed) {
        assert!(a.allclose(b, 1e-4, 1e-7, false), "identity BatchNorms: merge and pass must agree");
    }
}

#[test]
fn unsupported_node_and_bad_rules_are_clear_errors() {
    assert!(Rule::parse("epsilonn").unwrap_err().to_string().contains("unknown rule"));
    assert!(Rule::parse("alphabeta:3:1").unwrap_err().to_string().contains("α − β = 1"));
    assert!(Rule::parse("epsilon:-1").unwrap_err().to_string().contains("positive"));
    assert!(GroupRules::parse("middle=zplus", eps(1e-6)).unwrap_err().to_string().contains("unknown depth group"));
    assert!(GroupRules::parse("mid", eps(1e-6)).is_err());
}

/// Equal depth groups: on VGG-11's 8 convolutions, four groups of two are exactly the low (2) /
/// mid (4) / high (2) split when the two middle groups share the mid rule, so the relevances are
/// identical; giving one middle group another rule changes them. Parsed, labelled and
/// round-tripped through the rules file's YAML.
#[test]
fn equal_depth_groups_refine_low_mid_high() {
    let g = Architecture::parse("vgg11:size=32,classes=10").unwrap().build(3).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
    let batch = Batch { inputs: vec![x], labels: Tensor::from_slice(&[0i64, 3, 5, 9]) };
    let (low, mid, high, fc) = (
        Rule::Gamma { gamma: Some(0.25) },
        Rule::Epsilon { epsilon: 1e-3 },
        Rule::Zplus,
        Rule::Epsilon { epsilon: 1e-6 },
    );
    let scores = |rules: GroupRules| -> Vec<Tensor> {
        Lrp { config: LrpConfig::new(rules), label: "lrp".into() }.attribute(&g, &comps, &batch).unwrap()
    };
    let coarse = scores(GroupRules::by_group(low.clone(), mid.clone(), high.clone(), fc.clone()));
    let text = "d1=gamma:0.25,d2=epsilon:1e-3,d3=epsilon:1e-3,d4=zplus,fc=epsilon:1e-6";
    let fine = GroupRules::parse(text, GroupRules::all(Rule::Epsilon { epsilon: 1e-6 })).unwrap();
    assert_eq!(fine.depth, vec![low.clone(), mid.clone(), mid.clone(), high.clone()]);
    // The label names what acts (d1…dN and fc; low / mid / high are unused beside them).
    let back = GroupRules::parse(&fine.label(), GroupRules::all(Rule::Zplus)).unwrap();
    assert_eq!((&back.depth, &back.fc, back.label()), (&fine.depth, &fine.fc, fine.label()));
    let yaml = serde_yaml_ng::to_string(&LrpConfig::new(fine.clone())).unwrap();
    assert_eq!(serde_yaml_ng::from_str::<LrpConfig>(&yaml).unwrap().rules, fine);
    let same = scores(fine.clone());
    for (a, b) in coarse.iter().zip(&same) {
        assert!(a.equal(b), "four equal groups with a shared mid rule must equal low/mid/high");
    }
    let mut other = fine;
    other.depth[2] = Rule::Gamma { gamma: Some(1.0) };
    let changed = scores(other);
    // d3 holds convolutions 5 and 6. A score is read at a layer's output, so it depends on the
    // rules above it: convolutions 1–5 see other relevance, 6–8 do not.
    let layers: Vec<&str> = comps.layers.iter().map(|l| l.name.as_str()).collect();
    for (i, (a, b)) in coarse.iter().zip(&changed).enumerate() {
        assert_eq!(a.equal(b), i >= 5, "layer {} ({i}): {layers:?}", layers[i]);
    }
    for bad in ["d1=zplus,d3=zplus", "low=zplus,d1=zplus", "d0=zplus", "d65=zplus", "d1=zplus,d1=gamma"] {
        assert!(GroupRules::parse(bad, GroupRules::all(Rule::Zplus)).is_err(), "{bad}");
    }
}
