//! Patterns that exporters spell as several ONNX nodes and relprune holds as one op: GELU from
//! Erf or Tanh, LayerNorm decomposed into reductions, SiLU and Hardswish as `x·gate(x)`, and
//! multi-head self-attention. A pattern is found from its anchor node (Erf, Tanh, Sqrt, Sigmoid,
//! HardSigmoid, Softmax), delimited as the closed region between one input value and one output
//! value, and accepted only when relprune's op gives the region's value on the example input.

use super::{eval, ops, OnnxGraph};
use crate::error::Result;
use std::collections::{BTreeSet, HashSet};
use tch::{Kind, Tensor};

/// What a fused region computes.
#[derive(Clone, Debug)]
pub enum Fused {
    /// GELU, exact (Erf) or tanh-approximated.
    Gelu { tanh: bool },
    /// `x · sigmoid(x)`.
    Silu,
    /// `x · hardsigmoid(x)`.
    Hardswish,
    /// LayerNorm over the last dimension; `gamma` / `beta` are value names (None: 1 / 0).
    LayerNorm { eps: f64, gamma: Option<String>, beta: Option<String> },
    /// GroupNorm over a map: an instance norm of the map reshaped to (N, groups, −1), then
    /// the per-channel affine map (or InstanceNormalization on the map itself). `gamma` /
    /// `beta` are value names of C values (None: 1 / 0).
    GroupNorm { groups: i64, eps: f64, gamma: Option<String>, beta: Option<String> },
    /// Multi-head self-attention from the projections to the merged heads.
    Attention {
        heads: i64,
        /// q, k, v projections (one value when packed).
        projections: Vec<String>,
        /// The value added to the scores (derived from the attention-mask input), if any.
        mask: Option<String>,
    },
}

/// A fused region of the ONNX graph.
#[derive(Debug)]
pub struct Unit {
    /// What it computes.
    pub kind: Fused,
    /// The input value (for attention, the first projection).
    pub input: String,
    /// The output value.
    pub output: String,
    /// The ONNX nodes it replaces (positions).
    pub nodes: BTreeSet<usize>,
}

impl Unit {
    /// One line for `relprune info`.
    pub fn describe(&self, g: &OnnxGraph) -> String {
        let ops: Vec<&str> = self.nodes.iter().map(|&i| g.model.nodes[i].op.as_str()).collect();
        let what = match &self.kind {
            Fused::Gelu { tanh: false } => "gelu".to_string(),
            Fused::Gelu { tanh: true } => "gelu (tanh)".to_string(),
            Fused::Silu => "silu".into(),
            Fused::Hardswish => "hardswish".into(),
            Fused::LayerNorm { .. } => "layer_norm".into(),
            Fused::GroupNorm { groups, .. } => format!("group_norm ({groups} groups)"),
            Fused::Attention { heads, .. } => format!("attention ({heads} heads)"),
        };
        format!("{what} ← {} ONNX nodes ({})", ops.len(), summarize(&ops))
    }
}

fn summarize(ops: &[&str]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for o in ops {
        match counts.iter_mut().find(|(k, _)| k == o) {
            Some((_, n)) => *n += 1,
            None => counts.push((o, 1)),
        }
    }
    counts.iter().map(|(k, n)| if *n > 1 { format!("{k}×{n}") } else { k.to_string() }).collect::<Vec<_>>().join(", ")
}

fn close(a: &Tensor, b: &Tensor) -> bool {
    if a.size() != b.size() {
        return false;
    }
    let scale = b.abs().max().double_value(&[]).max(1.0);
    let diff = (a - b).abs().max().double_value(&[]);
    diff <= 1e-4 * scale
}

/// Finds every pattern; a node belongs to at most one unit.
pub fn find(g: &OnnxGraph) -> Result<Vec<Unit>> {
    let mut units: Vec<Unit> = Vec::new();
    let mut taken: HashSet<usize> = HashSet::new();
    for (i, n) in g.model.nodes.iter().enumerate() {
        if taken.contains(&i) || g.is_folded(i) {
            continue;
        }
        let unit = match n.op.as_str() {
            "Softmax" => attention(g, i)?,
            "Erf" => numeric(g, i, &|x| Ok(x.f_gelu("none")?), Fused::Gelu { tanh: false })?,
            "Tanh" => numeric(g, i, &|x| Ok(x.f_gelu("tanh")?), Fused::Gelu { tanh: true })?,
            "Sqrt" => layer_norm(g, i)?,
            "InstanceNormalization" => group_norm(g, i)?,
            "Sigmoid" => gate(g, i, Fused::Silu),
            "HardSigmoid" if ops::is_pytorch_hardsigmoid(n) => gate(g, i, Fused::Hardswish),
            _ => None,
        };
        if let Some(u) = unit {
            if u.nodes.iter().any(|k| taken.contains(k)) {
                continue;
            }
            taken.extend(u.nodes.iter().copied());
            units.push(u);
        }
    }
    Ok(units)
}

/// `x · f(x)` where node `i` computes f(x) and its only consumer multiplies by x.
fn gate(g: &OnnxGraph, i: usize, kind: Fused) -> Option<Unit> {
    let n = &g.model.nodes[i];
    let x = n.inputs.first()?;
    let consumers = g.consumers(&n.outputs[0]);
    if consumers.len() != 1 {
        return None;
    }
    let m = &g.model.nodes[consumers[0]];
    if m.op != "Mul" || !(m.inputs.contains(x) && m.inputs.contains(&n.outputs[0])) {
        return None;
    }
    Some(Unit { kind, input: x.clone(), output: m.outputs[0].clone(), nodes: [i, consumers[0]].into() })
}

/// Non-constant values within `depth` producer steps above node `i`, farthest first: a
/// pattern's input is the farthest value its region closes on (LayerNorm is shift-invariant,
/// so its inner `x - mean` would pass the numeric test too).
fn ancestors(g: &OnnxGraph, i: usize, depth: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut frontier = vec![i];
    for _ in 0..depth {
        let mut next = Vec::new();
        for &k in &frontier {
            for v in &g.model.nodes[k].inputs {
                if v.is_empty() || g.is_const(v) || out.contains(v) {
                    continue;
                }
                out.push(v.clone());
                if let Some(&p) = g.producer.get(v) {
                    next.push(p);
                }
            }
        }
        frontier = next;
    }
    out.reverse();
    out
}

/// Values within `depth` consumer steps below node `i` (farthest first).
fn descendants(g: &OnnxGraph, i: usize, depth: usize) -> Vec<String> {
    let mut out: Vec<String> = g.model.nodes[i].outputs.clone();
    let mut frontier = vec![i];
    for _ in 0..depth {
        let mut next = Vec::new();
        for &k in &frontier {
            for v in &g.model.nodes[k].outputs {
                for &c in g.consumers(v) {
                    for o in &g.model.nodes[c].outputs {
                        if !out.contains(o) {
                            out.push(o.clone());
                            next.push(c);
                        }
                    }
                }
            }
        }
        frontier = next;
    }
    out.reverse();
    out
}

/// The nodes between `x` and `y`, if they form a closed region: every node reaches back only
/// to `x` and constants, and nothing outside reads its inner values.
pub fn region(g: &OnnxGraph, x: &str, y: &str, limit: usize) -> Option<BTreeSet<usize>> {
    let mut nodes = BTreeSet::new();
    let mut stack = vec![*g.producer.get(y)?];
    while let Some(k) = stack.pop() {
        if !nodes.insert(k) {
            continue;
        }
        if nodes.len() > limit {
            return None;
        }
        for v in &g.model.nodes[k].inputs {
            if v.is_empty() || v == x || g.is_const(v) {
                continue;
            }
            stack.push(*g.producer.get(v)?);
        }
    }
    // x itself must be read by the region.
    if !nodes.iter().any(|&k| g.model.nodes[k].inputs.iter().any(|v| v == x)) {
        return None;
    }
    for &k in &nodes {
        for o in &g.model.nodes[k].outputs {
            if o != y && g.consumers(o).iter().any(|&c| !nodes.contains(&c) && !g.is_folded(c)) {
                return None;
            }
        }
    }
    Some(nodes)
}

/// Recognises a region from its input's value, its output's value and its nodes.
type Accept<'a> = dyn Fn(&Tensor, &Tensor, &BTreeSet<usize>) -> Result<Option<Fused>> + 'a;

/// The first closed region around node `i` (its input within `up` producer steps above, its
/// output within 3 consumer steps below, at most `limit` nodes) that `accept` recognises from the
/// input's value, the output's value and the region's nodes.
fn region_around(g: &OnnxGraph, i: usize, up: usize, limit: usize, accept: &Accept) -> Result<Option<Unit>> {
    let xs = ancestors(g, i, up);
    for y in descendants(g, i, 3) {
        let Some(yv) = g.values.get(&y) else { continue };
        if !yv.is_floating_point() {
            continue;
        }
        for x in &xs {
            let xv = &g.values[x];
            if xv.size() != yv.size() || !xv.is_floating_point() {
                continue;
            }
            let Some(nodes) = region(g, x, &y, limit) else { continue };
            if let Some(kind) = accept(xv, yv, &nodes)? {
                return Ok(Some(Unit { kind, input: x.clone(), output: y, nodes }));
            }
        }
    }
    Ok(None)
}

/// A region around node `i` whose output is `f(input)` on the example input. An elementwise
/// function's constants are scalars: a region holding a per-channel constant has swallowed a
/// neighbour (a linear layer's bias Add before GELU, which a near-zero bias would let pass the
/// numeric test, and the bias would be lost).
fn numeric(g: &OnnxGraph, i: usize, f: &dyn Fn(&Tensor) -> Result<Tensor>, kind: Fused) -> Result<Option<Unit>> {
    region_around(g, i, 5, 12, &|x, y, nodes| {
        let scalars = nodes
            .iter()
            .flat_map(|&k| g.model.nodes[k].inputs.iter())
            .filter(|v| !v.is_empty() && g.is_const(v))
            .all(|v| g.values.get(v).is_none_or(|t| t.numel() <= 1));
        Ok((scalars && nodes.len() >= 2 && close(&f(x)?, y)).then(|| kind.clone()))
    })
}

/// LayerNorm decomposed: the region around its Sqrt, with γ, β and ε read from its constants.
fn layer_norm(g: &OnnxGraph, i: usize) -> Result<Option<Unit>> {
    region_around(g, i, 6, 14, &|xv, yv, nodes| {
        if !nodes.iter().any(|&k| g.model.nodes[k].op == "ReduceMean") {
            return Ok(None);
        }
        let c = *xv.size().last().unwrap_or(&0);
        let (mut eps, mut gamma, mut beta) = (None, None, None);
        for &k in nodes {
            let n = &g.model.nodes[k];
            for v in n.inputs.iter().filter(|v| g.is_const(v)) {
                let t = &g.values[v];
                if !t.is_floating_point() {
                    continue;
                }
                match (n.op.as_str(), t.numel() as i64) {
                    ("Add", 1) if consumers_op(g, &n.outputs[0], "Sqrt") => {
                        eps = Some(t.f_flatten(0, -1)?.double_value(&[0]))
                    }
                    ("Mul", n) if n == c => gamma = Some(v.clone()),
                    ("Add", n) if n == c => beta = Some(v.clone()),
                    _ => {}
                }
            }
        }
        let Some(eps) = eps else { return Ok(None) };
        let gt = gamma.as_ref().map(|v| g.values[v].f_flatten(0, -1)).transpose()?;
        let bt = beta.as_ref().map(|v| g.values[v].f_flatten(0, -1)).transpose()?;
        let want = xv.f_layer_norm([c].as_slice(), gt.as_ref(), bt.as_ref(), eps, false)?;
        Ok(close(&want, yv).then_some(Fused::LayerNorm { eps, gamma, beta }))
    })
}

/// GroupNorm as PyTorch exports it: Reshape to (N, G, −1), InstanceNormalization (scale 1,
/// shift 0), Reshape back, Mul by γ, Add β; or InstanceNormalization on the map itself
/// (InstanceNorm2d, its scale and shift per channel).
fn group_norm(g: &OnnxGraph, i: usize) -> Result<Option<Unit>> {
    let inorm = &g.model.nodes[i];
    let eps = inorm.float("epsilon", 1e-5) as f64;
    let (scale, shift) = (&inorm.inputs[1], &inorm.inputs[2]);
    if !(g.is_const(scale) && g.is_const(shift)) {
        return Ok(None);
    }
    let inner = &g.values[&inorm.inputs[0]];
    if inner.dim() == 4 {
        // InstanceNorm2d: one group per channel, the instance norm's own affine map.
        let (x, y) = (&inorm.inputs[0], &inorm.outputs[0]);
        let kind =
            Fused::GroupNorm { groups: inner.size()[1], eps, gamma: Some(scale.clone()), beta: Some(shift.clone()) };
        return Ok(Some(Unit { kind, input: x.clone(), output: y.clone(), nodes: [i].into() }));
    }
    let plain =
        |v: &str, want: f64| g.values[v].f_sub_scalar(want).is_ok_and(|d| d.abs().max().double_value(&[]) == 0.0);
    if inner.dim() != 3 || !plain(scale, 1.0) || !plain(shift, 0.0) {
        return Ok(None);
    }
    let groups = inner.size()[1];
    region_around(g, i, 2, 10, &|xv, yv, nodes| {
        if xv.dim() != 4 || xv.size()[1] % groups != 0 {
            return Ok(None);
        }
        let c = xv.size()[1];
        let (mut gamma, mut beta) = (None, None);
        for &k in nodes {
            let n = &g.model.nodes[k];
            for v in n.inputs.iter().filter(|v| g.is_const(v) && g.values[*v].is_floating_point()) {
                match (n.op.as_str(), g.values[v].numel() as i64) {
                    ("Mul", n) if n == c => gamma = Some(v.clone()),
                    ("Add", n) if n == c => beta = Some(v.clone()),
                    _ => {}
                }
            }
        }
        let gt = gamma.as_ref().map(|v| g.values[v].f_flatten(0, -1)).transpose()?;
        let bt = beta.as_ref().map(|v| g.values[v].f_flatten(0, -1)).transpose()?;
        let want = xv.f_group_norm(groups, gt.as_ref(), bt.as_ref(), eps, false)?;
        Ok(close(&want, yv).then(|| Fused::GroupNorm { groups, eps, gamma: gamma.clone(), beta: beta.clone() }))
    })
}

fn consumers_op(g: &OnnxGraph, v: &str, op: &str) -> bool {
    g.consumers(v).iter().any(|&c| g.model.nodes[c].op == op)
}

/// Whether a two-operand MatMul lies within `depth` producer steps above `v` (the scores side
/// of a masked sum, as opposed to the mask).
fn leads_to_matmul(g: &OnnxGraph, v: &str, depth: usize) -> bool {
    let Some(&p) = g.producer.get(v) else { return false };
    let n = &g.model.nodes[p];
    let dynamic: Vec<&String> = n.inputs.iter().filter(|x| !x.is_empty() && !g.is_const(x)).collect();
    if n.op == "MatMul" && dynamic.len() == 2 {
        return true;
    }
    depth > 0 && dynamic.iter().any(|x| leads_to_matmul(g, x, depth - 1))
}

/// Follows `v` upwards through layout ops and constant scalings to the value that produced it
/// (a projection); returns that value, the nodes passed and the product of the scalings.
fn up_through_layout(g: &OnnxGraph, mut v: String, nodes: &mut BTreeSet<usize>) -> Result<(String, f64)> {
    let mut scale = 1.0;
    for _ in 0..16 {
        let Some(&p) = g.producer.get(&v) else { break };
        let n = &g.model.nodes[p];
        let dynamic: Vec<&String> = n.inputs.iter().filter(|x| !x.is_empty() && !g.is_const(x)).collect();
        if dynamic.len() != 1 {
            break;
        }
        let scalar = |x: &String| g.is_const(x) && g.values[x].numel() == 1 && g.values[x].is_floating_point();
        match n.op.as_str() {
            _ if ops::lookup(&n.op).is_some_and(|d| d.moves) => {}
            "Mul" if n.inputs.iter().any(scalar) => {
                let c = n.inputs.iter().find(|x| scalar(x)).expect("checked");
                scale *= g.values[c].f_flatten(0, -1)?.double_value(&[0]);
            }
            "Div" if scalar(&n.inputs[1]) => scale /= g.values[&n.inputs[1]].f_flatten(0, -1)?.double_value(&[0]),
            _ => break,
        }
        nodes.insert(p);
        v = dynamic[0].clone();
    }
    Ok((v, scale))
}

/// Self-attention around a Softmax: scores = (q·kᵀ)·scale [+ mask], out = softmax·v, from the
/// q / k / v projections through head splits to the merged heads before the output projection.
fn attention(g: &OnnxGraph, s: usize) -> Result<Option<Unit>> {
    let sm = &g.model.nodes[s];
    let sv = &g.values[&sm.inputs[0]];
    if eval::axis(sm.int("axis", -1), sv.dim())? != sv.dim() as i64 - 1 || !(3..=4).contains(&sv.dim()) {
        return Ok(None);
    }
    let mut nodes: BTreeSet<usize> = [s].into();
    // Upwards from the scores: mask add, scalings, then the q·kᵀ matmul.
    let mut v = sm.inputs[0].clone();
    let mut mask = None;
    let mut scale = 1.0;
    let qk = loop {
        let Some(&p) = g.producer.get(&v) else { return Ok(None) };
        let n = &g.model.nodes[p];
        let dynamic: Vec<&String> = n.inputs.iter().filter(|x| !x.is_empty() && !g.is_const(x)).collect();
        match n.op.as_str() {
            "MatMul" if dynamic.len() == 2 => break p,
            "Add" if dynamic.len() == 2 && mask.is_none() => {
                // The mask is the operand that does not lead to the matmul (it depends on an input only).
                let (a, b) = (&n.inputs[0], &n.inputs[1]);
                let (keep, m) = if leads_to_matmul(g, a, 4) { (a, b) } else { (b, a) };
                mask = Some(m.clone());
                nodes.insert(p);
                v = keep.clone();
            }
            // masked_fill: Where(mask, very negative, scores) (DistilBERT).
            "Where" if dynamic.len() == 2 && mask.is_none() && g.is_const(&n.inputs[1]) => {
                let fill = g.values[&n.inputs[1]].f_flatten(0, -1)?.f_to_kind(Kind::Double)?;
                if fill.numel() != 1 || fill.double_value(&[0]) > -1e4 {
                    return Ok(None);
                }
                mask = Some(n.inputs[0].clone());
                nodes.insert(p);
                v = n.inputs[2].clone();
            }
            "Mul" | "Div" if dynamic.len() == 1 => {
                let c = n.inputs.iter().find(|x| g.is_const(x)).expect("one constant");
                let cv = &g.values[c];
                if cv.numel() != 1 {
                    return Ok(None);
                }
                let k = cv.f_flatten(0, -1)?.f_to_kind(Kind::Double)?.double_value(&[0]);
                scale = if n.op == "Mul" { scale * k } else { scale / k };
                nodes.insert(p);
                v = dynamic[0].clone();
            }
            "Identity" | "Cast" if dynamic.len() == 1 => {
                nodes.insert(p);
                v = dynamic[0].clone();
            }
            _ => return Ok(None),
        }
    };
    nodes.insert(qk);
    // Downwards from the softmax: (dropout) then the ·v matmul.
    let mut p_val = sm.outputs[0].clone();
    let av = loop {
        let cs = g.consumers(&p_val);
        if cs.len() != 1 {
            return Ok(None);
        }
        let n = &g.model.nodes[cs[0]];
        match n.op.as_str() {
            "MatMul" if n.inputs[0] == p_val => break cs[0],
            "Dropout" | "Identity" | "Cast" => {
                nodes.insert(cs[0]);
                p_val = n.outputs[0].clone();
            }
            _ => return Ok(None),
        }
    };
    nodes.insert(av);
    let qkn = &g.model.nodes[qk];
    let (q, sq) = up_through_layout(g, qkn.inputs[0].clone(), &mut nodes)?;
    let (k, sk) = up_through_layout(g, qkn.inputs[1].clone(), &mut nodes)?;
    let (vv, sv2) = up_through_layout(g, g.model.nodes[av].inputs[1].clone(), &mut nodes)?;
    if sv2 != 1.0 {
        return Ok(None);
    }
    scale *= sq * sk;
    // Downwards from the output through layout ops to the value the output projection reads.
    let mut out = g.model.nodes[av].outputs[0].clone();
    loop {
        let cs = g.consumers(&out);
        if cs.len() != 1 {
            break;
        }
        let n = &g.model.nodes[cs[0]];
        if !["Reshape", "Transpose", "Identity", "Flatten"].contains(&n.op.as_str()) {
            break;
        }
        nodes.insert(cs[0]);
        out = n.outputs[0].clone();
    }
    // Heads from the scores' shape: (B, H, T, T) or (B·H, T, T).
    let batch = g.batch;
    let heads = if sv.dim() == 4 { sv.size()[1] } else { sv.size()[0] / batch };
    let projections = if q == k && k == vv { vec![q.clone()] } else { vec![q.clone(), k, vv] };
    // The head width comes from the query alone: q may be separate from a packed k/v (PVT), and
    // widths may differ, where a sum over q, k and v divided by 3 gave a false head_dim (and a
    // false "scales its scores by …" refusal).
    let width = |p: &String| *g.values[p].size().last().unwrap_or(&0);
    let (e, kw, vw) = match projections.as_slice() {
        [packed] => (width(packed) / 3, width(packed) / 3, width(packed) / 3),
        [q, k, v] if k == v => (width(q), width(k) / 2, width(k) / 2),
        [q, k, v] => (width(q), width(k), width(v)),
        _ => return Ok(None),
    };
    // relprune's attention holds one head width for q, k and v.
    if heads <= 0 || e % heads != 0 || kw != e || vw != e {
        return Ok(None);
    }
    let dh = e / heads;
    if (scale - 1.0 / (dh as f64).sqrt()).abs() > 1e-4 * scale.abs().max(1.0) {
        crate::bail!(
            "{}: attention scales its scores by {scale}, not 1/√head_dim = {}; relprune's attention uses the standard scale",
            sm.describe(),
            1.0 / (dh as f64).sqrt()
        );
    }
    // Closed region: inner values are read only inside.
    for &k in &nodes {
        for o in &g.model.nodes[k].outputs {
            if *o != out && g.consumers(o).iter().any(|&c| !nodes.contains(&c) && !g.is_folded(c)) {
                return Ok(None);
            }
        }
    }
    Ok(Some(Unit { kind: Fused::Attention { heads, projections, mask }, input: q, output: out, nodes }))
}
