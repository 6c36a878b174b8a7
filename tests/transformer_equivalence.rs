//! relprune's ViT and BERT graphs compute what torchvision / Hugging Face compute, on the same
//! weights and inputs (relative error ≤ 1e-4 of the output's scale).

mod common;

use relprune::data::text::TextTokenizer;
use relprune::graph::Mode;
use relprune::models::{bert, load_model, Architecture};

fn forward(arch: &str, weights: &std::path::Path, inputs: Vec<tch::Tensor>) -> tch::Tensor {
    let mut g = Architecture::parse(arch).unwrap().build(0).unwrap();
    g.load_safetensors(weights).unwrap();
    tch::no_grad(|| g.forward(&inputs, Mode::Eval)).unwrap()
}

#[test]
fn small_vit_matches_torchvision() {
    let dir =
        common::oracle("transformer_outputs.py", &["--kind", "vit", "--size", "32", "--patch", "8", "--layers", "3"]);
    let io = dir.join("io.safetensors");
    let y = forward(
        "vit:size=32,patch=8,layers=3,heads=4,dim=64,mlp=128,classes=10",
        &dir.join("model.safetensors"),
        vec![common::read_tensor(&io, "x")],
    );
    let err = common::rel_err(&y, &common::read_tensor(&io, "y"));
    assert!(err < 1e-4, "relative error {err:e}");
}

#[test]
fn vit_b_16_matches_torchvision() {
    let dir = common::oracle("transformer_outputs.py", &["--kind", "vit_b_16"]);
    let io = dir.join("io.safetensors");
    let y = forward("vit_b_16", &dir.join("model.safetensors"), vec![common::read_tensor(&io, "x")]);
    let err = common::rel_err(&y, &common::read_tensor(&io, "y"));
    assert!(err < 1e-4, "relative error {err:e}");
}

#[test]
fn bert_matches_hugging_face_with_padding() {
    let dir = common::oracle("transformer_outputs.py", &["--kind", "bert"]);
    let io = dir.join("io.safetensors");
    let inputs = || vec![common::read_tensor(&io, "ids"), common::read_tensor(&io, "mask")];
    let base = "bert:vocab=100,dim=64,layers=2,heads=4,mlp=128,positions=40,max_len=40";
    let h = forward(&format!("{base},pooling=none"), &dir.join("model.safetensors"), inputs());
    let want = common::read_tensor(&io, "last_hidden_state");
    // Padded positions' states are not used by anything downstream; compare real tokens.
    let m = common::read_tensor(&io, "mask").unsqueeze(-1).to_kind(tch::Kind::Float);
    let err = common::rel_err(&(h * &m), &(want * &m));
    assert!(err < 1e-4, "last hidden state: relative error {err:e}");
    let p = forward(&format!("{base},pooling=cls"), &dir.join("model.safetensors"), inputs());
    let err = common::rel_err(&p, &common::read_tensor(&io, "pooler_output"));
    assert!(err < 1e-4, "pooler output: relative error {err:e}");
}

#[test]
fn hugging_face_classifier_folder_loads_directly() {
    let dir = common::oracle("transformer_outputs.py", &["--kind", "bert_cls"]);
    let io = dir.join("io.safetensors");
    let folder = dir.join("hf");
    let m = load_model(&format!("hf-bert:{}", folder.display()), None, 0).unwrap();
    let y = tch::no_grad(|| {
        m.graph.forward(&[common::read_tensor(&io, "ids"), common::read_tensor(&io, "mask")], Mode::Eval)
    })
    .unwrap();
    let err = common::rel_err(&y, &common::read_tensor(&io, "logits"));
    assert!(err < 1e-4, "relative error {err:e}");
}

#[test]
fn real_minilm_matches_sentence_transformers() {
    let dir = common::oracle("transformer_outputs.py", &["--kind", "minilm"]);
    let io = dir.join("io.safetensors");
    let folder = bert::minilm_dir().unwrap();
    // Our tokenizer (the `tokenizers` crate on the package's tokenizer.json) gives the same ids.
    let tok = TextTokenizer::from_file(&folder.join("tokenizer.json"), 128).unwrap();
    let ids = common::read_tensor(&io, "ids");
    let mask = common::read_tensor(&io, "mask");
    for (row, s) in
        ["Hello world, FREE money!!!", "Dear colleague, the meeting moves to Thursday at 10am.", "a"].iter().enumerate()
    {
        let ours = tok.encode(s).unwrap();
        let n = ours.len() as i64;
        let theirs: Vec<i64> = Vec::try_from(ids.get(row as i64).narrow(0, 0, n)).unwrap();
        assert_eq!(ours, theirs, "token ids of {s:?}");
        assert_eq!(mask.get(row as i64).sum(tch::Kind::Int64).int64_value(&[]), n);
    }
    let y = forward("minilm:pooling=mean,max_len=128", &folder.join("model.safetensors"), vec![ids, mask]);
    let err = common::rel_err(&y, &common::read_tensor(&io, "pooled"));
    assert!(err < 1e-4, "relative error {err:e}");
}

#[test]
fn transformer_bad_input_is_clear() {
    let e = Architecture::parse("vit:dim=64,heads=5").unwrap_err().to_string();
    assert!(e.contains("5 heads do not divide the width 64"), "{e}");
    let e = Architecture::parse("bert:dim=64,heads=6").unwrap_err().to_string();
    assert!(e.contains("do not divide"), "{e}");
    let g = Architecture::parse(
        "bert:vocab=50,dim=32,layers=1,heads=4,mlp=64,positions=8,max_len=8,pooling=mean,classes=2",
    )
    .unwrap()
    .build(0)
    .unwrap();
    let long = tch::Tensor::zeros([1, 9], (tch::Kind::Int64, tch::Device::Cpu));
    let e = g.forward(&[long.shallow_clone(), long.ones_like()], Mode::Eval).unwrap_err().to_string();
    assert!(e.contains("T ≤ 8"), "{e}");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("tokenizer.json"), "{\"not\": \"a tokenizer\"}").unwrap();
    let e = TextTokenizer::from_file(&tmp.path().join("tokenizer.json"), 16).err().unwrap().to_string();
    assert!(e.contains("unknown or unsupported tokenizer format"), "{e}");
    std::fs::write(tmp.path().join("config.json"), "{\"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 8, \"max_position_embeddings\": 8}").unwrap();
    let e = load_model(&format!("hf-bert:{}", tmp.path().display()), None, 0).err().unwrap().to_string();
    assert!(e.contains("model.safetensors"), "a folder without safetensors: {e}");
}
