//! Relevances per attention head and per MLP neuron equal LXT's (2.1, efficient mode) on a
//! torchvision ViT and a Hugging Face BERT with the same weights.
//!
//! Both sides compute in float64. relprune propagates relevance explicitly and stabilises each
//! division (here with 1e-12); LXT propagates a modified gradient and multiplies by the
//! activation (Gradient × Input), dividing by the exact pre-activations and passing GELU as
//! out/(in + 1e-10). The two agree up to those stabilisers: tolerance per layer
//! max |ours − LXT| ≤ 1e-6 · max |LXT|.

mod common;

use relprune::attribution::lrp::{GroupRules, InitialRelevance, Lrp, LrpConfig, Rule, SoftmaxRule};
use relprune::attribution::LatentAttribution;
use relprune::data::Batch;
use relprune::graph::{Graph, Op};
use relprune::models::{load_model, Architecture};
use relprune::prune::components::{depth_groups, ComponentKind, ComponentSet};

fn rules_json(g: &Graph, rules: &GroupRules) -> String {
    let groups = depth_groups(g);
    let mut map = serde_json::Map::new();
    for (id, n) in g.nodes().iter().enumerate() {
        if matches!(n.op, Op::Conv2d(_) | Op::Linear(_)) {
            map.insert(n.name.clone(), serde_json::to_value(rules.get(groups[id].unwrap())).unwrap());
        }
    }
    serde_json::Value::Object(map).to_string()
}

fn config(rules: GroupRules, softmax: SoftmaxRule) -> LrpConfig {
    let mut c = LrpConfig::new(rules);
    c.softmax = softmax;
    c.initial = InitialRelevance::Logit;
    c.stabilizer = 1e-12;
    c
}

fn compare(g: &Graph, batch: &Batch, cfg: &LrpConfig, io: &std::path::Path) {
    for (kind, prefix) in [(ComponentKind::Heads, "H"), (ComponentKind::Neurons, "N")] {
        let comps = ComponentSet::find(g, kind).unwrap();
        let ours = Lrp { config: cfg.clone(), label: "t".into() }.attribute(g, &comps, batch).unwrap();
        for (l, r) in comps.layers.iter().zip(&ours) {
            let theirs = common::read_tensor(io, &format!("{prefix}.{}", l.name));
            let err = common::rel_err(r, &theirs);
            assert!(err <= 1e-6, "{:?} {kind:?} `{}`: relative error {err:e}", cfg.softmax, l.name);
        }
    }
}

fn vit_case(softmax: SoftmaxRule, rules: GroupRules) {
    let arch = "vit:size=32,patch=8,layers=3,heads=4,dim=64,mlp=128,classes=10";
    let mut g = Architecture::parse(arch).unwrap().build(0).unwrap();
    let rj = rules_json(&g, &rules);
    let sm = if softmax == SoftmaxRule::Cp { "cp" } else { "attn_lrp" };
    let dir = common::oracle(
        "lxt_relevance.py",
        &["--kind", "vit", "--softmax", sm, "--rules", &rj, "--double", "--stabilizer", "1e-12"],
    );
    g.load_safetensors(&dir.join("model.safetensors")).unwrap();
    g.set_kind(tch::Kind::Double);
    let io = dir.join("io.safetensors");
    let batch = Batch { inputs: vec![common::read_tensor(&io, "x")], labels: common::read_tensor(&io, "labels") };
    compare(&g, &batch, &config(rules, softmax), &io);
}

fn eps() -> Rule {
    Rule::Epsilon { epsilon: 1e-12 }
}

#[test]
fn vit_cp_lrp_epsilon() {
    vit_case(SoftmaxRule::Cp, GroupRules::all(eps()));
}

#[test]
fn vit_attn_lrp_epsilon() {
    vit_case(SoftmaxRule::AttnLrp, GroupRules::all(eps()));
}

#[test]
fn vit_attn_lrp_mixed_rules() {
    let rules = GroupRules::by_group(Rule::Gamma { gamma: Some(0.1) }, eps(), Rule::Zplus, eps());
    vit_case(SoftmaxRule::AttnLrp, rules);
}

#[test]
fn bert_attn_lrp() {
    let dir = common::oracle("lxt_relevance.py", &["--kind", "bert", "--double"]);
    let mut m = load_model(&format!("hf-bert:{}", dir.join("hf").display()), None, 0).unwrap();
    m.graph.set_kind(tch::Kind::Double);
    let io = dir.join("io.safetensors");
    let batch = Batch {
        inputs: vec![common::read_tensor(&io, "ids"), common::read_tensor(&io, "mask")],
        labels: common::read_tensor(&io, "labels"),
    };
    compare(&m.graph, &batch, &config(GroupRules::all(eps()), SoftmaxRule::AttnLrp), &io);
}

/// A LLaMA-family decoder as LXT 2.1 patches it (`monkey_patch(modeling_llama)`): RMSNorm and
/// SiLU by the identity rule, the gate·up product split in half (relprune's `gate=uniform`),
/// q·kᵀ and A·V uniformly, linear layers by LRP-0, the rotary embedding passed through as the
/// linear map it is; the initial relevance is the true next token's logit at every position.
/// A query head's relevance is at its share of the context, grouped key/value heads or not.
fn decoder_case(args: &[&str]) {
    let mut all = vec!["--double"];
    all.extend_from_slice(args);
    let dir = common::oracle("lxt_relevance.py", &all);
    let mut m = load_model(&format!("hf:{}", dir.join("hf").display()), None, 0).unwrap();
    m.graph.set_kind(tch::Kind::Double);
    let worst = compare_decoder(&m.graph, &dir, args.contains(&"predicted"));
    assert!(worst <= 1e-6, "{args:?}: relative error {worst:e}");
}

/// The largest relative error, over the neuron and head layers, of relprune's LRP against the
/// oracle's relevances in `dir` (LXT's configuration: LRP-ε, AttnLRP softmax, gate=uniform).
fn compare_decoder(graph: &relprune::graph::Graph, dir: &std::path::Path, predicted: bool) -> f64 {
    let io = dir.join("io.safetensors");
    let batch = Batch {
        inputs: vec![common::read_tensor(&io, "ids"), common::read_tensor(&io, "mask")],
        labels: common::read_tensor(&io, "labels"),
    };
    let mut cfg = config(GroupRules::all(eps()), SoftmaxRule::AttnLrp);
    cfg.gate = relprune::attribution::lrp::GateRule::Uniform;
    if predicted {
        cfg.target = relprune::attribution::lrp::ExplainedTarget::Predicted;
    }
    let mut worst = 0f64;
    for (kind, prefix) in [(ComponentKind::Heads, "H"), (ComponentKind::Neurons, "N")] {
        let comps = ComponentSet::find(graph, kind).unwrap();
        let ours = Lrp { config: cfg.clone(), label: "t".into() }.attribute(graph, &comps, &batch).unwrap();
        for (l, r) in comps.layers.iter().zip(&ours) {
            let theirs = common::read_tensor(&io, &format!("{prefix}.{}", l.name));
            let err = common::rel_err(r, &theirs);
            if err > worst {
                eprintln!("{kind:?} `{}`: relative error {err:e}", l.name);
            }
            worst = worst.max(err);
        }
    }
    worst
}

/// The real SmolLM2-135M in float32, as LXT computes it on transformers' own model (30 layers,
/// grouped heads, tied LM head): relevances agree to float32 precision.
#[test]
fn smollm2_attn_lrp_in_float32() {
    let folder = relprune::models::llama::prepared_folder("smollm2-135m").unwrap().unwrap();
    let dir = common::oracle("lxt_relevance.py", &["--kind", "llama", "--folder", folder.to_str().unwrap()]);
    let m = load_model("smollm2-135m", None, 0).unwrap();
    let worst = compare_decoder(&m.graph, &dir, false);
    assert!(worst <= 1e-3, "relative error {worst:e}");
}

#[test]
fn llama_attn_lrp_grouped_heads() {
    decoder_case(&["--kind", "llama"]);
}

#[test]
fn llama_attn_lrp_heads() {
    decoder_case(&["--kind", "llama", "--kv-heads", "4"]);
}

/// The predicted next token's logit as the initial relevance (`target=predicted`).
#[test]
fn llama_attn_lrp_predicted_token() {
    decoder_case(&["--kind", "llama", "--target", "predicted"]);
}

#[test]
fn qwen2_attn_lrp_with_qkv_biases() {
    decoder_case(&["--kind", "qwen2"]);
}
