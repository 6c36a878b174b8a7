//! ONNX export (opset 17): every node kind maps to standard ONNX operators, so onnxruntime and
//! other runtimes load relprune's (pruned) graphs. Batch and sequence length are dynamic.

use super::protobuf::Msg;
use crate::components::output_ranks;
use crate::error::{Error, Result};
use crate::graph::{stats, Graph, InputKind, Mode, Op};
use tch::{Kind, Tensor};

const FLOAT: i64 = 1;
const INT64: i64 = 7;

/// Builds the ONNX graph node by node.
struct Builder {
    nodes: Vec<Msg>,
    inits: Vec<Msg>,
    counter: usize,
}

enum Attr<'a> {
    Int(i64),
    Ints(&'a [i64]),
    Float(f32),
}

impl Builder {
    fn fresh(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{base}/{}", self.counter)
    }

    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attrs: &[(&str, Attr)]) -> String {
        let mut n = Msg::default();
        for i in inputs {
            n.str(1, i);
        }
        n.str(2, output).str(3, output).str(4, op);
        for (name, a) in attrs {
            let mut m = Msg::default();
            m.str(1, name);
            match a {
                Attr::Int(v) => m.int(3, *v).int(20, 2),
                Attr::Ints(v) => m.ints(8, v).int(20, 7),
                Attr::Float(v) => m.float(2, *v).int(20, 1),
            };
            n.msg(5, &m);
        }
        self.nodes.push(n);
        output.to_string()
    }

    /// A step with a generated output name.
    fn op(&mut self, op: &str, inputs: &[&str], base: &str, attrs: &[(&str, Attr)]) -> String {
        let out = self.fresh(base);
        self.node(op, inputs, &out, attrs)
    }

    fn tensor(&mut self, name: &str, t: &Tensor) -> Result<String> {
        let t = t.f_contiguous()?;
        let (dtype, bytes) = match t.kind() {
            Kind::Int64 => (
                INT64,
                Vec::<i64>::try_from(t.f_flatten(0, -1)?)?.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
            ),
            _ => (
                FLOAT,
                Vec::<f32>::try_from(t.f_to_kind(Kind::Float)?.f_flatten(0, -1)?)?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
        };
        let mut m = Msg::default();
        m.ints(1, &t.size()).int(2, dtype).str(8, name).bytes(9, &bytes);
        self.inits.push(m);
        Ok(name.to_string())
    }

    fn ints(&mut self, name: &str, v: &[i64]) -> Result<String> {
        let n = self.fresh(name);
        self.tensor(&n, &Tensor::from_slice(v))
    }

    fn scalar(&mut self, name: &str, v: f32) -> Result<String> {
        let n = self.fresh(name);
        self.tensor(&n, &Tensor::from(v))
    }
}

fn value_info(name: &str, elem: i64, dims: &[Result<i64, &str>]) -> Msg {
    let mut shape = Msg::default();
    for d in dims {
        let mut dm = Msg::default();
        match d {
            Ok(v) => dm.int(1, *v),
            Err(p) => dm.str(2, p),
        };
        shape.msg(1, &dm);
    }
    let mut tt = Msg::default();
    tt.int(1, elem).msg(2, &shape);
    let mut ty = Msg::default();
    ty.msg(1, &tt);
    let mut vi = Msg::default();
    vi.str(1, name).msg(2, &ty);
    vi
}

/// Writes `graph` as an ONNX model (atomically).
pub fn export(graph: &Graph, path: &std::path::Path) -> Result<()> {
    let bytes = to_bytes(graph)?;
    crate::util::write_atomic(path, &bytes)
}

/// The ONNX model's bytes.
pub fn to_bytes(graph: &Graph) -> Result<Vec<u8>> {
    let ranks = output_ranks(graph);
    let shapes: Vec<Vec<i64>> = tch::no_grad(|| graph.forward_all(&stats::example_inputs(graph, 8), Mode::Eval))?
        .iter()
        .map(|t| t.size())
        .collect();
    let mut b = Builder { nodes: Vec::new(), inits: Vec::new(), counter: 0 };
    let mut name: Vec<String> = Vec::with_capacity(graph.nodes().len());
    let mut mask_input: Option<String> = None;
    let mut inputs = Vec::new();
    for (id, node) in graph.nodes().iter().enumerate() {
        let x = node.inputs.first().map(|&i| name[i].clone()).unwrap_or_default();
        let out = node.name.clone();
        let p = |role: &str| graph.require_param(id, role);
        let pname = |role: &str| format!("param:{}", node.params.get(role).cloned().unwrap_or_default());
        let unsupported = |why: &str| {
            Error::invalid(format!("cannot export `{}` ({}) to ONNX: {why}", node.name, node.op.kind_name()))
        };
        let made = match &node.op {
            Op::Input(kind) => {
                let vi = match kind {
                    InputKind::Image { channels, height, width } => {
                        value_info(&out, FLOAT, &[Err("batch"), Ok(*channels), Ok(*height), Ok(*width)])
                    }
                    InputKind::TokenIds { .. } => value_info(&out, INT64, &[Err("batch"), Err("sequence")]),
                    InputKind::AttentionMask { .. } => {
                        mask_input = Some(out.clone());
                        value_info(&out, INT64, &[Err("batch"), Err("sequence")])
                    }
                };
                inputs.push(vi);
                out
            }
            Op::Conv2d(c) => {
                let w = b.tensor(&pname("weight"), p("weight")?)?;
                let mut ins = vec![x.clone(), w];
                if c.bias {
                    ins.push(b.tensor(&pname("bias"), p("bias")?)?);
                }
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                let pads = [c.padding[0], c.padding[1], c.padding[0], c.padding[1]];
                b.node(
                    "Conv",
                    &ins,
                    &out,
                    &[
                        ("kernel_shape", Attr::Ints(&c.kernel)),
                        ("strides", Attr::Ints(&c.stride)),
                        ("pads", Attr::Ints(&pads)),
                        ("dilations", Attr::Ints(&c.dilation)),
                        ("group", Attr::Int(c.groups)),
                    ],
                )
            }
            Op::BatchNorm2d { eps, .. } => {
                let names: Vec<String> = ["weight", "bias", "running_mean", "running_var"]
                    .iter()
                    .map(|r| b.tensor(&pname(r), p(r)?))
                    .collect::<Result<_>>()?;
                b.node(
                    "BatchNormalization",
                    &[&x, &names[0], &names[1], &names[2], &names[3]],
                    &out,
                    &[("epsilon", Attr::Float(*eps as f32))],
                )
            }
            Op::Relu => b.node("Relu", &[&x], &out, &[]),
            Op::Tanh => b.node("Tanh", &[&x], &out, &[]),
            Op::Dropout { .. } => b.node("Identity", &[&x], &out, &[]),
            Op::Gelu { tanh: false } => {
                let r2 = b.scalar("sqrt2", std::f32::consts::SQRT_2)?;
                let half = b.scalar("half", 0.5)?;
                let one = b.scalar("one", 1.0)?;
                let d = b.op("Div", &[&x, &r2], &out, &[]);
                let e = b.op("Erf", &[&d], &out, &[]);
                let a = b.op("Add", &[&e, &one], &out, &[]);
                let m = b.op("Mul", &[&x, &a], &out, &[]);
                b.node("Mul", &[&m, &half], &out, &[])
            }
            Op::Gelu { tanh: true } => {
                let c = b.scalar("c", (2.0f32 / std::f32::consts::PI).sqrt())?;
                let k = b.scalar("k", 0.044715)?;
                let (half, one) = (b.scalar("half", 0.5)?, b.scalar("one", 1.0)?);
                let x3 = b.op("Mul", &[&x, &x], &out, &[]);
                let x3 = b.op("Mul", &[&x3, &x], &out, &[]);
                let kx3 = b.op("Mul", &[&x3, &k], &out, &[]);
                let inner = b.op("Add", &[&x, &kx3], &out, &[]);
                let inner = b.op("Mul", &[&inner, &c], &out, &[]);
                let t = b.op("Tanh", &[&inner], &out, &[]);
                let t = b.op("Add", &[&t, &one], &out, &[]);
                let m = b.op("Mul", &[&x, &t], &out, &[]);
                b.node("Mul", &[&m, &half], &out, &[])
            }
            Op::MaxPool2d { kernel, stride, padding, ceil_mode } => {
                let pads = [padding[0], padding[1], padding[0], padding[1]];
                b.node(
                    "MaxPool",
                    &[&x],
                    &out,
                    &[
                        ("kernel_shape", Attr::Ints(kernel)),
                        ("strides", Attr::Ints(stride)),
                        ("pads", Attr::Ints(&pads)),
                        ("ceil_mode", Attr::Int(*ceil_mode as i64)),
                    ],
                )
            }
            Op::AvgPool2d { kernel, stride, padding } => {
                let pads = [padding[0], padding[1], padding[0], padding[1]];
                b.node(
                    "AveragePool",
                    &[&x],
                    &out,
                    &[
                        ("kernel_shape", Attr::Ints(kernel)),
                        ("strides", Attr::Ints(stride)),
                        ("pads", Attr::Ints(&pads)),
                        ("count_include_pad", Attr::Int(1)),
                    ],
                )
            }
            Op::AdaptiveAvgPool2d { output } => {
                let s = &shapes[node.inputs[0]];
                if output == &[1, 1] {
                    b.node("GlobalAveragePool", &[&x], &out, &[])
                } else if s[2] % output[0] == 0 && s[3] % output[1] == 0 {
                    let k = [s[2] / output[0], s[3] / output[1]];
                    b.node("AveragePool", &[&x], &out, &[("kernel_shape", Attr::Ints(&k)), ("strides", Attr::Ints(&k))])
                } else {
                    return Err(unsupported("adaptive pooling to a size that does not divide the input"));
                }
            }
            Op::Flatten { start_dim } => b.node("Flatten", &[&x], &out, &[("axis", Attr::Int(*start_dim))]),
            Op::Add => {
                let ins: Vec<&str> = node.inputs.iter().map(|&i| name[i].as_str()).collect();
                b.node("Sum", &ins, &out, &[])
            }
            Op::Linear { bias, .. } => {
                let w = p("weight")?;
                if ranks[node.inputs[0]] == 2 {
                    let wn = b.tensor(&pname("weight"), w)?;
                    let mut ins = vec![x.clone(), wn];
                    if *bias {
                        ins.push(b.tensor(&pname("bias"), p("bias")?)?);
                    }
                    let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                    b.node("Gemm", &ins, &out, &[("transB", Attr::Int(1))])
                } else {
                    let wt = b.tensor(&format!("{}:T", pname("weight")), &w.f_transpose(0, 1)?)?;
                    if *bias {
                        let m = b.op("MatMul", &[&x, &wt], &out, &[]);
                        let bn = b.tensor(&pname("bias"), p("bias")?)?;
                        b.node("Add", &[&m, &bn], &out, &[])
                    } else {
                        b.node("MatMul", &[&x, &wt], &out, &[])
                    }
                }
            }
            Op::LayerNorm { eps, .. } => {
                let (w, bb) = (b.tensor(&pname("weight"), p("weight")?)?, b.tensor(&pname("bias"), p("bias")?)?);
                b.node(
                    "LayerNormalization",
                    &[&x, &w, &bb],
                    &out,
                    &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(*eps as f32))],
                )
            }
            Op::Embedding { .. } => {
                let w = b.tensor(&pname("weight"), p("weight")?)?;
                b.node("Gather", &[&w, &x], &out, &[("axis", Attr::Int(0))])
            }
            Op::PositionEmbedding { leading_one, .. } => {
                let w = b.tensor(&pname("weight"), p("weight")?)?;
                if *leading_one {
                    let t = shapes[id][1];
                    let starts = b.ints("zero", &[0])?;
                    let ends = b.ints("t", &[t])?;
                    let axes = b.ints("axis1", &[1])?;
                    let s = b.op("Slice", &[&w, &starts, &ends, &axes], &out, &[]);
                    b.node("Add", &[&x, &s], &out, &[])
                } else {
                    let shape = b.op("Shape", &[&x], &out, &[]);
                    let one = b.ints("one", &[1])?;
                    let t = b.op("Gather", &[&shape, &one], &out, &[("axis", Attr::Int(0))]);
                    let zero = b.ints("zero", &[0])?;
                    let s = b.op("Slice", &[&w, &zero, &t, &zero], &out, &[]);
                    b.node("Add", &[&x, &s], &out, &[])
                }
            }
            Op::SegmentEmbedding { .. } => {
                let row = b.tensor(&format!("{}:row0", pname("weight")), &p("weight")?.f_select(0, 0)?)?;
                b.node("Add", &[&x, &row], &out, &[])
            }
            Op::PatchesToTokens => {
                let c = shapes[node.inputs[0]][1];
                let shape = b.ints("shape", &[0, c, -1])?;
                let r = b.op("Reshape", &[&x, &shape], &out, &[]);
                b.node("Transpose", &[&r], &out, &[("perm", Attr::Ints(&[0, 2, 1]))])
            }
            Op::ClassToken { dim } => {
                let tok = b.tensor(&pname("weight"), p("weight")?)?;
                let shape = b.op("Shape", &[&x], &out, &[]);
                let zero = b.ints("zero", &[0])?;
                let batch = b.op("Gather", &[&shape, &zero], &out, &[("axis", Attr::Int(0))]);
                let rest = b.ints("rest", &[1, *dim])?;
                let target = b.op("Concat", &[&batch, &rest], &out, &[("axis", Attr::Int(0))]);
                let e = b.op("Expand", &[&tok, &target], &out, &[]);
                b.node("Concat", &[&e, &x], &out, &[("axis", Attr::Int(1))])
            }
            Op::SelectToken { index } => {
                let i = b.fresh("index");
                let i = b.tensor(&i, &Tensor::from(*index))?;
                b.node("Gather", &[&x, &i], &out, &[("axis", Attr::Int(1))])
            }
            Op::MeanPool => match node.inputs.get(1) {
                None => b.node("ReduceMean", &[&x], &out, &[("axes", Attr::Ints(&[1])), ("keepdims", Attr::Int(0))]),
                Some(&m) => {
                    let mf = b.op("Cast", &[&name[m]], &out, &[("to", Attr::Int(FLOAT))]);
                    let last = b.ints("axis", &[-1])?;
                    let mu = b.op("Unsqueeze", &[&mf, &last], &out, &[]);
                    let xm = b.op("Mul", &[&x, &mu], &out, &[]);
                    let one = b.ints("axis", &[1])?;
                    let num = b.op("ReduceSum", &[&xm, &one], &out, &[("keepdims", Attr::Int(0))]);
                    let den = b.op("ReduceSum", &[&mu, &one], &out, &[("keepdims", Attr::Int(0))]);
                    let tiny = b.scalar("tiny", 1e-9)?;
                    let den = b.op("Max", &[&den, &tiny], &out, &[]);
                    b.node("Div", &[&num, &den], &out, &[])
                }
            },
            Op::Attention { heads, head_dim, packed } => {
                if *heads == 0 {
                    // No heads left: the context is empty, [batch, tokens, 0], as in relprune's
                    // forward; the output projection after it then only adds its bias.
                    let zero = b.ints("zero", &[0])?;
                    let axis = b.ints("axis", &[2])?;
                    let made = b.node("Slice", &[&x, &zero, &zero, &axis], &out, &[]);
                    name.push(made);
                    continue;
                }
                let w = heads * head_dim;
                let (q, k, v) = if *packed {
                    let axis = b.ints("axis", &[2])?;
                    let mut part = |i: i64| -> Result<String> {
                        let s = b.ints("start", &[i * w])?;
                        let e = b.ints("end", &[(i + 1) * w])?;
                        Ok(b.op("Slice", &[&x, &s, &e, &axis], &out, &[]))
                    };
                    (part(0)?, part(1)?, part(2)?)
                } else {
                    (name[node.inputs[0]].clone(), name[node.inputs[1]].clone(), name[node.inputs[2]].clone())
                };
                let split = b.ints("heads", &[0, 0, *heads, *head_dim])?;
                let mut heads_of = |t: &str, perm: &[i64]| {
                    let r = b.op("Reshape", &[t, &split], &out, &[]);
                    b.op("Transpose", &[&r], &out, &[("perm", Attr::Ints(perm))])
                };
                let qh = heads_of(&q, &[0, 2, 1, 3]);
                let kt = heads_of(&k, &[0, 2, 3, 1]);
                let vh = heads_of(&v, &[0, 2, 1, 3]);
                let scores = b.op("MatMul", &[&qh, &kt], &out, &[]);
                let scale = b.scalar("scale", (*head_dim as f32).sqrt())?;
                let mut scores = b.op("Div", &[&scores, &scale], &out, &[]);
                let mask = node.inputs.get(if *packed { 1 } else { 3 }).map(|&m| name[m].clone());
                if let Some(m) = mask {
                    let mf = b.op("Cast", &[&m], &out, &[("to", Attr::Int(FLOAT))]);
                    let one = b.scalar("one", 1.0)?;
                    let inv = b.op("Sub", &[&one, &mf], &out, &[]);
                    let big = b.scalar("mask_bias", -3.402_823_5e38)?;
                    let bias = b.op("Mul", &[&inv, &big], &out, &[]);
                    let axes = b.ints("axes", &[1, 2])?;
                    let bias = b.op("Unsqueeze", &[&bias, &axes], &out, &[]);
                    scores = b.op("Add", &[&scores, &bias], &out, &[]);
                }
                let probs = b.op("Softmax", &[&scores], &out, &[("axis", Attr::Int(-1))]);
                let ctx = b.op("MatMul", &[&probs, &vh], &out, &[]);
                let ctx = b.op("Transpose", &[&ctx], &out, &[("perm", Attr::Ints(&[0, 2, 1, 3]))]);
                let merge = b.ints("merge", &[0, 0, w])?;
                b.node("Reshape", &[&ctx, &merge], &out, &[])
            }
        };
        name.push(made);
    }
    let _ = mask_input;
    let mut g = Msg::default();
    for n in &b.nodes {
        g.msg(1, n);
    }
    g.str(2, "relprune");
    for i in &b.inits {
        g.msg(5, i);
    }
    for i in &inputs {
        g.msg(11, i);
    }
    let out_rank = ranks[graph.output()];
    let dims: Vec<Result<i64, &str>> = (0..out_rank).map(|i| if i == 0 { Err("batch") } else { Err("d") }).collect();
    g.msg(12, &value_info(&name[graph.output()], FLOAT, &dims));
    let mut opset = Msg::default();
    opset.str(1, "").int(2, 17);
    let mut model = Msg::default();
    model.int(1, 8).str(2, "relprune").str(3, env!("CARGO_PKG_VERSION")).msg(7, &g).msg(8, &opset);
    Ok(model.0)
}
