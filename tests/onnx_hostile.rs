//! Malformed and hostile ONNX files give a clean one-line error naming the node, its operator
//! and what is wrong, never a panic: the operator registry checks each node's arity and
//! attributes before evaluating it, and each evaluation bounds what it would allocate. The
//! models are built in memory with the ONNX protobuf types the importer decodes; sweeps give
//! every registered operator wrong arities, degenerate inputs and out-of-range attributes.

use prost::Message;
use relprune::import::ops;
use relprune::import::proto::pb;
use std::path::Path;

fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: Some(name.into()),
        r#type: Some(pb::attribute_proto::AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: Some(name.into()),
        r#type: Some(pb::attribute_proto::AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_str(name: &str, v: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: Some(name.into()),
        r#type: Some(pb::attribute_proto::AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn ints(name: &str, dims: &[i64], v: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(pb::tensor_proto::DataType::Int64 as i32),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64]) -> pb::TensorProto {
    let n: i64 = dims.iter().product();
    pb::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(pb::tensor_proto::DataType::Float as i32),
        float_data: (0..n).map(|i| (i % 7) as f32 * 0.1).collect(),
        ..Default::default()
    }
}

/// Node `bad` of operator `op`, writing `y`.
fn node(op: &str, inputs: &[&str], attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        name: Some("bad".into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec!["y".into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let shape = pb::TensorShapeProto {
        dim: dims.iter().map(|&d| Dimension { value: Some(Value::DimValue(d)), ..Default::default() }).collect(),
    };
    let tensor = pb::type_proto::Tensor { elem_type: Some(1), shape: Some(shape) };
    pb::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(pb::TypeProto { value: Some(pb::type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// A model reading image `x` (1×3×8×8) with the weight `w` (4×3×3×3) and `extra` initializers,
/// computing `y` by `node`.
fn model(node: pb::NodeProto, extra: Vec<pb::TensorProto>) -> Vec<u8> {
    let mut initializer = vec![floats("w", &[4, 3, 3, 3])];
    initializer.extend(extra);
    let graph = pb::GraphProto {
        node: vec![node],
        name: Some("hostile".into()),
        initializer,
        input: vec![value_info("x", &[1, 3, 8, 8])],
        output: vec![value_info("y", &[1, 4, 8, 8])],
        ..Default::default()
    };
    encode(graph)
}

/// `graph` as an opset-17 model file's bytes.
fn encode(graph: pb::GraphProto) -> Vec<u8> {
    pb::ModelProto {
        ir_version: Some(8),
        opset_import: vec![pb::OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        producer_name: Some("tests/onnx_hostile.rs".into()),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The import error of a model, or a description of what went wrong instead (imported, or panicked).
fn import_error(dir: &Path, bytes: &[u8]) -> Result<String, String> {
    let path = dir.join("m.onnx");
    std::fs::write(&path, bytes).unwrap();
    match std::panic::catch_unwind(|| relprune::import::import(&path).map(|_| ())) {
        Ok(Err(e)) => Ok(e.to_string()),
        Ok(Ok(())) => Err("imported".into()),
        Err(p) => Err(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// Each known hostile input gives one line naming the node, its op and what is wrong.
#[test]
fn hostile_nodes_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, pb::NodeProto, Vec<pb::TensorProto>, &str)> = vec![
        (
            "SAME-padded Conv with stride 0",
            node("Conv", &["x", "w"], vec![attr_str("auto_pad", "SAME_UPPER"), attr_ints("strides", &[0, 0])]),
            vec![],
            "`strides` [0, 0] holds 0; each must be at least 1",
        ),
        (
            "Conv with 2 pads",
            node("Conv", &["x", "w"], vec![attr_ints("pads", &[1, 1])]),
            vec![],
            "`pads` [1, 1] has 2 entries; a 2-d Conv needs 4",
        ),
        ("Concat of nothing", node("Concat", &[], vec![attr_int("axis", 1)]), vec![], "takes at least 1 input, has 0"),
        (
            "Slice with fewer axes than starts",
            node("Slice", &["x", "starts", "ends", "axes"], vec![]),
            vec![ints("starts", &[2], &[0, 0]), ints("ends", &[2], &[1, 1]), ints("axes", &[1], &[1])],
            "2 starts, 2 ends, 1 axes and 2 steps; Slice needs as many of each",
        ),
        (
            "Range from 0 to 2^40",
            node("Range", &["start", "limit", "delta"], vec![]),
            vec![ints("start", &[], &[0]), ints("limit", &[], &[1 << 40]), ints("delta", &[], &[1])],
            "has 1099511627776 values, more than the 67108864 the importer evaluates",
        ),
    ];
    for (what, n, extra, want) in cases {
        let op = n.op_type.clone().unwrap();
        let e = import_error(dir.path(), &model(n, extra)).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(e.contains(&format!("{op} node `bad`")) && e.contains(want), "{what}: {e}");
        assert!(!e.contains('\n'), "{what}: not one line: {e}");
    }
}

/// Every registered operator refuses a node with no inputs and one with more than it takes.
#[test]
fn every_operator_checks_its_arity() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for def in ops::all() {
        let mut arities = vec![0];
        if let Some(max) = def.inputs.max {
            arities.push(max + 1);
        }
        for k in arities {
            let inputs = vec!["x"; k];
            let got = import_error(dir.path(), &model(node(def.name, &inputs, vec![]), vec![]));
            match got {
                Ok(e) if e.contains(&format!("{} node `bad`", def.name)) => {}
                Ok(e) => failures.push(format!("{} with {k} inputs: the error does not name the node: {e}", def.name)),
                Err(e) => failures.push(format!("{} with {k} inputs: {e}", def.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The unsupported-operator error lists what the importer reads, from the registry.
#[test]
fn unknown_operators_are_named_with_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let e = import_error(dir.path(), &model(node("Unique", &["x"], vec![]), vec![])).unwrap();
    assert!(e.contains("Unique node `bad`") && e.contains("not an operator relprune can read"), "{e}");
    for (ops, _) in relprune::import::supported() {
        for op in ops.split(", ") {
            assert!(e.contains(op), "{op} missing from: {e}");
        }
    }
}

/// Every registered operator, given degenerate inputs (a scalar, an empty list, a huge value, the
/// image itself) at each arity it takes, errors or imports but never panics.
#[test]
fn every_operator_survives_degenerate_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let values = || {
        vec![
            ints("scalar", &[], &[3]),
            ints("empty", &[0], &[]),
            ints("huge", &[1], &[1 << 40]),
            ints("negative", &[2], &[-7, -1]),
            floats("fscalar", &[]),
        ]
    };
    let mut failures = Vec::new();
    for def in ops::all() {
        let max = def.inputs.max.unwrap_or(def.inputs.min + 2);
        for k in def.inputs.min.max(1)..=max {
            for v in ["x", "scalar", "empty", "huge", "negative", "fscalar", "w"] {
                // The first input is the image or `v`; the others `v`.
                for first in ["x", v] {
                    let mut inputs = vec![first];
                    inputs.extend(std::iter::repeat_n(v, k - 1));
                    if let Err(e) = import_error(dir.path(), &model(node(def.name, &inputs, vec![]), values())) {
                        if e != "imported" {
                            failures.push(format!("{} with inputs {inputs:?}: {e}", def.name));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every registered operator, given out-of-range attributes, errors or imports but never panics.
#[test]
fn every_operator_survives_degenerate_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let attrs = || {
        vec![
            attr_int("axis", 100),
            attr_int("axis", -100),
            attr_ints("perm", &[5, 5]),
            attr_ints("axes", &[100]),
            attr_ints("kernel_shape", &[0, 0]),
            attr_ints("kernel_shape", &[3]),
            attr_ints("strides", &[-1, -1]),
            attr_ints("dilations", &[0, 0]),
            attr_ints("pads", &[-1, -1, -1, -1]),
            attr_int("group", 0),
            attr_int("group", 7),
            attr_ints("split", &[-1, 100]),
            attr_int("num_outputs", 0),
            attr_int("to", 999),
            attr_int("start", -100),
            attr_int("end", 100),
            attr_str("auto_pad", "SAME_LOWER"),
            attr_str("auto_pad", "bogus"),
        ]
    };
    let mut failures = Vec::new();
    for def in ops::all() {
        let mut inputs = vec!["x"];
        inputs.extend(std::iter::repeat_n("w", def.inputs.min.saturating_sub(1)));
        inputs.truncate(def.inputs.min.max(1).min(def.inputs.max.unwrap_or(usize::MAX)));
        for a in attrs() {
            let what = format!("{} with {:?}", def.name, a.name.clone().unwrap_or_default());
            if let Err(e) = import_error(dir.path(), &model(node(def.name, &inputs, vec![a]), vec![])) {
                if e != "imported" {
                    failures.push(format!("{what}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A model whose weight `w` (4×3×3×3 floats) lives in the external file `location`.
fn external_model(location: &str) -> Vec<u8> {
    let mut w = floats("w", &[4, 3, 3, 3]);
    w.float_data.clear();
    w.data_location = Some(pb::tensor_proto::DataLocation::External as i32);
    w.external_data = vec![pb::StringStringEntryProto { key: Some("location".into()), value: Some(location.into()) }];
    let graph = pb::GraphProto {
        node: vec![node("Conv", &["x", "w"], vec![attr_ints("pads", &[1, 1, 1, 1])])],
        name: Some("external".into()),
        initializer: vec![w],
        input: vec![value_info("x", &[1, 3, 8, 8])],
        output: vec![value_info("y", &[1, 4, 8, 8])],
        ..Default::default()
    };
    encode(graph)
}

fn weight_bytes() -> Vec<u8> {
    (0..4 * 3 * 3 * 3).flat_map(|i| ((i % 7) as f32 * 0.1).to_le_bytes()).collect()
}

/// External data is read only from regular files inside the model's folder: a symlink to a file
/// outside, a symlinked subfolder, a link to /dev/zero and a FIFO are refused (the FIFO without
/// blocking), as is a model file that is itself a FIFO; a regular file inside is read.
#[test]
fn external_data_stays_inside_the_models_folder_and_in_regular_files() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("w.bin"), weight_bytes()).unwrap();
    let fifo = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", p.display());
    };
    type Setup<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, &str, Setup, Option<&str>)> = vec![
        ("regular file", "w.bin", Box::new(|d: &Path| std::fs::write(d.join("w.bin"), weight_bytes()).unwrap()), None),
        (
            "symlink to a file outside",
            "w.bin",
            Box::new(|d: &Path| symlink(outside.path().join("w.bin"), d.join("w.bin")).unwrap()),
            Some("outside the model's folder"),
        ),
        (
            "symlinked subfolder",
            "sub/w.bin",
            Box::new(|d: &Path| symlink(outside.path(), d.join("sub")).unwrap()),
            Some("outside the model's folder"),
        ),
        (
            "symlink to /dev/zero",
            "w.bin",
            Box::new(|d: &Path| symlink("/dev/zero", d.join("w.bin")).unwrap()),
            Some("outside the model's folder"),
        ),
        ("FIFO", "w.bin", Box::new(move |d: &Path| fifo(&d.join("w.bin"))), Some("not a regular file")),
    ];
    for (what, location, setup, wanted) in cases {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let started = std::time::Instant::now();
        let got = import_error(dir.path(), &external_model(location));
        assert!(started.elapsed().as_secs() < 10, "{what}: took {:?}", started.elapsed());
        match (wanted, got) {
            (None, Err(e)) if e == "imported" => {}
            (Some(w), Ok(msg)) => {
                assert!(msg.contains(w), "{what}: `{w}` not in: {msg}");
                assert_eq!(msg.lines().count(), 1, "{what}: {msg}");
            }
            (w, got) => panic!("{what}: wanted {w:?}, got {got:?}"),
        }
    }
    // The model file itself a FIFO: refused, not read (which would block).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = relprune::import::import(&path).err().expect("a FIFO is not a model");
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

/// Two nodes writing one value, or a node overwriting an initializer or the graph's input, are
/// refused (onnxruntime refuses them; the last definition would silently win).
#[test]
fn graphs_that_define_a_value_twice_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (what, second_output, wanted) in [
        ("two nodes write y", "y", "already defines"),
        ("a node overwrites the initializer w", "w", "an initializer already defines"),
        ("a node overwrites the input x", "x", "a graph input already defines"),
    ] {
        let mut bytes = pb::ModelProto::decode(model(node("Relu", &["x"], vec![]), vec![]).as_slice()).unwrap();
        let g = bytes.graph.as_mut().unwrap();
        g.node[0].output = vec!["r".into()];
        let conv = pb::NodeProto {
            name: Some("conv".into()),
            op_type: Some("Conv".into()),
            input: vec!["r".into(), "w".into()],
            output: vec!["y".into()],
            attribute: vec![attr_ints("pads", &[1, 1, 1, 1])],
            ..Default::default()
        };
        let again = pb::NodeProto {
            name: Some("again".into()),
            op_type: Some("Relu".into()),
            input: vec!["r".into()],
            output: vec![second_output.into()],
            ..Default::default()
        };
        g.node.push(conv);
        g.node.push(again);
        let msg = import_error(dir.path(), &bytes.encode_to_vec()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(msg.contains(wanted) && msg.contains("again"), "{what}: {msg}");
    }
}

/// An input declared far larger than any image is refused before its example is allocated
/// (once an abort allocating 43 GB).
#[test]
fn a_huge_declared_input_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    for (dims, wanted) in [
        (vec![1, 3, 60000, 60000], "3×60000×60000, more than the limit"),
        (vec![1, 1 << 20, 1 << 10, 1], "1048576×1024×1, more than the limit"),
    ] {
        let mut m = pb::ModelProto::decode(model(node("Relu", &["x"], vec![]), vec![]).as_slice()).unwrap();
        m.graph.as_mut().unwrap().input = vec![value_info("x", &dims)];
        let started = std::time::Instant::now();
        let msg = import_error(dir.path(), &m.encode_to_vec()).unwrap_or_else(|e| panic!("{dims:?}: {e}"));
        assert!(msg.contains(wanted), "{dims:?}: {msg}");
        assert!(started.elapsed().as_secs() < 5);
    }
}

/// A malformed model libtorch itself rejects gives one line, never its C++ stack trace.
#[test]
fn libtorch_errors_come_without_their_cpp_trace() {
    let dir = tempfile::tempdir().unwrap();
    for (what, n) in [
        ("groups that do not divide the channels", node("Conv", &["x", "w"], vec![attr_int("group", 2)])),
        ("a reshape to the wrong size", node("Reshape", &["x", "shape"], vec![])),
    ] {
        let msg = import_error(dir.path(), &model(n, vec![ints("shape", &[2], &[7, 5])]))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(msg.lines().count(), 1, "{what}: {msg}");
        assert!(!msg.contains("frame #") && !msg.contains("Exception raised from"), "{what}: {msg}");
        assert!(msg.contains("bad"), "{what}: names the node: {msg}");
    }
}

/// Refusals say why in the user's terms where relprune knows, and never suggest another opset or
/// exporter by default (that hint fixed none of the models it was shown for).
#[test]
fn refusals_name_the_construct_and_give_no_generic_hint() {
    let dir = tempfile::tempdir().unwrap();
    for (op, inputs, wanted) in [
        ("ConvTranspose", vec!["x", "w"], "transposed convolutions"),
        ("Resize", vec!["x", "", "scales"], "height and width only"),
        ("GatherND", vec!["x", "idx"], "decoder-only language model"),
        ("Conv", vec!["x", "w"], "bad"),
    ] {
        let extra = vec![floats("scales", &[4]), ints("idx", &[1, 1], &[0])];
        let n = node(op, &inputs, if op == "Conv" { vec![attr_int("group", 2)] } else { vec![] });
        let msg = import_error(dir.path(), &model(n, extra)).unwrap_or_else(|e| panic!("{op}: {e}"));
        assert!(msg.contains(wanted), "{op}: `{wanted}` not in: {msg}");
        assert!(!msg.contains("opset_version") && !msg.contains("dynamo=True"), "{op}: {msg}");
    }
}

/// Every size field of an initializer, at edge values: its dims (with typed, raw and external
/// data), and the offset and length of its external data. Each is imported or refused with one
/// line, never a panic, never an allocation of what the field declares, in bounded time.
#[test]
fn initializer_size_fields_are_bounded() {
    const EDGES: [i64; 9] = [0, -1, 1, 3, 1 << 31, 1 << 32, 1 << 40, i64::MAX, i64::MIN];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), weight_bytes()).unwrap();
    let mut cases: Vec<(String, pb::TensorProto)> = Vec::new();
    for e in EDGES {
        for dims in [vec![e, 3, 3, 3], vec![4, e, 3, 3], vec![e, e, 1, 1], vec![4, 3, 3, 3, e]] {
            let mut typed = floats("w", &[4, 3, 3, 3]);
            typed.dims = dims.clone();
            let mut raw = typed.clone();
            raw.float_data.clear();
            raw.raw_data = Some(weight_bytes());
            let mut ext =
                pb::ModelProto::decode(external_model("w.bin").as_slice()).unwrap().graph.unwrap().initializer[0]
                    .clone();
            ext.dims = dims.clone();
            cases.push((format!("typed dims {dims:?}"), typed));
            cases.push((format!("raw dims {dims:?}"), raw));
            cases.push((format!("external dims {dims:?}"), ext));
        }
        for key in ["offset", "length"] {
            let mut ext =
                pb::ModelProto::decode(external_model("w.bin").as_slice()).unwrap().graph.unwrap().initializer[0]
                    .clone();
            ext.external_data.push(pb::StringStringEntryProto { key: Some(key.into()), value: Some(e.to_string()) });
            cases.push((format!("external {key} {e}"), ext));
        }
    }
    let mut failures = Vec::new();
    for (what, w) in cases {
        let mut m = pb::ModelProto::decode(external_model("w.bin").as_slice()).unwrap();
        m.graph.as_mut().unwrap().initializer = vec![w];
        let started = std::time::Instant::now();
        match import_error(dir.path(), &m.encode_to_vec()) {
            Ok(msg) if msg.lines().count() == 1 => {}
            Ok(msg) => failures.push(format!("{what}: {msg}")),
            Err(e) if e == "imported" => {}
            Err(e) => failures.push(format!("{what}: {e}")),
        }
        if started.elapsed().as_secs() > 5 {
            failures.push(format!("{what}: took {:?}", started.elapsed()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
