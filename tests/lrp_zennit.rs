//! LRP relevances per filter equal zennit's (0.5.1) on identical weights and inputs.
//!
//! Exact cases compute in float64 on both sides, with one change to zennit: a merged BatchNorm
//! becomes exactly the identity (stock zennit sets its running variance to 1 and so leaves a
//! factor 1/√(1 + 1e-5) in the canonised forward pass, which relprune, merging on the fly, does
//! not have). Tolerance there: per layer, max |ours − zennit| ≤ 1e-6 · max |zennit|.
//! Stock zennit in float32 agrees to 5e-3 (the BatchNorm factor above plus float32 rounding
//! through ~20 divisions by stabilised pre-activations).

mod common;

use relprune::attribution::lrp::{BatchNormTreatment, GroupRules, InitialRelevance, Lrp, LrpConfig, Rule};
use relprune::attribution::LatentAttribution;
use relprune::data::Batch;
use relprune::graph::{Graph, Op};
use relprune::models::Architecture;
use relprune::prune::components::{depth_groups, ComponentKind, ComponentSet};

/// JSON map module name → rule for the oracle, from our own depth groups (and equal depth
/// groups, where the rules have them).
fn rules_json(g: &Graph, rules: &GroupRules) -> String {
    let groups = depth_groups(g);
    let slots = relprune::attribution::lrp::depth_slots(&groups, rules.depth.len());
    let mut map = serde_json::Map::new();
    for (id, n) in g.nodes().iter().enumerate() {
        if matches!(n.op, Op::Conv2d(_) | Op::Linear(_)) {
            let rule = rules.rule_at(groups[id].unwrap(), slots[id]);
            map.insert(n.name.clone(), serde_json::to_value(rule).unwrap());
        }
    }
    serde_json::Value::Object(map).to_string()
}

struct Case<'a> {
    arch: &'a str,
    size: i64,
    in_channels: i64,
    weights: Option<std::path::PathBuf>,
    rules: GroupRules,
    batch_norm: BatchNormTreatment,
    initial: InitialRelevance,
    /// float64 and an exactly-identity merged BatchNorm (tolerance 1e-6), or stock zennit in
    /// float32 (tolerance 5e-3).
    exact: bool,
}

fn check(case: Case) {
    let arch = Architecture::parse(case.arch).unwrap();
    let mut g = arch.build(0).unwrap();
    let rules = rules_json(&g, &case.rules);
    let size = case.size.to_string();
    let inc = case.in_channels.to_string();
    let mut args =
        vec!["--model", case.arch, "--rules", &rules, "--size", &size, "--in-channels", &inc, "--batch", "3"];
    if case.exact {
        args.extend(["--double", "--exact-merge"]);
    }
    let wpath;
    if let Some(w) = &case.weights {
        wpath = w.to_string_lossy().into_owned();
        args.extend(["--weights", &wpath]);
    }
    if case.batch_norm == BatchNormTreatment::Pass {
        args.push("--no-merge-bn");
    }
    if case.initial == InitialRelevance::Logit {
        args.push("--logit");
    }
    let dir = common::oracle("zennit_relevance.py", &args);
    match &case.weights {
        Some(w) => g.load_safetensors(w).unwrap(),
        None => g.load_safetensors(&dir.join("model.safetensors")).unwrap(),
    }
    if case.exact {
        g.set_kind(tch::Kind::Double);
    }
    let tol = if case.exact { 1e-6 } else { 5e-3 };
    let io = dir.join("io.safetensors");
    let batch = Batch { inputs: vec![common::read_tensor(&io, "x")], labels: common::read_tensor(&io, "labels") };
    let mut config = LrpConfig::new(case.rules.clone());
    config.batch_norm = case.batch_norm;
    config.initial = case.initial;
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let ours = Lrp { config, label: "t".into() }.attribute(&g, &comps, &batch).unwrap();
    let held = tch::Tensor::read_safetensors(&io).unwrap().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    for (l, r) in comps.layers.iter().zip(&ours) {
        if !held.contains(&format!("R.{}", l.name)) {
            // zennit's hook never fired: no relevance reaches the layer (a squeeze-and-excitation
            // conv behind a gate held constant); ours must be exactly zero.
            assert_eq!(r.abs().max().double_value(&[]), 0.0, "{}: relevance where zennit has none", l.name);
            continue;
        }
        let theirs = common::read_tensor(&io, &format!("R.{}", l.name));
        let err = common::rel_err(r, &theirs);
        assert!(err <= tol, "{} {}: layer {} relative error {err:e}", case.arch, case.rules.label(), l.name);
    }
}

fn eps() -> Rule {
    Rule::Epsilon { epsilon: 1e-6 }
}

fn mixed() -> GroupRules {
    GroupRules::by_group(
        Rule::Zplus,
        Rule::Gamma { gamma: Some(0.25) },
        Rule::Alphabeta { alpha: 2.0, beta: 1.0 },
        Rule::Epsilon { epsilon: 1e-3 },
    )
}

fn case(arch: &str, rules: GroupRules) -> Case<'_> {
    Case {
        arch,
        size: 64,
        in_channels: 3,
        weights: None,
        rules,
        batch_norm: BatchNormTreatment::Merge,
        initial: InitialRelevance::OneHot,
        exact: true,
    }
}

#[test]
fn resnet18_epsilon() {
    check(case("resnet18:size=64", GroupRules::all(eps())));
}

#[test]
fn resnet18_mixed_rules_per_group() {
    check(case("resnet18:size=64", mixed()));
}

/// Five equal depth groups over ResNet-18's 20 convolutions (4 each, downsampling shortcuts
/// included in graph order), each with its own rule, equal zennit given the same rule per module.
#[test]
fn resnet18_five_equal_depth_groups() {
    let mut rules = mixed();
    rules.depth = vec![
        Rule::Zplus,
        Rule::Gamma { gamma: Some(0.5) },
        Rule::Epsilon { epsilon: 1e-2 },
        Rule::Gamma { gamma: Some(0.1) },
        Rule::Alphabeta { alpha: 2.0, beta: 1.0 },
    ];
    check(case("resnet18:size=64", rules));
}

#[test]
fn resnet18_gamma_logit_init() {
    let mut c = case("resnet18:size=64", GroupRules::all(Rule::Gamma { gamma: None }));
    c.initial = InitialRelevance::Logit;
    check(c);
}

#[test]
fn resnet18_zplus_without_batchnorm_merge() {
    let mut c = case("resnet18:size=64", GroupRules::all(Rule::Zplus));
    c.batch_norm = BatchNormTreatment::Pass;
    check(c);
}

#[test]
fn vgg16_bn_epsilon() {
    check(case("vgg16_bn:size=64", GroupRules::all(eps())));
}

#[test]
fn vgg16_bn_mixed_rules_per_group() {
    check(case("vgg16_bn:size=64", mixed()));
}

#[test]
fn vgg16_bn_epsilon_stock_zennit_float32() {
    let mut c = case("vgg16_bn:size=64", GroupRules::all(eps()));
    c.exact = false;
    check(c);
}

/// The trained zoo CNNs (real BatchNorm statistics, 1-channel 28×28 inputs), with the
/// oracle's PyTorch definition of the same architecture.
fn zoo_case<'a>(name: &str, arch: &'a str, rules: GroupRules) -> Case<'a> {
    let (weights, _) = relprune::models::zoo::paths(name);
    Case { size: 28, in_channels: 1, weights: Some(weights), ..case(arch, rules) }
}

#[test]
fn zoo_resnet18_epsilon_and_mixed_rules() {
    let arch = "cifar_resnet18:width=16,in=1,size=28,classes=10";
    check(zoo_case("fmnist-resnet18", arch, GroupRules::all(eps())));
    check(zoo_case("fmnist-resnet18", arch, mixed()));
}

#[test]
fn zoo_vgg16bn_epsilon_and_mixed_rules() {
    let arch = "cifar_vgg16_bn:width=32,hidden=256,dropout=0.3,in=1,size=28,classes=10";
    check(zoo_case("fmnist-vgg16bn", arch, GroupRules::all(eps())));
    check(zoo_case("fmnist-vgg16bn", arch, mixed()));
}

#[test]
fn resnet18_mixed_stock_zennit_float32() {
    let mut c = case("resnet18:size=64", mixed());
    c.exact = false;
    check(c);
}

#[test]
fn mobilenet_v2_epsilon_and_mixed_rules() {
    // Depthwise convs take their depth group's rule; residual sums the Norm rule (zennit with a
    // canonizer that makes them explicit Sum modules); ReLU6 passes relevance.
    for rules in [GroupRules::all(eps()), mixed()] {
        check(Case { size: 32, ..case("mobilenet_v2:size=32,classes=10", rules) });
    }
}

#[test]
fn efficientnet_b0_epsilon_with_gates_held_constant() {
    check(Case { size: 32, ..case("efficientnet_b0:size=32,classes=10", GroupRules::all(eps())) });
    check(Case { size: 32, ..case("efficientnet_b0:size=32,classes=10", mixed()) });
}
