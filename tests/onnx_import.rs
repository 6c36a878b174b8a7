//! ONNX import: models exported by both PyTorch exporters (torchvision, Hugging Face, a plain
//! nn.Sequential; several opsets; external data) give onnxruntime's outputs on the oracle's
//! inputs, at any batch size; bad files give clear errors; the op table in the docs is current.

mod common;

use relprune::graph::Mode;
use relprune::import::import;
use std::path::Path;
use tch::Tensor;

/// Every architecture of the import issue, at each exporter's default opset.
const MODELS: &[&str] = &[
    "resnet18",
    "resnet50",
    "vgg16_bn",
    "vit_b_16",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "densenet121",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "convnext_tiny",
    "bert",
    "distilbert",
    "roberta",
    "sequential",
    "tiny_vit",
    "constructs_cnn",
    "constructs_vit",
];

/// Checks one exported case: outputs equal onnxruntime's (to 1e-4 of the output's scale) on
/// the oracle's batch and on its first sample alone (the batch axis is dynamic).
fn check_case(dir: &Path, case: &str) {
    let file = dir.join(format!("{case}.onnx"));
    let imported = import(&file).unwrap_or_else(|e| panic!("{case}: {e}"));
    let io = dir.join(format!("{case}.io.safetensors"));
    let n_inputs = imported.graph.inputs().len();
    let inputs: Vec<Tensor> = (0..n_inputs).map(|i| common::read_tensor(&io, &format!("input.{i}"))).collect();
    let want = common::read_tensor(&io, "output");
    let got = tch::no_grad(|| imported.graph.forward(&inputs, Mode::Eval)).unwrap();
    let err = common::rel_err(&got, &want);
    assert!(err < 1e-4, "{case}: relative error {err:e} against onnxruntime");
    let first: Vec<Tensor> = inputs.iter().map(|t| t.narrow(0, 0, 1)).collect();
    let one = tch::no_grad(|| imported.graph.forward(&first, Mode::Eval)).unwrap();
    let err1 = common::rel_err(&one, &want.narrow(0, 0, 1));
    assert!(err1 < 1e-4, "{case}: batch of one: relative error {err1:e}");
}

fn check_all(cases: &[String]) {
    let dir = common::oracle("onnx_models.py", &["--cases", &cases.join(",")]);
    for case in cases {
        check_case(&dir, case);
    }
}

#[test]
fn legacy_exports_equal_onnxruntime() {
    check_all(&MODELS.iter().map(|m| m.to_string()).collect::<Vec<_>>());
}

#[test]
fn dynamo_exports_equal_onnxruntime() {
    check_all(&MODELS.iter().map(|m| format!("{m}@dynamo")).collect::<Vec<_>>());
}

/// Older opsets decompose LayerNorm (ReduceMean / Sub / Pow / Sqrt / Div) and GELU (Erf), and
/// opset 21 is the newest supported; external data files are read from beside the model.
#[test]
fn opsets_13_to_21_and_external_data() {
    let cases = [
        "resnet18@opset13@external",
        "mobilenet_v3_small@opset13",
        "bert@opset13",
        "distilbert@opset16",
        "tiny_vit@opset14",
        "tiny_vit@dynamo@opset17",
        "convnext_tiny@opset14",
        "efficientnet_b0@opset18",
        "tiny_vit@dynamo@opset21",
        "bert@dynamo@opset21",
    ];
    check_all(&cases.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    // What `relprune info` reports: the fused patterns of a decomposed export.
    let dir = common::oracle("onnx_models.py", &["--cases", &cases.join(",")]);
    let r = import(&dir.join("bert@opset13.onnx")).unwrap().report;
    let has = |what: &str| r.fused.iter().filter(|f| f.starts_with(what)).count();
    assert_eq!(has("attention (4 heads)"), 2, "{:?}", r.fused);
    assert_eq!(has("layer_norm"), 5, "{:?}", r.fused);
    assert_eq!(has("gelu"), 2, "{:?}", r.fused);
}

/// Imported models speak the user's names: PyTorch module paths and parameter names.
#[test]
fn imported_names_are_the_users() {
    let dir = common::oracle("onnx_models.py", &["--cases", "resnet18,resnet18@dynamo,bert,sequential"]);
    for case in ["resnet18", "resnet18@dynamo"] {
        let g = import(&dir.join(format!("{case}.onnx"))).unwrap().graph;
        for name in ["conv1", "layer1.0.conv1", "layer4.1.conv2", "fc"] {
            assert!(g.find(name).is_some(), "{case}: no node `{name}`");
        }
        assert!(g.params().get("fc.weight").is_some(), "{case}: fc.weight");
    }
    let g = import(&dir.join("bert.onnx")).unwrap().graph;
    assert!(g.find("model.bert.encoder.layer.0.attention.self.query").is_some());
    assert!(g.params().get("model.bert.embeddings.word_embeddings.weight").is_some());
    let g = import(&dir.join("sequential.onnx")).unwrap().graph;
    let convs: Vec<&str> = g.nodes().iter().filter(|n| n.op.kind_name() == "conv2d").map(|n| n.name.as_str()).collect();
    assert_eq!(convs, ["0", "4"], "nn.Sequential layers keep their indices");
}

fn import_error(file: &Path) -> String {
    match import(file) {
        Ok(_) => panic!("{} imported", file.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = common::oracle("onnx_bad.py", &[]);
    let e = import_error(&dir.join("unsupported.onnx"));
    assert!(e.contains("ConvTranspose node `/1/ConvTranspose`") && e.contains("node 1 of the file"), "{e}");
    assert!(e.contains("transposed convolutions are not supported"), "hint missing: {e}");
    let e = import_error(&dir.join("two_outputs.onnx"));
    assert!(e.contains("2 outputs") && e.contains("only the logits"), "{e}");
    let e = import_error(&dir.join("no_weights.onnx"));
    assert!(e.contains("no initializers"), "{e}");
    let e = import_error(&dir.join("dynamic_size.onnx"));
    assert!(e.contains("(?, 3, ?, ?)") && e.contains("fixed image size"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(dir.join("unsupported.onnx")).unwrap();
    let truncated = tmp.path().join("truncated.onnx");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let e = import_error(&truncated);
    assert!(e.contains("not a readable ONNX model"), "{e}");
    let text = tmp.path().join("text.onnx");
    std::fs::write(&text, "this is not a model\n").unwrap();
    assert!(import_error(&text).contains("not a readable ONNX model"));
    let empty = tmp.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    assert!(import_error(&empty).contains("holds no graph"));
    // A missing external-data file names the file to put back.
    let models = common::oracle("onnx_models.py", &["--cases", "resnet18@opset13@external"]);
    let copy = tmp.path().join("m.onnx");
    std::fs::copy(models.join("resnet18@opset13@external.onnx"), &copy).unwrap();
    let e = import_error(&copy);
    assert!(e.contains("external data file") && e.contains("next to the .onnx file"), "{e}");
    // The CLI refuses them before any work, naming the file.
    let e = relprune::models::load_model(tmp.path().join("absent.onnx").to_str().unwrap(), None, 0).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
}

/// `docs/import-onnx.md` lists exactly what the importer reads.
#[test]
fn import_docs_op_table_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/import-onnx.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (begin, end) =
        ("<!-- ONNX operators: generated by tests/onnx_import.rs -->\n", "<!-- end of ONNX operators -->");
    let (head, rest) = doc.split_once(begin).expect("begin marker");
    let (_, tail) = rest.split_once(end).expect("end marker");
    let mut table = String::from("| ONNX operator | becomes |\n|---|---|\n");
    for (op, what) in relprune::import::supported() {
        table.push_str(&format!("| {op} | {what} |\n"));
    }
    let fresh = format!("{head}{begin}{table}{end}{tail}");
    if std::env::var_os("RELPRUNE_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    assert!(fresh == doc, "docs/import-onnx.md's operator table is stale: rerun with RELPRUNE_BLESS=1");
}
