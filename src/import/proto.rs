//! Reading an ONNX file into a plain in-memory form: nodes with decoded attributes and
//! initializers as tensors. The protobuf types are generated at build time from the official
//! `onnx.proto` (see `build.rs`).

use crate::error::{Error, Result};
use prost::Message;
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// The ONNX protobuf types, generated at build time from the official `onnx.proto` (the
/// exporter builds its models with them too).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

/// A node attribute, decoded.
#[derive(Debug)]
pub enum AttrValue {
    /// A float.
    Float(f32),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A tensor (e.g. `Constant`'s value).
    Tensor(Tensor),
    /// Floats.
    Floats(Vec<f32>),
    /// Integers.
    Ints(Vec<i64>),
    /// A kind this importer never reads (graphs, strings lists, …).
    Other,
}

/// One ONNX node.
#[derive(Debug)]
pub struct ONode {
    /// The node's name (may be empty in the file; then `<op_type>_<position>`).
    pub name: String,
    /// The operator, e.g. `Conv`.
    pub op: String,
    /// The operator's domain (`""` is the default ONNX domain).
    pub domain: String,
    /// Input value names (`""` for an omitted optional input).
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attrs: HashMap<String, AttrValue>,
    /// Position in the file's node list.
    pub position: usize,
    /// The PyTorch module path the dynamo exporter records (`pkg.torch.onnx.name_scopes`).
    pub scope: Option<String>,
}

impl ONode {
    /// An integer attribute, or `default`.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        match self.attrs.get(name) {
            Some(AttrValue::Int(v)) => *v,
            _ => default,
        }
    }
    /// A float attribute, or `default`.
    pub fn float(&self, name: &str, default: f32) -> f32 {
        match self.attrs.get(name) {
            Some(AttrValue::Float(v)) => *v,
            Some(AttrValue::Int(v)) => *v as f32,
            _ => default,
        }
    }
    /// An integer-list attribute, if present.
    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        match self.attrs.get(name) {
            Some(AttrValue::Ints(v)) => Some(v),
            _ => None,
        }
    }
    /// A string attribute, if present.
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.attrs.get(name) {
            Some(AttrValue::Str(v)) => Some(v),
            _ => None,
        }
    }
    /// `op_type` "name" at position N, for messages.
    pub fn describe(&self) -> String {
        format!("{} node `{}` (node {} of the file)", self.op, self.name, self.position)
    }
}

/// A graph input or output: name, element type and dimensions (None where symbolic).
#[derive(Clone, Debug)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// ONNX element type (1 float, 7 int64, …).
    pub elem: i32,
    /// Dimensions; None where the file gives a symbol (a dynamic axis) or nothing.
    pub dims: Vec<Option<i64>>,
}

/// An ONNX model, decoded.
pub struct OnnxModel {
    /// The producer, e.g. `pytorch 2.13.0`.
    pub producer: String,
    /// The default-domain opset.
    pub opset: i64,
    /// Nodes in file order.
    pub nodes: Vec<ONode>,
    /// Initializers by name.
    pub inits: HashMap<String, Tensor>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfo>,
}

/// The opsets this importer is tested on.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// The most bytes a protobuf message, so an ONNX file, may hold (2 GiB).
const MAX_PROTOBUF_BYTES: u64 = 1 << 31;

/// Reads and decodes `path` (and its external-data files).
pub fn read(path: &Path) -> Result<OnnxModel> {
    let bytes = crate::util::read_at_most(
        path,
        MAX_PROTOBUF_BYTES,
        "protobuf's limit; larger models keep their weights as external data",
    )?;
    let not_onnx = |why: String| {
        Error::invalid(format!(
            "{} is not a readable ONNX model ({why}); export one with torch.onnx.export(model, example, \"model.onnx\")",
            path.display()
        ))
    };
    let model = pb::ModelProto::decode(bytes.as_slice()).map_err(|e| not_onnx(format!("protobuf: {e}")))?;
    let graph = model.graph.as_ref().ok_or_else(|| not_onnx("it holds no graph".into()))?;
    if graph.node.is_empty() {
        return Err(not_onnx("its graph has no nodes".into()));
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| not_onnx("it imports no default-domain opset".into()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut externals = ExternalFiles { dir, open: HashMap::new() };
    let mut inits = HashMap::new();
    for t in &graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        let tensor = decode_tensor(t, &mut externals)
            .map_err(|e| Error::invalid(format!("{}: initializer `{name}`: {e}", path.display())))?;
        inits.insert(name, tensor);
    }
    if !graph.sparse_initializer.is_empty() {
        crate::bail!("{}: sparse initializers are not supported; save the model with dense weights", path.display());
    }
    let mut nodes = Vec::with_capacity(graph.node.len());
    for (position, n) in graph.node.iter().enumerate() {
        let op = n.op_type.clone().unwrap_or_default();
        let name = match n.name.as_deref() {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => format!("{op}_{position}"),
        };
        let mut attrs = HashMap::new();
        for a in &n.attribute {
            let v = decode_attr(a, &mut externals)
                .map_err(|e| Error::invalid(format!("{}: {op} node `{name}`: attribute: {e}", path.display())))?;
            attrs.insert(a.name.clone().unwrap_or_default(), v);
        }
        nodes.push(ONode {
            name,
            op,
            domain: n.domain.clone().unwrap_or_default(),
            inputs: n.input.clone(),
            outputs: n.output.clone(),
            attrs,
            position,
            scope: n
                .metadata_props
                .iter()
                .find(|p| p.key.as_deref() == Some("pkg.torch.onnx.name_scopes"))
                .and_then(|p| module_scope(p.value.as_deref()?)),
        });
    }
    let info = |v: &pb::ValueInfoProto| {
        let (elem, dims) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(pb::type_proto::Value::TensorType(tt)) => (
                tt.elem_type.unwrap_or(0),
                tt.shape
                    .as_ref()
                    .map(|s| {
                        s.dim
                            .iter()
                            .map(|d| match d.value {
                                Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => Some(v),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => (0, Vec::new()),
        };
        ValueInfo { name: v.name.clone().unwrap_or_default(), elem, dims }
    };
    let inputs =
        graph.input.iter().filter(|v| !inits.contains_key(v.name.as_deref().unwrap_or(""))).map(info).collect();
    let outputs = graph.output.iter().map(info).collect();
    let producer = format!(
        "{} {}",
        model.producer_name.as_deref().unwrap_or("unknown producer"),
        model.producer_version.as_deref().unwrap_or("")
    )
    .trim()
    .to_string();
    Ok(OnnxModel { producer, opset, nodes, inits, inputs, outputs })
}

/// The module path in a name-scope list such as `['', 'layer4', 'layer4.1', 'relu_16']`: the
/// last entry is the op itself, the one before it the module's full dotted path.
fn module_scope(list: &str) -> Option<String> {
    let items: Vec<&str> = list
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"'))
        .collect();
    let module = items.len().checked_sub(2).map(|i| items[i])?;
    (!module.is_empty()).then(|| module.to_string())
}

/// External-data files, opened once each; each tensor reads only its own range.
struct ExternalFiles<'a> {
    dir: &'a Path,
    open: HashMap<String, (std::fs::File, u64)>,
}

impl ExternalFiles<'_> {
    /// The `expected` bytes of one tensor: its file must be a regular file inside the model's
    /// folder and hold the range; the range is checked before anything is allocated.
    fn bytes(&mut self, entries: &[pb::StringStringEntryProto], expected: u64) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let get = |k: &str| entries.iter().find(|e| e.key.as_deref() == Some(k)).and_then(|e| e.value.clone());
        let location = get("location").ok_or_else(|| Error::invalid("external data without a location"))?;
        // The location is relative to the model's folder and must stay inside it.
        let rel = Path::new(&location);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            crate::bail!("external data location `{location}` leaves the model's folder");
        }
        if !self.open.contains_key(&location) {
            let p = self.dir.join(rel);
            let missing = |e: std::io::Error| {
                Error::invalid(format!(
                    "external data file {} ({e}); keep it next to the .onnx file, as the exporter wrote it",
                    p.display()
                ))
            };
            // Resolved, it must still be inside the model's folder (a symlink may point anywhere)
            // and a regular file (a FIFO blocks, a device never ends); its length is then known.
            let dir = self.dir.canonicalize().map_err(missing)?;
            let real = p.canonicalize().map_err(missing)?;
            if !real.starts_with(&dir) {
                crate::bail!(
                    "external data file {} resolves to {}, outside the model's folder; copy the data next to the \
                     .onnx file instead of linking to it",
                    p.display(),
                    real.display()
                );
            }
            let len = crate::util::regular_file(&real)?;
            let file = std::fs::File::open(&real).map_err(missing)?;
            self.open.insert(location.clone(), (file, len));
        }
        let (file, len) = &self.open[&location];
        let number = |key: &str| -> Result<Option<u64>> {
            get(key)
                .map(|s| {
                    s.parse().map_err(|_| Error::invalid(format!("external data {key} `{s}` is not a byte count")))
                })
                .transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        let length = number("length")?.unwrap_or(expected);
        if length != expected {
            crate::bail!(
                "external data length {length} in `{location}`, but the tensor's shape needs {expected} bytes"
            );
        }
        if offset.checked_add(length).is_none_or(|end| end > *len) {
            crate::bail!(
                "external data range {offset}+{length} is past the end of `{location}` ({len} bytes; truncated?)"
            );
        }
        crate::util::check_affordable(length, format_args!("external data in `{location}`"))?;
        let mut out = vec![0u8; length as usize];
        file.read_exact_at(&mut out, offset).map_err(|e| Error::invalid(format!("external data `{location}`: {e}")))?;
        Ok(out)
    }
}

fn decode_attr(a: &pb::AttributeProto, ext: &mut ExternalFiles) -> Result<AttrValue> {
    use pb::attribute_proto::AttributeType as T;
    Ok(match a.r#type.and_then(|t| T::try_from(t).ok()) {
        Some(T::Float) => AttrValue::Float(a.f.unwrap_or(0.0)),
        Some(T::Int) => AttrValue::Int(a.i.unwrap_or(0)),
        Some(T::String) => AttrValue::Str(String::from_utf8_lossy(a.s.as_deref().unwrap_or(&[])).into_owned()),
        Some(T::Tensor) => AttrValue::Tensor(decode_tensor(
            a.t.as_ref().ok_or_else(|| Error::invalid("tensor attribute without a tensor"))?,
            ext,
        )?),
        Some(T::Floats) => AttrValue::Floats(a.floats.clone()),
        Some(T::Ints) => AttrValue::Ints(a.ints.clone()),
        _ => AttrValue::Other,
    })
}

/// ONNX element type → (libtorch kind, bytes per element).
fn element(data_type: i32) -> Option<(Kind, usize)> {
    Some(match data_type {
        1 => (Kind::Float, 4),
        2 => (Kind::Uint8, 1),
        3 => (Kind::Int8, 1),
        5 => (Kind::Int16, 2),
        6 => (Kind::Int, 4),
        7 => (Kind::Int64, 8),
        9 => (Kind::Bool, 1),
        10 => (Kind::Half, 2),
        11 => (Kind::Double, 8),
        16 => (Kind::BFloat16, 2),
        _ => return None,
    })
}

fn decode_tensor(t: &pb::TensorProto, ext: &mut ExternalFiles) -> Result<Tensor> {
    let dt = t.data_type.unwrap_or(0);
    let (kind, width) = element(dt).ok_or_else(|| Error::invalid(format!("element type {dt} is not supported")))?;
    let dims = t.dims.clone();
    if dims.iter().any(|&d| d < 0) {
        crate::bail!("negative dimension in {dims:?}");
    }
    let numel = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d as usize)).unwrap_or(usize::MAX);
    let external;
    let raw: Option<&[u8]> = if t.data_location == Some(1) {
        let expected = numel.checked_mul(width).ok_or_else(|| Error::invalid(format!("shape {dims:?} overflows")))?;
        external = ext.bytes(&t.external_data, expected as u64)?;
        Some(&external)
    } else {
        t.raw_data.as_deref()
    };
    let tensor = if let Some(raw) = raw {
        if raw.len() != numel.saturating_mul(width) {
            crate::bail!("{} bytes of data for shape {dims:?} ({numel} values of {width} bytes)", raw.len());
        }
        Tensor::f_from_data_size(raw, &dims, kind)?
    } else {
        // Typed fields: floats, doubles, int64s, or int32_data for the small types.
        let flat = match dt {
            1 => Tensor::from_slice(&t.float_data),
            11 => Tensor::from_slice(&t.double_data),
            7 => Tensor::from_slice(&t.int64_data),
            2 | 3 | 5 | 6 | 9 => Tensor::from_slice(&t.int32_data).f_to_kind(kind)?,
            10 | 16 => {
                // Half and bfloat16 keep their bits in int32_data.
                let bits: Vec<u8> = t.int32_data.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect();
                Tensor::f_from_data_size(&bits, &[t.int32_data.len() as i64], kind)?
            }
            _ => crate::bail!("element type {dt} in typed fields is not supported"),
        };
        if flat.numel() != numel {
            crate::bail!("{} values for shape {dims:?}", flat.numel());
        }
        flat.f_reshape(dims.as_slice())?
    };
    // Weights are computed in float32 like every relprune graph; integers stay integers.
    Ok(match kind {
        Kind::Half | Kind::BFloat16 | Kind::Double => tensor.f_to_kind(Kind::Float)?,
        _ => tensor,
    })
}
