//! The ONNX export runs in onnxruntime (Python) with outputs equal to relprune's, for pruned
//! CNNs and transformers (checked by onnx.checker first).

mod common;

use relprune::attribution::Scores;
use relprune::graph::{stats, Graph, Mode};
use relprune::models::{load_model, Architecture};
use relprune::prune::components::{ComponentKind, ComponentSet};
use relprune::prune::ranking::PruneOrder;
use relprune::prune::surgery::{prune, GroupRanking};
use tch::{Kind, Tensor};

fn pruned(g: &Graph, kind: ComponentKind, rate: f64) -> Graph {
    use rand::RngExt;
    let comps = ComponentSet::find(g, kind).unwrap();
    let mut rng = relprune::util::rng(4);
    let scores = Scores { values: (0..comps.total).map(|_| rng.random::<f64>()).collect() };
    let ranking = GroupRanking::new(g, &comps, &scores, PruneOrder::LeastRelevantFirst).unwrap();
    prune(g, &comps, &ranking, &ranking.selection(rate).unwrap()).unwrap().0
}

fn check(g: &Graph, inputs: Vec<Tensor>) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    relprune::export::onnx::export(g, &model).unwrap();
    let named: Vec<(String, Tensor)> =
        inputs.iter().enumerate().map(|(i, t)| (format!("in{i}"), t.shallow_clone())).collect();
    Tensor::write_safetensors(&named, dir.path().join("in.safetensors")).unwrap();
    common::run_oracle(
        "onnx_run.py",
        &[
            model.to_str().unwrap(),
            dir.path().join("in.safetensors").to_str().unwrap(),
            dir.path().join("out.safetensors").to_str().unwrap(),
        ],
    );
    let theirs = common::read_tensor(&dir.path().join("out.safetensors"), "y");
    let ours = tch::no_grad(|| g.forward(&inputs, Mode::Eval)).unwrap();
    let err = common::rel_err(&ours, &theirs);
    assert!(err < 1e-4, "relative error {err:e}");
}

fn image(g: &Graph, n: i64) -> Vec<Tensor> {
    let s = stats::example_inputs(g, 1)[0].size();
    vec![Tensor::randn([n, s[1], s[2], s[3]], (Kind::Float, tch::Device::Cpu))]
}

#[test]
fn pruned_resnet_and_vgg_run_in_onnxruntime() {
    let g = pruned(&load_model("fmnist-resnet18", None, 0).unwrap().graph, ComponentKind::Filters, 0.4);
    check(&g, image(&g, 3));
    let g = pruned(&load_model("fmnist-vgg16bn", None, 0).unwrap().graph, ComponentKind::Filters, 0.4);
    check(&g, image(&g, 2));
    let g = Architecture::parse("resnet50:size=64").unwrap().build(0).unwrap();
    let g = pruned(&g, ComponentKind::Filters, 0.3);
    check(&g, image(&g, 2));
}

#[test]
fn pruned_vit_runs_in_onnxruntime() {
    let mut g =
        Architecture::parse("vit:size=32,patch=8,layers=2,heads=4,dim=32,mlp=64,classes=10").unwrap().build(1).unwrap();
    let w = g.params().get("heads.head.weight").unwrap().randn_like();
    g.params_mut().insert("heads.head.weight".into(), w);
    let g = pruned(&pruned(&g, ComponentKind::Heads, 0.4), ComponentKind::Neurons, 0.5);
    check(&g, image(&g, 2));
}

/// Removes the `n` first components (in forward order): for heads, whole early layers.
fn without_first(g: &Graph, kind: ComponentKind, n: usize) -> Graph {
    let comps = ComponentSet::find(g, kind).unwrap();
    let scores = Scores { values: (0..comps.total).map(|i| i as f64).collect() };
    let ranking = GroupRanking::new(g, &comps, &scores, PruneOrder::LeastRelevantFirst).unwrap();
    let rate = (n as f64 + 0.5) / comps.total as f64;
    let (pruned, report) = prune(g, &comps, &ranking, &ranking.selection(rate).unwrap()).unwrap();
    assert_eq!(ComponentSet::find(&pruned, kind).unwrap().total, comps.total - n, "{report:?}");
    pruned
}

#[test]
fn attention_layers_without_heads_run_in_onnxruntime() {
    // A layer that loses all its heads becomes a pure residual (plus the projection's bias);
    // the export must keep it, for packed (ViT) and separate (BERT) Q/K/V.
    let mut g =
        Architecture::parse("vit:size=32,patch=8,layers=2,heads=4,dim=32,mlp=64,classes=10").unwrap().build(1).unwrap();
    let w = g.params().get("heads.head.weight").unwrap().randn_like();
    g.params_mut().insert("heads.head.weight".into(), w);
    let g = without_first(&g, ComponentKind::Heads, 4);
    check(&g, image(&g, 2));
    let g = without_first(&load_model("minilm-spam", None, 0).unwrap().graph, ComponentKind::Heads, 12);
    let ids = Tensor::randint(1000, [2, 10], (Kind::Int64, tch::Device::Cpu)) + 1000;
    let mask = Tensor::ones([2, 10], (Kind::Int64, tch::Device::Cpu));
    check(&g, vec![ids, mask]);
}

#[test]
fn pruned_minilm_with_padding_runs_in_onnxruntime() {
    let g = load_model("minilm-spam", None, 0).unwrap().graph;
    let g = pruned(&pruned(&g, ComponentKind::Heads, 0.3), ComponentKind::Neurons, 0.3);
    let ids = Tensor::randint(1000, [2, 10], (Kind::Int64, tch::Device::Cpu)) + 1000;
    let mask = Tensor::ones([2, 10], (Kind::Int64, tch::Device::Cpu));
    let _ = mask.get(1).narrow(0, 6, 4).fill_(0);
    check(&g, vec![ids, mask]);
}

#[test]
fn mobilenets_run_in_onnxruntime_whole_and_pruned() {
    for arch in
        ["mobilenet_v2:size=64,classes=10", "mobilenet_v3_small:size=64,classes=10", "mobilenet_v3_large:size=64"]
    {
        let g = Architecture::parse(arch).unwrap().build(0).unwrap();
        check(&g, image(&g, 2));
        let g = pruned(&g, ComponentKind::Filters, 0.4);
        check(&g, image(&g, 2));
    }
}

#[test]
fn efficientnet_runs_in_onnxruntime_whole_and_pruned() {
    let g = Architecture::parse("efficientnet_b0:size=64,classes=10").unwrap().build(0).unwrap();
    check(&g, image(&g, 2));
    let g = pruned(&g, ComponentKind::Filters, 0.4);
    check(&g, image(&g, 2));
}

#[test]
fn densenet_runs_in_onnxruntime_pruned() {
    let g = Architecture::parse("densenet121:size=32,classes=10").unwrap().build(0).unwrap();
    let g = pruned(&g, ComponentKind::Filters, 0.4);
    check(&g, image(&g, 2));
}

#[test]
fn convnext_regnet_resnext_and_wide_resnet_run_in_onnxruntime_pruned() {
    for arch in [
        "convnext_tiny:size=32,classes=10",
        "regnet_y_400mf:size=32,classes=10",
        "resnext50_32x4d:size=32,classes=10",
        "wide_resnet50_2:size=32,classes=10",
    ] {
        let g = Architecture::parse(arch).unwrap().build(0).unwrap();
        let g = pruned(&g, ComponentKind::Filters, 0.3);
        check(&g, image(&g, 2));
    }
}
