//! ONNX import: any ONNX classifier becomes a relprune [`Graph`], so every feature (components,
//! attribution, curves, optimisation, surgery, export) works on a user's own network.
//!
//! The pipeline, one module each:
//! 1. [`proto`] decodes the file (protobuf types generated from the official `onnx.proto`),
//!    including external-data files.
//! 2. [`eval`] runs the file once on an example input with a reference interpreter: constants
//!    and the exporters' shape arithmetic fold to values, and every tensor gets a concrete value.
//!    Each operator's evaluation, checks and lowering are its entry in the registry [`ops`];
//!    every node is checked against its entry (arity, attributes) before it runs.
//! 3. [`fuse`] finds the multi-node patterns (GELU, LayerNorm, SiLU, Hardswish, attention).
//! 4. [`lower`] maps each remaining node onto relprune's ops, tracking reshapes and transposes as
//!    [`view`]s of canonical tensors.
//! 5. The built graph runs on the same example input and every mapped value is compared with the
//!    file's: an import either reproduces the file or fails naming the node that differs.

pub mod eval;
pub mod fuse;
pub mod lower;
pub mod ops;
pub mod proto;
pub mod view;

use crate::error::{Error, Result};
use crate::graph::{Graph, GraphSpec, InputKind, Mode, GRAPH_FORMAT};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tch::{Kind, Tensor};

/// Every ONNX operator the importer reads and what it becomes, one row per doc line (operators
/// that are only folded share one); `docs/import-onnx.md`'s table is generated from the operator
/// registry ([`ops`]) this way (tests/onnx_import.rs checks it is current).
pub fn supported() -> Vec<(String, &'static str)> {
    ops::rows()
}

/// Batch size of the example input. One sample keeps imports fast (two forward passes of the
/// model); views are exact index maps, so no axis is confused with the batch even at size 1.
const EXAMPLE_BATCH: i64 = 1;
/// Sequence length of the example input when the file leaves it dynamic.
const EXAMPLE_TOKENS: i64 = 16;
/// Largest relative difference accepted between a mapped layer and the file's value.
const TOLERANCE: f64 = 1e-4;

/// The ONNX graph with its example values.
pub struct OnnxGraph {
    /// The decoded file.
    pub model: proto::OnnxModel,
    /// The value of every tensor on the example input (initializers included).
    pub values: HashMap<String, Tensor>,
    consts: HashSet<String>,
    /// Which node produces each value.
    pub producer: HashMap<String, usize>,
    consumers: HashMap<String, Vec<usize>>,
    /// The example batch size.
    pub batch: i64,
}

impl OnnxGraph {
    /// Whether `v` is a constant (an initializer or computed from constants and shapes only).
    pub fn is_const(&self, v: &str) -> bool {
        self.consts.contains(v)
    }
    /// Whether node `i` only computes constants.
    pub fn is_folded(&self, i: usize) -> bool {
        self.model.nodes[i].outputs.iter().all(|o| o.is_empty() || self.consts.contains(o))
    }
    /// The nodes reading `v`.
    pub fn consumers(&self, v: &str) -> &[usize] {
        self.consumers.get(v).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The initializer a constant comes from, through casts, reshapes and broadcasts.
    pub fn const_origin(&self, v: &str) -> Option<String> {
        let mut v = v.to_string();
        for _ in 0..8 {
            if self.model.inits.contains_key(&v) {
                return Some(v);
            }
            let n = &self.model.nodes[*self.producer.get(&v)?];
            if n.op == "Constant" {
                return Some(n.name.clone()).filter(|s| lower::meaningful(s));
            }
            if !ops::lookup(&n.op).is_some_and(|d| d.keeps_values) {
                return None;
            }
            v = n.inputs.first()?.clone();
        }
        None
    }

    /// The initializer whose transpose `v` is (`Transpose(W)`, as PyTorch's exporter writes a
    /// linear layer over tokens when it does not fold constants): a linear layer's weight then
    /// has W's layout, and keeps W's name.
    pub fn transposed_origin(&self, v: &str) -> Option<String> {
        let n = &self.model.nodes[*self.producer.get(v)?];
        if n.op != "Transpose" || !matches!(n.ints("perm"), None | Some([1, 0])) {
            return None;
        }
        self.const_origin(n.inputs.first()?)
    }

    /// A constant made of rows of a table: `Gather(table, ids)` with constant ids, possibly
    /// broadcast; returns the table and the row of each position (batch 0).
    pub fn table_rows(&self, v: &str) -> Option<(String, Vec<i64>)> {
        let mut v = v.to_string();
        for _ in 0..8 {
            let n = &self.model.nodes[*self.producer.get(&v)?];
            match n.op.as_str() {
                "Gather" if n.int("axis", 0) == 0 => {
                    let table = self.const_origin(&n.inputs[0])?;
                    let ids = &self.values[&n.inputs[1]];
                    if ids.dim() == 0 {
                        return Some((table, vec![ids.int64_value(&[])]));
                    }
                    let last = *ids.size().last()?;
                    let rows = eval::int_list(&ids.f_reshape([-1, last]).ok()?.f_select(0, 0).ok()?).ok()?;
                    return Some((table, rows));
                }
                // The first rows of a table: Slice(table, 0, T) on axis 0 (relprune's own export).
                "Slice" if self.model.inits.contains_key(&n.inputs[0]) => {
                    let starts = eval::int_list(self.values.get(n.inputs.get(1)?)?).ok()?;
                    let axes = match n.inputs.get(3).filter(|a| !a.is_empty()) {
                        Some(a) => eval::int_list(self.values.get(a)?).ok()?,
                        None => vec![0],
                    };
                    let rows = self.values.get(&v)?.size()[0];
                    let table = n.inputs[0].clone();
                    return (axes == [0] && starts == [0]).then(|| (table, (0..rows).collect()));
                }
                "Cast" | "Identity" | "Expand" | "Unsqueeze" | "Reshape" => v = n.inputs.first()?.clone(),
                _ => return None,
            }
        }
        None
    }

    /// The non-constant nodes `v` is computed by, and the graph inputs it reads.
    pub fn upstream(&self, v: &str) -> (Vec<usize>, Vec<String>) {
        let inputs: HashSet<&str> = self.model.inputs.iter().map(|i| i.name.as_str()).collect();
        let mut seen = HashSet::new();
        let mut stack = vec![v.to_string()];
        let (mut nodes, mut sources) = (Vec::new(), Vec::new());
        while let Some(x) = stack.pop() {
            if !seen.insert(x.clone()) || self.is_const(&x) {
                continue;
            }
            if inputs.contains(x.as_str()) {
                sources.push(x);
            } else if let Some(&p) = self.producer.get(&x) {
                nodes.push(p);
                stack.extend(self.model.nodes[p].inputs.iter().filter(|s| !s.is_empty()).cloned());
            }
        }
        (nodes, sources)
    }

    /// The graph inputs `v` depends on.
    pub fn input_sources(&self, v: &str) -> Vec<String> {
        self.upstream(v).1
    }

    /// A relprune node name for ONNX node `n`: the PyTorch module path the exporter encoded in
    /// the node name (`/layer1/layer1.0/conv1/Conv` → `layer1.0.conv1`), else the node name.
    pub fn module_name(&self, n: &proto::ONode) -> String {
        if let Some(s) = &n.scope {
            return s.clone();
        }
        if n.name.starts_with('/') {
            let parts: Vec<&str> = n.name.split('/').filter(|p| !p.is_empty()).collect();
            // Each scope is either the full dotted path (`layer1.0` under `layer1`), a child
            // named after its parent's local name (`downsample.0` under `downsample`), or a
            // local name (`conv1`).
            let mut acc = String::new();
            let mut prev = "";
            for p in &parts[..parts.len().saturating_sub(1)] {
                if acc.is_empty() || p.starts_with(&format!("{acc}.")) {
                    acc = p.to_string();
                } else if let Some(rest) = p.strip_prefix(prev).and_then(|r| r.strip_prefix('.')) {
                    acc = format!("{acc}.{rest}");
                } else {
                    acc = format!("{acc}.{p}");
                }
                prev = p;
            }
            if !acc.is_empty() {
                return acc;
            }
        }
        n.name.replace(['/', ':'], ".").trim_matches('.').to_string()
    }
}

/// What an import recognised.
#[derive(Debug, Serialize)]
pub struct ImportReport {
    /// The file's producer.
    pub producer: String,
    /// Its default-domain opset.
    pub opset: i64,
    /// ONNX nodes in the file.
    pub onnx_nodes: usize,
    /// Nodes folded into constants (shape arithmetic, constant subgraphs).
    pub folded: usize,
    /// Nodes that only reshape or transpose (absorbed into views).
    pub layout: usize,
    /// Nodes no output depends on (dropped).
    pub dead: usize,
    /// Each fused pattern, one line each.
    pub fused: Vec<String>,
    /// Each relprune node: name, op and the ONNX node(s) it came from.
    pub mapped: Vec<(String, String, String)>,
    /// Largest relative difference between relprune's output and the file's on the example input.
    pub max_difference: f64,
    /// Wall-clock seconds the import took (reading, the example run, mapping and the check).
    pub seconds: f64,
}

/// An imported model.
pub struct Imported {
    /// The graph, with the file's weights.
    pub graph: Graph,
    /// What was recognised.
    pub report: ImportReport,
}

/// The input kinds and example values for the file's graph inputs.
fn example_inputs(model: &proto::OnnxModel) -> Result<Vec<(String, InputKind, Tensor)>> {
    let mut out = Vec::new();
    // A private seeded generator: importing never touches libtorch's global one.
    let mut rng = crate::util::rng(0);
    // Vocabulary size: the table the token ids index.
    let vocab = |name: &str| {
        model
            .nodes
            .iter()
            .find(|n| n.op == "Gather" && n.inputs.get(1).map(String::as_str) == Some(name))
            .and_then(|n| model.inits.get(&n.inputs[0]))
            .map(|t| t.size()[0])
    };
    for i in &model.inputs {
        let dims = &i.dims;
        let float = matches!(i.elem, 1 | 10 | 11 | 16);
        let what = match (float, dims.len()) {
            (true, 4) => {
                let (Some(c), Some(h), Some(w)) = (dims[1], dims[2], dims[3]) else {
                    let shown: Vec<String> =
                        dims.iter().map(|d| d.map(|v| v.to_string()).unwrap_or("?".into())).collect();
                    crate::bail!(
                        "input `{}` has shape ({}): its channels, height or width are dynamic; export with a fixed \
                         image size (only the batch axis may be dynamic)",
                        i.name,
                        shown.join(", ")
                    );
                };
                // The declared size is the file's: bounded before the example is allocated.
                let per_sample = c.checked_mul(h).and_then(|v| v.checked_mul(w));
                if c < 1 || h < 1 || w < 1 || per_sample.is_none_or(|n| n > crate::graph::MAX_INPUT_ELEMENTS) {
                    crate::bail!(
                        "input `{}` declares images of {c}×{h}×{w}, more than the limit of {} values per sample \
                         (or not positive); export with the image size the model is used at",
                        i.name,
                        crate::graph::MAX_INPUT_ELEMENTS
                    );
                }
                let x = crate::graph::init::normal(&mut rng, &[EXAMPLE_BATCH, c, h, w], 1.0);
                (InputKind::Image { channels: c, height: h, width: w }, x)
            }
            (false, 2) if matches!(i.elem, 6 | 7) => {
                let t = dims[1].unwrap_or(EXAMPLE_TOKENS);
                let max_len = dims[1].unwrap_or(512);
                if !(1..=crate::graph::MAX_SPATIAL).contains(&t) {
                    crate::bail!(
                        "input `{}` declares {t} tokens per sample; give 1 to {} (or leave the axis dynamic)",
                        i.name,
                        crate::graph::MAX_SPATIAL
                    );
                }
                // Token ids index an embedding table; another int input is the attention mask.
                let indexes_a_table = vocab(&i.name).is_some();
                if i.name.to_lowercase().contains("mask") || !indexes_a_table {
                    let m = Tensor::f_ones([EXAMPLE_BATCH, t], (Kind::Int64, crate::device::HOST))?;
                    // The last sample is padded over its last quarter.
                    let pad = (t / 4).max(1).min(t - 1);
                    let _ = m.f_select(0, EXAMPLE_BATCH - 1)?.f_narrow(0, t - pad, pad)?.f_fill_(0)?;
                    (InputKind::AttentionMask { max_len }, m)
                } else if i.name.to_lowercase().contains("type") {
                    crate::bail!("input `{}`: token type ids are not supported; export with single-segment input (no token_type_ids)", i.name);
                } else {
                    let v = vocab(&i.name).unwrap_or(2).max(2);
                    use rand::RngExt;
                    let ids: Vec<i64> = (0..EXAMPLE_BATCH * t).map(|_| rng.random_range(1..v)).collect();
                    let ids = Tensor::from_slice(&ids).f_reshape([EXAMPLE_BATCH, t])?;
                    (InputKind::TokenIds { max_len }, ids)
                }
            }
            _ => crate::bail!(
                "input `{}` (element type {}, {} dimensions) is neither images (float, N×C×H×W) nor token ids / \
                 attention mask (int64, N×T)",
                i.name,
                i.elem,
                dims.len()
            ),
        };
        out.push((i.name.clone(), what.0, what.1));
    }
    if out.is_empty() {
        crate::bail!("the graph has no inputs");
    }
    Ok(out)
}

fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let scale = b.abs().max().double_value(&[]).max(1e-3);
    (a - b).abs().max().double_value(&[]) / scale
}

/// Imports an ONNX file.
pub fn import(path: &Path) -> Result<Imported> {
    let start = std::time::Instant::now();
    let model = proto::read(path)?;
    let ctx = |e: Error| Error::invalid(format!("{}: {e}", path.display()));
    if !proto::OPSETS.contains(&model.opset) {
        return Err(ctx(Error::invalid(format!(
            "opset {} is outside the supported {}..={}; export with torch.onnx.export(..., opset_version=17)",
            model.opset,
            proto::OPSETS.start(),
            proto::OPSETS.end()
        ))));
    }
    if model.outputs.len() != 1 {
        return Err(ctx(Error::invalid(format!(
            "the graph has {} outputs ({}); relprune prunes classifiers with one output (the logits): \
             export a wrapper that returns only the logits",
            model.outputs.len(),
            model.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ")
        ))));
    }
    if model.inits.is_empty() {
        return Err(ctx(Error::invalid(
            "the graph has no initializers (no weights); relprune needs weights stored in the file \
             (torch.onnx.export keeps them unless export_params=False)",
        )));
    }
    for n in &model.nodes {
        if !matches!(n.domain.as_str(), "" | "ai.onnx") {
            return Err(ctx(Error::invalid(format!(
                "{} is in the custom domain `{}`; relprune reads standard ONNX operators only",
                n.describe(),
                n.domain
            ))));
        }
    }
    check_single_assignment(&model).map_err(ctx)?;
    let examples = example_inputs(&model).map_err(ctx)?;
    let g = evaluate(model, &examples).map_err(ctx)?;
    let mut imported = build(&g, &examples).map_err(ctx)?;
    imported.report.seconds = start.elapsed().as_secs_f64();
    Ok(imported)
}

/// Every value is defined once (ONNX graphs are in single static assignment form, and
/// onnxruntime refuses others): no two nodes write one name, and no node overwrites a graph input
/// or an initializer. Otherwise the last definition would silently win.
fn check_single_assignment(model: &proto::OnnxModel) -> Result<()> {
    let mut defined: HashMap<&str, String> = HashMap::new();
    for v in model.inputs.iter().map(|i| i.name.as_str()) {
        defined.insert(v, "a graph input".into());
    }
    for v in model.inits.keys() {
        defined.entry(v.as_str()).or_insert_with(|| "an initializer".into());
    }
    for n in &model.nodes {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            if let Some(first) = defined.insert(o.as_str(), n.describe()) {
                crate::bail!(
                    "{} writes `{o}`, which {first} already defines; an ONNX graph defines each value once \
                     (re-export the model, or rename one of the outputs)",
                    n.describe()
                );
            }
        }
    }
    Ok(())
}

/// ". why" for an operator relprune refuses knowingly, else nothing.
fn hint_suffix(op: &str) -> String {
    ops::hint(op).map(|h| format!(". {h}")).unwrap_or_default()
}

/// Runs the file on the example input, folding constants.
fn evaluate(model: proto::OnnxModel, examples: &[(String, InputKind, Tensor)]) -> Result<OnnxGraph> {
    let mut values: HashMap<String, Tensor> = HashMap::new();
    let mut consts: HashSet<String> = HashSet::new();
    for (k, t) in &model.inits {
        values.insert(k.clone(), t.shallow_clone());
        consts.insert(k.clone());
    }
    for (name, _, t) in examples {
        values.insert(name.clone(), t.shallow_clone());
    }
    let mut producer = HashMap::new();
    let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
    tch::no_grad(|| -> Result<()> {
        for (i, n) in model.nodes.iter().enumerate() {
            let mut xs = Vec::with_capacity(n.inputs.len());
            for v in &n.inputs {
                if v.is_empty() {
                    xs.push(None);
                    continue;
                }
                let t = values.get(v).ok_or_else(|| {
                    Error::invalid(format!("{}: input `{v}` is produced by no earlier node (the graph is not in topological order or is truncated)", n.describe()))
                })?;
                xs.push(Some(t));
                consumers.entry(v.clone()).or_default().push(i);
            }
            let def = ops::def(n).map_err(|e| Error::invalid(format!("{}: {e}", n.describe())))?;
            ops::check(def, n)?;
            let outs = (def.eval)(&ops::Args::new(n, &xs))
                .map_err(|e| Error::invalid(format!("{}: {e}{}", n.describe(), hint_suffix(&n.op))))?;
            // Shape needs only its input's shape; everything else is constant if its inputs are.
            let constant = def.shape_only || n.inputs.iter().all(|v| v.is_empty() || consts.contains(v));
            for (o, t) in n.outputs.iter().zip(outs) {
                if o.is_empty() {
                    continue;
                }
                if constant {
                    consts.insert(o.clone());
                }
                producer.insert(o.clone(), i);
                values.insert(o.clone(), t);
            }
        }
        Ok(())
    })?;
    Ok(OnnxGraph { model, values, consts, producer, consumers, batch: EXAMPLE_BATCH })
}

/// Nodes the output needs, over fused units.
fn live_nodes(g: &OnnxGraph, output: &str, unit_of: &HashMap<usize, usize>, units: &[fuse::Unit]) -> HashSet<usize> {
    let mut live = HashSet::new();
    let mut stack = vec![output.to_string()];
    let mut seen = HashSet::new();
    while let Some(v) = stack.pop() {
        if !seen.insert(v.clone()) || g.is_const(&v) {
            continue;
        }
        let Some(&p) = g.producer.get(&v) else { continue };
        match unit_of.get(&p) {
            Some(&u) => {
                let unit = &units[u];
                live.extend(unit.nodes.iter().copied());
                match &unit.kind {
                    // The mask is read from the attention-mask input itself, not from the
                    // file's additive-mask arithmetic.
                    fuse::Fused::Attention { projections, .. } => stack.extend(projections.iter().cloned()),
                    _ => stack.push(unit.input.clone()),
                }
            }
            None => {
                live.insert(p);
                stack.extend(g.model.nodes[p].inputs.iter().filter(|s| !s.is_empty()).cloned());
            }
        }
    }
    live
}

fn build(g: &OnnxGraph, examples: &[(String, InputKind, Tensor)]) -> Result<Imported> {
    let units = fuse::find(g)?;
    let mut unit_of = HashMap::new();
    let mut unit_at = HashMap::new();
    for (k, u) in units.iter().enumerate() {
        for &i in &u.nodes {
            unit_of.insert(i, k);
        }
        unit_at.insert(g.producer[&u.output], k);
    }
    let output = g.model.outputs[0].name.clone();
    if g.is_const(&output) {
        crate::bail!("the graph output does not depend on the input");
    }
    let live = live_nodes(g, &output, &unit_of, &units);
    let mut lower = lower::Lower::new(g);
    lower.inputs(&examples.iter().map(|(n, k, _)| (n.clone(), k.clone())).collect::<Vec<_>>());
    let (mut layout, mut dead) = (0, 0);
    for i in 0..g.model.nodes.len() {
        if g.is_folded(i) {
            continue;
        }
        if !live.contains(&i) {
            dead += 1;
            continue;
        }
        match unit_of.get(&i) {
            Some(_) => {
                if let Some(&u) = unit_at.get(&i) {
                    lower.unit(&units[u])?;
                }
            }
            None => {
                // Integer arithmetic on token ids (positions, masks) is read by the op that
                // consumes it (a position table), not mapped on its own.
                let n = &g.model.nodes[i];
                let integer =
                    n.outputs.iter().all(|o| o.is_empty() || g.values.get(o).is_some_and(|t| !t.is_floating_point()));
                if integer && n.op != "Gather" {
                    continue;
                }
                if ops::lookup(&n.op).is_some_and(|d| d.layout) {
                    layout += 1;
                }
                lower.node(i)?;
            }
        }
    }
    let out = lower.output(&output)?;
    // Token inputs accept as many tokens as the position table holds.
    let max_len = lower.nodes.iter().find_map(|n| n.op.kind().max_tokens());
    for &i in &lower.inputs {
        if let Some(InputKind::TokenIds { max_len: m } | InputKind::AttentionMask { max_len: m }) =
            lower.nodes[i].op.kind_mut().input_kind_mut()
        {
            if let Some(l) = max_len {
                *m = l;
            }
        }
    }
    let from = lower.from.clone();
    let checked = std::mem::take(&mut lower.checked);
    let bindings: Vec<(String, usize, Option<Tensor>)> = checked
        .iter()
        .filter_map(|v| lower.env.get(v).map(|b| (v.clone(), b.id, b.view.as_ref().map(|t| t.shallow_clone()))))
        .collect();
    let spec = GraphSpec {
        format: GRAPH_FORMAT,
        nodes: lower.nodes,
        inputs: lower.inputs,
        output: out,
        ignored_keys: Vec::new(),
    };
    let graph = Graph::new(spec, lower.params)?;
    // Check every mapped value against the file's.
    let xs: Vec<Tensor> = examples.iter().map(|(_, _, t)| t.shallow_clone()).collect();
    let ours = tch::no_grad(|| graph.forward_all(&xs, Mode::Eval))?;
    for (v, id, view) in &bindings {
        let mine = match view {
            Some(ix) => view::from_canonical(&ours[*id], ix)?,
            None => ours[*id].shallow_clone(),
        };
        let theirs = &g.values[v];
        if mine.size() != theirs.size() || rel_diff(&mine, &theirs.to_kind(mine.kind())) > TOLERANCE {
            let n = graph.node(*id);
            crate::bail!(
                "the imported layer `{}` ({}, from ONNX node `{}`) does not reproduce the file's value `{v}` \
                 (shape {:?} vs {:?}); this is a defect in relprune's importer for this pattern — please report it with the file",
                n.name,
                n.op.kind_name(),
                from[*id],
                mine.size(),
                theirs.size()
            );
        }
    }
    let max_difference = rel_diff(&ours[graph.output()], &g.values[&output]);
    let report = ImportReport {
        producer: g.model.producer.clone(),
        opset: g.model.opset,
        onnx_nodes: g.model.nodes.len(),
        folded: (0..g.model.nodes.len()).filter(|&i| g.is_folded(i)).count(),
        layout,
        dead,
        fused: units
            .iter()
            .filter(|u| live.contains(u.nodes.iter().next().expect("non-empty")))
            .map(|u| u.describe(g))
            .collect(),
        mapped: graph
            .nodes()
            .iter()
            .zip(&from)
            .map(|(n, f)| (n.name.clone(), n.op.kind_name().to_string(), f.clone()))
            .collect(),
        max_difference,
        seconds: 0.0,
    };
    Ok(Imported { graph, report })
}
