//! The op contract: every op kind relprune knows, on tiny graphs, computes what PyTorch computes
//! (an independent interpreter of `graph.json` on `torch.nn.functional`), exports to ONNX with
//! onnxruntime's outputs equal, conserves LRP relevance where it is bias-free, and keeps shapes
//! consistent under surgery (masked equals physical). A new op without a case here fails
//! `every_op_kind_has_a_case`.

mod common;

use relprune::attribution::lrp::{relevances, BatchNormTreatment, GateRule, GroupRules, LrpConfig, Rule};
use relprune::attribution::Scores;
use relprune::graph::ops::*;
use relprune::graph::{Graph, GraphBuilder, Mode, NodeId, OP_NAMES};
use relprune::prune::components::{ComponentKind, ComponentSet};
use relprune::prune::masking::apply_mask;
use relprune::prune::ranking::PruneOrder;
use relprune::prune::surgery::{prune, GroupRanking};
use std::collections::BTreeSet;
use tch::{Kind, Tensor};

/// One tiny graph and the inputs to run it on.
struct Case {
    name: &'static str,
    graph: Graph,
    inputs: Vec<Tensor>,
}

fn image_input(b: &mut GraphBuilder) -> NodeId {
    b.input("x", InputKind::Image { channels: 3, height: 6, width: 6 })
}

fn conv(b: &mut GraphBuilder, name: &str, cin: i64, cout: i64, x: NodeId) -> NodeId {
    b.add(name, Op::Conv2d(Conv2d::new(cin, cout, 3).padding(1)), &[x])
}

/// x → conv(3→8) → relu → `body` → global pool → flatten → linear(→4), all bias-free.
fn map_case(name: &'static str, body: impl FnOnce(&mut GraphBuilder, NodeId, NodeId) -> (NodeId, i64)) -> Case {
    let mut b = GraphBuilder::new();
    let x = image_input(&mut b);
    let c = conv(&mut b, "c1", 3, 8, x);
    let r = b.add("r1", Op::Relu(Relu), &[c]);
    let (y, channels) = body(&mut b, x, r);
    let p = b.add("pool", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d::global()), &[y]);
    let f = b.add("flat", Op::Flatten(Flatten { start_dim: 1 }), &[p]);
    let out = b.add("fc", Op::Linear(Linear { in_features: channels, out_features: 4, bias: false }), &[f]);
    finish(name, b, out)
}

fn finish(name: &'static str, b: GraphBuilder, out: NodeId) -> Case {
    let mut graph = b.finish(out, 7).unwrap();
    // Non-trivial BatchNorm statistics, so that evaluation-mode normalisation is really tested.
    tch::manual_seed(3);
    let keys: Vec<String> = graph.params().keys().cloned().collect();
    for k in keys {
        let t = graph.params().get(&k).unwrap().shallow_clone();
        if k.ends_with("running_var") {
            graph.params_mut().insert(k, t.rand_like() + 0.5);
        } else if k.ends_with("running_mean") {
            graph.params_mut().insert(k, t.randn_like() * 0.1);
        }
    }
    graph.set_kind(Kind::Double);
    let inputs = relprune::graph::stats::example_inputs(&graph, 5)
        .into_iter()
        .map(|t| match t.kind() {
            Kind::Int64 if t.int64_value(&[0, 0]) == 0 => Tensor::randint(20, [2, 5], (Kind::Int64, tch::Device::Cpu)),
            Kind::Int64 => Tensor::from_slice2(&[[1i64, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
            _ => Tensor::randn([2, 3, 6, 6], (Kind::Double, tch::Device::Cpu)),
        })
        .collect();
    Case { name, graph, inputs }
}

/// An elementwise / shape-keeping op after the first conv.
fn unary(name: &'static str, op: Op) -> Case {
    map_case(name, move |b, _, r| (b.add("op", op, &[r]), 8))
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        unary("conv2d", Op::Conv2d(Conv2d::new(8, 8, 3).padding(1))),
        unary("depthwise conv2d", Op::Conv2d(Conv2d::new(8, 8, 3).padding(1).groups(8))),
        unary("grouped conv2d", Op::Conv2d(Conv2d::new(8, 8, 1).groups(2))),
        unary("batch_norm2d", Op::BatchNorm2d(BatchNorm2d::new(8))),
        unary("relu", Op::Relu(Relu)),
        unary("hardtanh", Op::Hardtanh(Hardtanh::relu6())),
        unary("leaky_relu", Op::LeakyRelu(LeakyRelu { negative_slope: 0.1 })),
        unary("pow", Op::Pow(Pow { exponent: 2.0 })),
        unary("silu", Op::Silu(Silu)),
        unary("sigmoid", Op::Sigmoid(Sigmoid)),
        unary("hardsigmoid", Op::Hardsigmoid(Hardsigmoid)),
        unary("hardswish", Op::Hardswish(Hardswish)),
        unary("tanh", Op::Tanh(Tanh)),
        unary("gelu", Op::Gelu(Gelu { tanh: false })),
        unary("gelu tanh", Op::Gelu(Gelu { tanh: true })),
        unary("dropout", Op::Dropout(Dropout { p: 0.3 })),
        unary("stochastic_depth", Op::StochasticDepth(StochasticDepth { p: 0.2 })),
        unary(
            "max_pool2d",
            Op::MaxPool2d(MaxPool2d { kernel: [2, 2], stride: [2, 2], padding: [0, 0], ceil_mode: false }),
        ),
        unary(
            "avg_pool2d",
            Op::AvgPool2d(AvgPool2d {
                ceil_mode: true,
                count_include_pad: false,
                ..AvgPool2d::new([3, 3], [2, 2], [1, 1])
            }),
        ),
        unary("adaptive_avg_pool2d", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [3, 3] })),
        unary("pad2d (asymmetric)", Op::Pad2d(Pad2d::zeros([0, 1, 2, 0]))),
        unary(
            "map_position_embedding",
            Op::MapPositionEmbedding(MapPositionEmbedding { channels: 8, height: 6, width: 6 }),
        ),
        unary(
            "resize2d (nearest)",
            Op::Resize2d(Resize2d { output: [12, 9], mode: ResizeMode::Nearest, align_corners: false }),
        ),
        unary(
            "resize2d (bilinear)",
            Op::Resize2d(Resize2d { output: [9, 12], mode: ResizeMode::Bilinear, align_corners: false }),
        ),
        unary(
            "resize2d (bicubic, corners aligned)",
            Op::Resize2d(Resize2d { output: [10, 10], mode: ResizeMode::Bicubic, align_corners: true }),
        ),
        map_case("pad2d (−∞) before max pooling", |b, _, r| {
            let p = b.add("pad", Op::Pad2d(Pad2d { pads: [0, 0, 1, 1], fill: Fill::NegInfinity }), &[r]);
            (
                b.add(
                    "op",
                    Op::MaxPool2d(MaxPool2d { kernel: [2, 2], stride: [2, 2], padding: [0, 0], ceil_mode: false }),
                    &[p],
                ),
                8,
            )
        }),
        // A ReLU after the norm: the global mean of a normalised map alone is its shift.
        map_case("group_norm", |b, _, r| {
            let n = b.add("op", Op::GroupNorm(GroupNorm { groups: 2, channels: 8, eps: 1e-5 }), &[r]);
            (b.add("act", Op::Relu(Relu), &[n]), 8)
        }),
        map_case("group_norm (instance norm: its channels prune)", |b, _, r| {
            let n = b.add("op", Op::GroupNorm(GroupNorm { groups: 8, channels: 8, eps: 1e-5 }), &[r]);
            (b.add("act", Op::Relu(Relu), &[n]), 8)
        }),
        map_case("add", |b, x, r| {
            let c2 = conv(b, "c2", 3, 8, x);
            (b.add("op", Op::Add(Add), &[r, c2]), 8)
        }),
        unary("scale with shift", Op::Scale(Scale { channels: 8, last: false, bias: true })),
        map_case("sub (PoolFormer's pooling minus its input)", |b, _, r| {
            let pool = AvgPool2d { count_include_pad: false, ..AvgPool2d::new([3, 3], [1, 1], [1, 1]) };
            let p = b.add("mix", Op::AvgPool2d(pool), &[r]);
            (b.add("op", Op::Sub(Sub), &[p, r]), 8)
        }),
        map_case("mul (squeeze-and-excitation gate)", |b, _, r| {
            let p = b.add("se.pool", Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d::global()), &[r]);
            let f1 = b.add("se.fc1", Op::Conv2d(Conv2d::new(8, 2, 1)), &[p]);
            let a = b.add("se.act", Op::Relu(Relu), &[f1]);
            let f2 = b.add("se.fc2", Op::Conv2d(Conv2d::new(2, 8, 1)), &[a]);
            let s = b.add("se.gate", Op::Sigmoid(Sigmoid), &[f2]);
            (b.add("op", Op::Mul(Mul), &[r, s]), 8)
        }),
        map_case("ConvNeXt block", |b, _, r| {
            let dw = b.add("dw", Op::Conv2d(Conv2d::new(8, 8, 3).padding(1).groups(8)), &[r]);
            let n = b.add("ln2d", Op::LayerNorm2d(LayerNorm2d { channels: 8, eps: 1e-6 }), &[dw]);
            let h =
                b.add("pw1", Op::ChannelLinear(ChannelLinear { in_channels: 8, out_channels: 16, bias: false }), &[n]);
            let h = b.add("act", Op::Gelu(Gelu { tanh: false }), &[h]);
            let h =
                b.add("pw2", Op::ChannelLinear(ChannelLinear { in_channels: 16, out_channels: 8, bias: false }), &[h]);
            let h = b.add("scale", Op::Scale(Scale::map(8)), &[h]);
            (b.add("op", Op::Add(Add), &[h, r]), 8)
        }),
        map_case("channel split into two convs, concatenated", |b, _, r| {
            let lo = b.add("lo", Op::ChannelSlice(ChannelSlice { start: 0, length: 3 }), &[r]);
            let hi = b.add("hi", Op::ChannelSlice(ChannelSlice { start: 3, length: 5 }), &[r]);
            let a = b.add("ca", Op::Conv2d(Conv2d::new(3, 4, 1)), &[lo]);
            let c = b.add("cb", Op::Conv2d(Conv2d::new(5, 4, 1)), &[hi]);
            (b.add("op", Op::Concat(Concat { dim: 1 }), &[a, c]), 8)
        }),
        map_case("concat", |b, x, r| {
            let c2 = conv(b, "c2", 3, 4, x);
            let cat = b.add("op", Op::Concat(Concat { dim: 1 }), &[r, c2]);
            (b.add("bn", Op::BatchNorm2d(BatchNorm2d::new(12)), &[cat]), 12)
        }),
    ];
    // Flatten of a map into a linear layer, with dropout between (the classic small-CNN head).
    let mut b = GraphBuilder::new();
    let x = image_input(&mut b);
    let c = conv(&mut b, "c1", 3, 4, x);
    let f = b.add("flat", Op::Flatten(Flatten { start_dim: 1 }), &[c]);
    let d = b.add("drop", Op::Dropout(Dropout { p: 0.5 }), &[f]);
    let h = b.add("fc1", Op::Linear(Linear { in_features: 144, out_features: 6, bias: false }), &[d]);
    let a = b.add("act", Op::Relu(Relu), &[h]);
    let out = b.add("fc", Op::Linear(Linear { in_features: 6, out_features: 4, bias: false }), &[a]);
    v.push(finish("flatten into linear", b, out));
    // A vision transformer block: patches, class token, positions, LayerNorm, attention, layer scale.
    let mut b = GraphBuilder::new();
    let x = image_input(&mut b);
    let p = b.add("patch", Op::Conv2d(Conv2d::new(3, 8, 2).stride(2)), &[x]);
    let t = b.add("tokens", Op::PatchesToTokens(PatchesToTokens), &[p]);
    let t = b.add("cls", Op::ClassToken(ClassToken::new(8)), &[t]);
    let t = b.add("pos", Op::PositionEmbedding(PositionEmbedding { max_len: 10, dim: 8, leading_one: true }), &[t]);
    // Register tokens after the positions (DINOv2 with registers).
    let t = b.add("reg", Op::ClassToken(ClassToken { dim: 8, tokens: 2 }), &[t]);
    let n = b.add("ln", Op::LayerNorm(LayerNorm { dim: 8, eps: 1e-6 }), &[t]);
    let qkv = b.add("qkv", Op::Linear(Linear { in_features: 8, out_features: 24, bias: false }), &[n]);
    let att = b.add("attn", Op::Attention(Attention { heads: 2, head_dim: 4, packed: true }), &[qkv]);
    let o = b.add("proj", Op::Linear(Linear { in_features: 8, out_features: 8, bias: false }), &[att]);
    // Layer scale on tokens (CaiT, DeiT III, BEiT).
    let o = b.add("ls1", Op::Scale(Scale { channels: 8, last: true, bias: false }), &[o]);
    let s = b.add("res", Op::Add(Add), &[o, t]);
    // Token mixing (MLP-Mixer): 9 patches, the class token and 2 register tokens.
    let s = b.add("mix", Op::TokenLinear(TokenLinear { in_tokens: 12, out_tokens: 12, bias: false }), &[s]);
    let h = b.add("mlp.0", Op::Linear(Linear { in_features: 8, out_features: 16, bias: false }), &[s]);
    let h = b.add("mlp.1", Op::Gelu(Gelu { tanh: false }), &[h]);
    let h = b.add("mlp.2", Op::Linear(Linear { in_features: 16, out_features: 8, bias: false }), &[h]);
    let s = b.add("res2", Op::Add(Add), &[h, s]);
    let c = b.add("select", Op::SelectToken(SelectToken { index: 0 }), &[s]);
    // The patch tokens' mean beside the class token (DINOv2's classifier), concatenated features.
    let patches = b.add("patches", Op::TokenSlice(TokenSlice { start: 3, length: 9 }), &[s]);
    let mean = b.add("mean", Op::MeanPool(MeanPool), &[patches]);
    let c = b.add("features", Op::Concat(Concat { dim: 1 }), &[c, mean]);
    let out = b.add("head", Op::Linear(Linear { in_features: 16, out_features: 4, bias: false }), &[c]);
    v.push(finish("vision transformer block", b, out));
    // A text encoder: embeddings, separate q / k / v with a padding mask, mean pooling.
    let mut b = GraphBuilder::new();
    let ids = b.input("ids", InputKind::TokenIds { max_len: 8 });
    let mask = b.input("mask", InputKind::AttentionMask { max_len: 8 });
    let e = b.add("emb", Op::Embedding(Embedding { num: 20, dim: 8 }), &[ids]);
    let e = b.add("seg", Op::SegmentEmbedding(SegmentEmbedding { types: 2, dim: 8 }), &[e]);
    let e = b.add("pos", Op::PositionEmbedding(PositionEmbedding { max_len: 8, dim: 8, leading_one: false }), &[e]);
    let q = b.add("q", Op::Linear(Linear { in_features: 8, out_features: 8, bias: false }), &[e]);
    let k = b.add("k", Op::Linear(Linear { in_features: 8, out_features: 8, bias: false }), &[e]);
    let vv = b.add("v", Op::Linear(Linear { in_features: 8, out_features: 8, bias: false }), &[e]);
    let att = b.add("attn", Op::Attention(Attention { heads: 2, head_dim: 4, packed: false }), &[q, k, vv, mask]);
    let pooled = b.add("pool", Op::MeanPool(MeanPool), &[att, mask]);
    let h = b.add("pre", Op::Linear(Linear { in_features: 8, out_features: 8, bias: false }), &[pooled]);
    let h = b.add("act", Op::Tanh(Tanh), &[h]);
    let out = b.add("head", Op::Linear(Linear { in_features: 8, out_features: 4, bias: false }), &[h]);
    v.push(finish("text encoder", b, out));
    // A decoder: RMSNorm, grouped-query attention with rotary positions, then plain multi-head
    // causal attention, SwiGLU MLPs (the gated product), mean pooling of real tokens.
    let mut b = GraphBuilder::new();
    let ids = b.input("ids", InputKind::TokenIds { max_len: 8 });
    let mask = b.input("mask", InputKind::AttentionMask { max_len: 8 });
    let mut t = b.add("emb", Op::Embedding(Embedding { num: 20, dim: 16 }), &[ids]);
    for (i, (heads, kv, rope)) in [(4, 2, Some(10_000.0)), (2, 2, None)].into_iter().enumerate() {
        let lin = |b: &mut GraphBuilder, name: &str, x: NodeId, i: i64, o: i64| {
            b.add(name.to_string(), Op::Linear(Linear { in_features: i, out_features: o, bias: false }), &[x])
        };
        let n = b.add(format!("l{i}.norm1"), Op::RmsNorm(RmsNorm { dim: 16, eps: 1e-6 }), &[t]);
        let q = lin(&mut b, &format!("l{i}.q"), n, 16, 4 * heads);
        let k = lin(&mut b, &format!("l{i}.k"), n, 16, 4 * kv);
        let vv = lin(&mut b, &format!("l{i}.v"), n, 16, 4 * kv);
        let att = CausalAttention { heads, kv_heads: kv, head_dim: 4, rope_theta: rope, groups: Vec::new() };
        let a = b.add(format!("l{i}.attn"), Op::CausalAttention(att), &[q, k, vv, mask]);
        let o = lin(&mut b, &format!("l{i}.o"), a, 4 * heads, 16);
        t = b.add(format!("l{i}.res1"), Op::Add(Add), &[o, t]);
        let n = b.add(format!("l{i}.norm2"), Op::RmsNorm(RmsNorm { dim: 16, eps: 1e-6 }), &[t]);
        let gate = lin(&mut b, &format!("l{i}.gate"), n, 16, 12);
        let gate = b.add(format!("l{i}.act"), Op::Silu(Silu), &[gate]);
        let up = lin(&mut b, &format!("l{i}.up"), n, 16, 12);
        let m = b.add(format!("l{i}.prod"), Op::Mul(Mul), &[up, gate]);
        let down = lin(&mut b, &format!("l{i}.down"), m, 12, 16);
        t = b.add(format!("l{i}.res2"), Op::Add(Add), &[down, t]);
    }
    let n = b.add("norm", Op::RmsNorm(RmsNorm { dim: 16, eps: 1e-6 }), &[t]);
    let pooled = b.add("pool", Op::MeanPool(MeanPool), &[n, mask]);
    let out = b.add("head", Op::Linear(Linear { in_features: 16, out_features: 4, bias: false }), &[pooled]);
    v.push(finish("decoder", b, out));
    // RoBERTa's embeddings: positions counted from the token ids, padding-aware.
    let mut b = GraphBuilder::new();
    let ids = b.input("ids", InputKind::TokenIds { max_len: 8 });
    let e = b.add("emb", Op::Embedding(Embedding { num: 20, dim: 8 }), &[ids]);
    let pos = TokenPositionEmbedding { max_len: 12, dim: 8, padding_idx: 1 };
    let e = b.add("pos", Op::TokenPositionEmbedding(pos), &[e, ids]);
    let n = b.add("ln", Op::LayerNorm(LayerNorm { dim: 8, eps: 1e-5 }), &[e]);
    let c = b.add("select", Op::SelectToken(SelectToken { index: 0 }), &[n]);
    let out = b.add("head", Op::Linear(Linear { in_features: 8, out_features: 4, bias: false }), &[c]);
    v.push(finish("token positions", b, out));
    v
}

/// Ops whose LRP rule conserves relevance on a bias-free layer. The others: an input (no rule),
/// learned tables added to a signal (they act as a bias and keep their share), embeddings
/// (relevance stops at token ids), attention (the softmax rule is not conservative).
fn conserves(op: &Op) -> bool {
    !matches!(
        op,
        Op::Input(_)
            | Op::Embedding(_)
            | Op::PositionEmbedding(_)
            | Op::MapPositionEmbedding(_)
            | Op::TokenPositionEmbedding(_)
            | Op::SegmentEmbedding(_)
            | Op::ClassToken(_)
            | Op::Attention(_)
            | Op::CausalAttention(_)
    )
}

#[test]
fn every_op_kind_has_a_case() {
    let covered: BTreeSet<&str> =
        cases().iter().flat_map(|c| c.graph.nodes().iter().map(|n| n.op.kind_name()).collect::<Vec<_>>()).collect();
    let all: BTreeSet<&str> = OP_NAMES.iter().copied().collect();
    let missing: Vec<&&str> = all.difference(&covered).collect();
    assert!(missing.is_empty(), "op kinds without a contract case: {missing:?}");
}

/// Writes every case's model (by `write`) and inputs, runs `script` once over all of them, and
/// returns (case, ours, theirs).
fn against_oracle(
    script: &str,
    cases: Vec<Case>,
    write: impl Fn(&Graph, &std::path::Path) -> std::path::PathBuf,
) -> Vec<(Case, Tensor)> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let model = write(&case.graph, &dir.path().join(format!("m{i}")));
        let named: Vec<(String, Tensor)> =
            case.inputs.iter().enumerate().map(|(k, t)| (format!("in{k}"), t.shallow_clone())).collect();
        let input = dir.path().join(format!("in{i}.safetensors"));
        Tensor::write_safetensors(&named, &input).unwrap();
        args.extend([model, input, dir.path().join(format!("out{i}.safetensors"))]);
    }
    let args_str: Vec<&str> = args.iter().map(|p| p.to_str().unwrap()).collect();
    common::run_oracle(script, &args_str);
    cases
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c, common::read_tensor(&dir.path().join(format!("out{i}.safetensors")), "y")))
        .collect()
}

#[test]
fn forward_equals_pytorch() {
    let results = against_oracle("graph_torch.py", cases(), |g, p| {
        g.save(p).unwrap();
        p.to_path_buf()
    });
    for (case, theirs) in results {
        let ours = tch::no_grad(|| case.graph.forward(&case.inputs, Mode::Eval)).unwrap();
        let err = common::rel_err(&ours, &theirs);
        assert!(err < 1e-10, "{}: relative error {err:e} against PyTorch", case.name);
    }
}

#[test]
fn onnx_export_equals_onnxruntime() {
    let cases: Vec<Case> = cases()
        .into_iter()
        .map(|mut c| {
            c.graph.set_kind(Kind::Float);
            c.inputs = c
                .inputs
                .iter()
                .map(|t| if t.is_floating_point() { t.to_kind(Kind::Float) } else { t.shallow_clone() })
                .collect();
            c
        })
        .collect();
    let results = against_oracle("onnx_run.py", cases, |g, p| {
        let model = p.with_extension("onnx");
        relprune::export::onnx::export(g, &model).unwrap();
        model
    });
    for (case, theirs) in results {
        let ours = tch::no_grad(|| case.graph.forward(&case.inputs, Mode::Eval)).unwrap();
        let err = common::rel_err(&ours, &theirs);
        assert!(err < 1e-5, "{}: relative error {err:e} against onnxruntime", case.name);
    }
}

/// Every conserving node passes on the relevance it receives: Σ R(inputs) = Σ R(output), per
/// sample, with LRP-ε (ε tiny), BatchNorm passed, and both gate rules.
#[test]
fn lrp_conserves_relevance_through_bias_free_ops() {
    for case in cases() {
        for gate in [GateRule::Constant, GateRule::Uniform] {
            let g = &case.graph;
            let mut config = LrpConfig::new(GroupRules::all(Rule::Epsilon { epsilon: 1e-12 }));
            config.batch_norm = BatchNormTreatment::Pass;
            config.gate = gate;
            config.stabilizer = 1e-12;
            let labels = Tensor::from_slice(&[1i64, 3]);
            let keep = vec![true; g.nodes().len()];
            let rel = relevances(g, &case.inputs, &labels, &config, &keep).unwrap();
            let consumers = g.consumers();
            let sum = |t: &Tensor| t.flatten(1, -1).sum_dim_intlist(1, false, Kind::Double);
            for (id, n) in g.nodes().iter().enumerate() {
                // Inputs that feed more than this node receive relevance from elsewhere too.
                if !conserves(&n.op) || n.inputs.iter().any(|&i| consumers[i].len() > 1) {
                    continue;
                }
                let Some(r_out) = &rel[id] else { continue };
                let mut r_in = Tensor::zeros([2], (Kind::Double, tch::Device::Cpu));
                for &i in &n.inputs {
                    if let Some(r) = &rel[i] {
                        r_in += sum(r);
                    }
                }
                let (a, b) = (sum(r_out), r_in);
                let err = (&a - &b).abs().max().double_value(&[]) / a.abs().max().double_value(&[]).max(1e-9);
                assert!(
                    err < 1e-6,
                    "{} ({gate:?}): `{}` ({}) loses relevance: {err:e}",
                    case.name,
                    n.name,
                    n.op.kind_name()
                );
            }
        }
    }
}

/// Filters (and neurons) removed physically compute what the masked graph computes, and the
/// pruned graph is valid; blocked groups say why.
#[test]
fn surgery_keeps_shapes_consistent() {
    for case in cases() {
        for kind in [ComponentKind::Filters, ComponentKind::Neurons, ComponentKind::Heads] {
            let mut g = case.graph.deep_clone();
            let Ok(comps) = ComponentSet::find(&g, kind) else { continue };
            let scores = Scores { values: (0..comps.total).map(|i| ((i * 7919) % 101) as f64).collect() };
            let ranking = GroupRanking::new(&g, &comps, &scores, PruneOrder::LeastRelevantFirst).unwrap();
            for gr in &ranking.groups {
                if let Some(why) = &gr.blocked {
                    assert!(!why.is_empty());
                }
            }
            let sel = ranking.selection(0.5).unwrap();
            if sel.is_empty() {
                continue;
            }
            let (small, _) = prune(&g, &comps, &ranking, &sel).unwrap();
            let pruned = tch::no_grad(|| small.forward(&case.inputs, Mode::Eval)).unwrap();
            let masked = {
                let guard = apply_mask(&mut g, &comps, &ranking.component_indices(&comps, &sel)).unwrap();
                tch::no_grad(|| guard.forward(&case.inputs, Mode::Eval)).unwrap()
            };
            let err = common::rel_err(&pruned, &masked);
            assert!(err < 1e-10, "{} {kind:?}: pruned vs masked relative error {err:e}", case.name);
            assert!(small.num_parameters() < g.num_parameters(), "{} {kind:?}: nothing removed", case.name);
        }
    }
}

/// The op reference in `docs/graph-format.md`, generated from the code: every op kind, an
/// example of its JSON, its inputs, parameter roles and channel behaviour.
fn op_reference() -> String {
    let mut seen = BTreeSet::new();
    let mut rows = Vec::new();
    for case in cases() {
        for n in case.graph.nodes() {
            if !seen.insert(n.op.kind_name()) {
                continue;
            }
            let k = n.op.kind();
            let json = serde_json::to_string(&n.op).unwrap();
            let params: Vec<String> = k.params().iter().map(|p| format!("`{}` {:?}", p.role, p.shape)).collect();
            let arity = match k.arity() {
                relprune::graph::ops::Arity::Exactly(n) => n.to_string(),
                relprune::graph::ops::Arity::AtLeast(n) => format!("{n} or more"),
                relprune::graph::ops::Arity::Between(a, b) => format!("{a} to {b}"),
            };
            let channels = match k.channels() {
                ChannelMap::Same => "keeps its input's",
                ChannelMap::New => "makes new ones",
                ChannelMap::Merge => "ties its inputs' together",
                ChannelMap::Concat => "lists its inputs' in order",
                ChannelMap::Flatten => "spreads each over a block",
                ChannelMap::Slice { .. } => "takes a range of its input's",
            };
            let blocked = if k.channel_block().is_some() { "; cannot lose channels" } else { "" };
            let units = match k.units() {
                Some(Units::Channels(_)) => "channels",
                Some(Units::Heads { .. }) => "heads",
                None => "—",
            };
            rows.push(format!(
                "| `{}` | `{json}` | {arity} | {} | {channels}{blocked} | {units} |",
                n.op.kind_name(),
                if params.is_empty() { "—".to_string() } else { params.join(", ") }
            ));
        }
    }
    rows.sort();
    let mut s = String::from(
        "| type | example | inputs | parameters (role, shape) | channels | prunable units |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&r);
        s.push('\n');
    }
    s
}

#[test]
fn graph_format_reference_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/graph-format.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- op reference: generated by tests/op_contract.rs -->\n", "<!-- end of op reference -->");
    let (head, rest) = doc.split_once(begin).expect("begin marker");
    let (_, tail) = rest.split_once(end).expect("end marker");
    let fresh = format!("{head}{begin}{}{end}{tail}", op_reference());
    if std::env::var_os("RELPRUNE_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    assert!(fresh == doc, "docs/graph-format.md's op reference is stale: rerun with RELPRUNE_BLESS=1");
}
