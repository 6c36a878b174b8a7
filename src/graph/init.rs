//! Parameter initialisation from a seeded generator, matching PyTorch's layer defaults (and the
//! torchvision model-specific schemes builders ask for).

use super::{ops::uniform, Graph, InitHint, Node, NodeId, ParamStore, Role};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// Standard normal samples (Box–Muller), scaled by `std`.
pub fn normal(rng: &mut ChaCha8Rng, shape: &[i64], std: f64) -> Tensor {
    let n = shape.iter().product::<i64>() as usize;
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        v.push((r * t.cos() * std) as f32);
        v.push((r * t.sin() * std) as f32);
    }
    v.truncate(n);
    Tensor::from_slice(&v).reshape(shape)
}

/// Initialises one node's tensors as the corresponding `torch.nn` layer does.
pub fn pytorch_default(node: &Node, params: &mut ParamStore, rng: &mut ChaCha8Rng) {
    let kind = node.op.kind();
    for ps in kind.params() {
        let Some(key) = node.params.get(&ps.role) else { continue };
        params.insert(key.clone(), kind.init(ps.role, &ps.shape, rng));
    }
}

/// torchvision's ResNet/VGG conv scheme: Kaiming normal, fan-out, ReLU gain; zero bias.
pub fn kaiming_normal_fan_out(graph: &mut Graph, id: NodeId, rng: &mut ChaCha8Rng) {
    let node = graph.node(id).clone();
    if let Some(InitHint::Conv { fan_out }) = node.op.kind().init_hint() {
        let std = (2.0 / fan_out as f64).sqrt();
        set(graph, &node, Role::Weight, normal(rng, &node.op.kind().params()[0].shape, std));
        zero_bias(graph, &node);
    }
}

/// Normal(0, std) weights and zero bias for a Linear node (torchvision VGG classifier: 0.01).
pub fn normal_linear(graph: &mut Graph, id: NodeId, std: f64, rng: &mut ChaCha8Rng) {
    let node = graph.node(id).clone();
    if let Some(InitHint::Linear { in_features, out_features }) = node.op.kind().init_hint() {
        set(graph, &node, Role::Weight, normal(rng, &[out_features, in_features], std));
        zero_bias(graph, &node);
    }
}

fn set(graph: &mut Graph, node: &Node, role: Role, t: Tensor) {
    if let Some(key) = node.params.get(&role) {
        graph.params_mut().insert(key.clone(), t);
    }
}

/// Zeroes the node's bias, when its op has one.
fn zero_bias(graph: &mut Graph, node: &Node) {
    for ps in node.op.kind().params().into_iter().filter(|ps| ps.role == Role::Bias) {
        set(graph, node, Role::Bias, Tensor::zeros(ps.shape.as_slice(), (Kind::Float, crate::device::HOST)));
    }
}

/// Xavier-uniform weights and zero bias for a Linear node (torchvision's ViT scheme).
pub fn xavier_uniform_linear(graph: &mut Graph, id: NodeId, rng: &mut ChaCha8Rng) {
    let node = graph.node(id).clone();
    if let Some(InitHint::Linear { in_features, out_features }) = node.op.kind().init_hint() {
        let bound = (6.0 / (in_features + out_features) as f64).sqrt();
        set(graph, &node, Role::Weight, uniform(rng, &[out_features, in_features], bound));
        zero_bias(graph, &node);
    }
}

/// Zeroes every parameter of a node (torchvision zero-initialises the ViT classifier).
pub fn zero(graph: &mut Graph, id: NodeId) {
    let node = graph.node(id).clone();
    for ps in node.op.kind().params() {
        set(graph, &node, ps.role, Tensor::zeros(ps.shape.as_slice(), (Kind::Float, crate::device::HOST)));
    }
}

/// N(0, std) weights and zero bias for a Linear or Embedding node (BERT's scheme).
pub fn normal_weights(graph: &mut Graph, id: NodeId, std: f64, rng: &mut ChaCha8Rng) {
    let node = graph.node(id).clone();
    for ps in node.op.kind().params() {
        let t = match ps.role {
            Role::Weight => normal(rng, &ps.shape, std),
            _ => Tensor::zeros(ps.shape.as_slice(), (Kind::Float, crate::device::HOST)),
        };
        set(graph, &node, ps.role, t);
    }
}
