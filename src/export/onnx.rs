//! ONNX export (opset 17): every node kind maps to standard ONNX operators, so onnxruntime and
//! other runtimes load relprune's (pruned) graphs. Batch and sequence length are dynamic. The
//! model is built with the protobuf types generated from the official `onnx.proto` (the ones
//! the importer decodes) and encoded by prost.

use crate::error::{Error, Result};
use crate::graph::ops::{Attr, OnnxContext, FLOAT, INT64};
use crate::graph::{output_ranks, stats, Graph, Mode, NodeId, Role};
use crate::import::proto::pb;
use pb::attribute_proto::AttributeType;
use pb::tensor_proto::DataType;
use pb::tensor_shape_proto::{dimension, Dimension};
use prost::Message;
use tch::{Kind, Tensor};

/// Builds the ONNX graph node by node.
pub(crate) struct Builder {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    counter: usize,
}

impl Builder {
    fn fresh(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{base}/{}", self.counter)
    }

    fn node<S: AsRef<str>>(&mut self, op: &str, inputs: &[S], output: &str, attrs: &[(&str, Attr)]) -> String {
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|i| i.as_ref().to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(output.to_string()),
            op_type: Some(op.to_string()),
            attribute: attrs.iter().map(|(name, a)| attribute(name, a)).collect(),
            ..Default::default()
        });
        output.to_string()
    }

    fn tensor(&mut self, name: &str, t: &Tensor) -> Result<String> {
        let t = t.f_contiguous()?;
        let (dtype, bytes) = match t.kind() {
            Kind::Int64 => (
                DataType::Int64,
                Vec::<i64>::try_from(t.f_flatten(0, -1)?)?.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
            ),
            _ => (
                DataType::Float,
                Vec::<f32>::try_from(t.f_to_kind(Kind::Float)?.f_flatten(0, -1)?)?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
        };
        self.inits.push(pb::TensorProto {
            dims: t.size(),
            data_type: Some(dtype as i32),
            name: Some(name.to_string()),
            raw_data: Some(bytes),
            ..Default::default()
        });
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

fn attribute(name: &str, a: &Attr) -> pb::AttributeProto {
    let mut p = pb::AttributeProto { name: Some(name.to_string()), ..Default::default() };
    match a {
        Attr::Int(v) => (p.i, p.r#type) = (Some(*v), Some(AttributeType::Int as i32)),
        Attr::Ints(v) => (p.ints, p.r#type) = (v.to_vec(), Some(AttributeType::Ints as i32)),
        Attr::Float(v) => (p.f, p.r#type) = (Some(*v), Some(AttributeType::Float as i32)),
        Attr::Str(v) => (p.s, p.r#type) = (Some(v.as_bytes().to_vec()), Some(AttributeType::String as i32)),
    }
    p
}

/// A tensor value's declaration: element type and dimensions (a symbol where dynamic).
fn value_info(name: &str, elem: i64, dims: &[Result<i64, &str>]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Ok(v) => dimension::Value::DimValue(*v),
                Err(p) => dimension::Value::DimParam(p.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = pb::type_proto::Tensor { elem_type: Some(elem as i32), shape: Some(pb::TensorShapeProto { dim }) };
    pb::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(pb::TypeProto { value: Some(pb::type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
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
    graph_inputs: &'a mut Vec<pb::ValueInfoProto>,
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
    let out_rank = ranks[graph.output()];
    let dims: Vec<Result<i64, &str>> = (0..out_rank).map(|i| if i == 0 { Err("batch") } else { Err("d") }).collect();
    let g = pb::GraphProto {
        node: b.nodes,
        name: Some("relprune".into()),
        initializer: b.inits,
        input: inputs,
        output: vec![value_info(&name[graph.output()], FLOAT, &dims)],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: Some(8),
        producer_name: Some("relprune".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(g),
        opset_import: vec![pb::OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}
