//! ONNX export (opset 17): every node kind maps to standard ONNX operators, so onnxruntime and
//! other runtimes load relprune's (pruned) graphs. Batch and sequence length are dynamic.

use super::protobuf::Msg;
use crate::error::{Error, Result};
use crate::graph::ops::{Attr, OnnxContext, FLOAT, INT64};
use crate::graph::{output_ranks, stats, Graph, Mode, NodeId, Role};
use tch::{Kind, Tensor};

/// Builds the ONNX graph node by node.
pub(crate) struct Builder {
    nodes: Vec<Msg>,
    inits: Vec<Msg>,
    counter: usize,
}

impl Builder {
    fn fresh(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{base}/{}", self.counter)
    }

    fn node<S: AsRef<str>>(&mut self, op: &str, inputs: &[S], output: &str, attrs: &[(&str, Attr)]) -> String {
        let mut n = Msg::default();
        for i in inputs {
            n.str(1, i.as_ref());
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

/// What an op's export sees ([`OnnxContext`]): its inputs' value names and shapes, its
/// parameters, and the builder the nodes go to.
pub struct OnnxCx<'a> {
    b: &'a mut Builder,
    graph: &'a Graph,
    id: NodeId,
    inputs: Vec<String>,
    in_shapes: Vec<Vec<i64>>,
    out_shape: Vec<i64>,
    graph_inputs: &'a mut Vec<Msg>,
}

impl<'a> OnnxCx<'a> {
    fn out_name(&self) -> &'a str {
        &self.graph.node(self.id).name
    }
}

impl OnnxContext for OnnxCx<'_> {
    fn x(&self, i: usize) -> String {
        self.inputs[i].clone()
    }
    fn arity(&self) -> usize {
        self.inputs.len()
    }
    fn in_shape(&self, i: usize) -> &[i64] {
        &self.in_shapes[i]
    }
    fn out_shape(&self) -> &[i64] {
        &self.out_shape
    }
    /// `param:<store key>`.
    fn param_name(&self, role: Role) -> String {
        format!("param:{}", self.graph.node(self.id).params.get(&role).cloned().unwrap_or_default())
    }
    fn weight(&self, role: Role) -> Result<&Tensor> {
        self.graph.require_param(self.id, role)
    }
    fn param(&mut self, role: Role) -> Result<String> {
        let name = self.param_name(role);
        let t = self.graph.require_param(self.id, role)?;
        self.b.tensor(&name, t)
    }
    fn tensor(&mut self, name: &str, t: &Tensor) -> Result<String> {
        self.b.tensor(name, t)
    }
    fn ints(&mut self, base: &str, v: &[i64]) -> Result<String> {
        self.b.ints(base, v)
    }
    fn scalar(&mut self, base: &str, v: f32) -> Result<String> {
        self.b.scalar(base, v)
    }
    fn fresh(&mut self, base: &str) -> String {
        self.b.fresh(base)
    }
    fn add_step(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.b.fresh(self.out_name());
        self.b.node(op, inputs, &out, attrs)
    }
    fn add_output(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.out_name();
        self.b.node(op, inputs, out, attrs)
    }
    fn graph_input(&mut self, int64: bool, dims: &[std::result::Result<i64, &str>]) -> Result<String> {
        let name = self.out_name().to_string();
        self.graph_inputs.push(value_info(&name, if int64 { INT64 } else { FLOAT }, dims));
        Ok(name)
    }
    fn unsupported(&self, why: &str) -> Error {
        crate::graph::ops::unsupported(self.graph, self.id, "export to ONNX", why)
    }
}

/// The ONNX model's bytes.
pub fn to_bytes(graph: &Graph) -> Result<Vec<u8>> {
    // Ops' exports combine their parameters with constants made on the host: export the graph
    // on the host (shared, not copied, when it is there already).
    let graph = &graph.on_device(crate::device::HOST);
    let ranks = output_ranks(graph.spec());
    let shapes: Vec<Vec<i64>> = tch::no_grad(|| graph.forward_all(&stats::example_inputs(graph, 8), Mode::Eval))?
        .iter()
        .map(|t| t.size())
        .collect();
    let mut b = Builder { nodes: Vec::new(), inits: Vec::new(), counter: 0 };
    let mut name: Vec<String> = Vec::with_capacity(graph.nodes().len());
    let mut inputs = Vec::new();
    for (id, node) in graph.nodes().iter().enumerate() {
        let mut cx = OnnxCx {
            b: &mut b,
            graph,
            id,
            inputs: node.inputs.iter().map(|&i| name[i].clone()).collect(),
            in_shapes: node.inputs.iter().map(|&i| shapes[i].clone()).collect(),
            out_shape: shapes[id].clone(),
            graph_inputs: &mut inputs,
        };
        let made = node.op.kind().onnx(&mut cx)?;
        name.push(made);
    }
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
