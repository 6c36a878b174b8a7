//! Saving, loading and the errors users get for bad weights or architectures.

use relprune::graph::{Graph, Mode};
use relprune::models::{load_model, Architecture};
use relprune::Error;
use tch::{Kind, Tensor};

fn small() -> Graph {
    Architecture::parse("cifar_resnet18:width=4,in=1,size=12,classes=5").unwrap().build(3).unwrap()
}

/// The same input every call (our seeded generator; libtorch's global one is shared by tests
/// running in parallel).
fn input() -> Tensor {
    relprune::graph::init::normal(&mut relprune::util::rng(0), &[2, 1, 12, 12], 1.0)
}

#[test]
fn safetensors_round_trip_gives_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let g = small();
    let path = dir.path().join("w.safetensors");
    g.save_safetensors(&path).unwrap();
    let mut h = Architecture::parse("cifar_resnet18:width=4,in=1,size=12,classes=5").unwrap().build(99).unwrap();
    let before = tch::no_grad(|| h.forward(&[input()], Mode::Eval)).unwrap();
    h.load_safetensors(&path).unwrap();
    let a = tch::no_grad(|| g.forward(&[input()], Mode::Eval)).unwrap();
    let b = tch::no_grad(|| h.forward(&[input()], Mode::Eval)).unwrap();
    assert!(a.equal(&b), "reloaded weights must give bit-identical outputs");
    assert!(!before.equal(&b), "different seeds must give different initial weights");
}

#[test]
fn graph_folder_round_trip_in_a_fresh_load() {
    let dir = tempfile::tempdir().unwrap();
    let g = small();
    g.save(dir.path()).unwrap();
    let h = Graph::load(dir.path()).unwrap();
    assert_eq!(g.spec(), h.spec());
    let a = tch::no_grad(|| g.forward(&[input()], Mode::Eval)).unwrap();
    let b = tch::no_grad(|| h.forward(&[input()], Mode::Eval)).unwrap();
    assert!(a.equal(&b));
    // load_model recognises the folder too.
    let m = load_model(dir.path().to_str().unwrap(), None, 0).unwrap();
    assert_eq!(m.graph.num_parameters(), g.num_parameters());
}

#[test]
fn missing_parameter_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = small();
    let mut store = g.params().clone_shallow();
    store.remove("layer2.0.conv1.weight");
    let path = dir.path().join("w.safetensors");
    store.write_safetensors(&path).unwrap();
    let mut h = small();
    let err = h.load_safetensors(&path).unwrap_err();
    assert!(matches!(&err, Error::MissingParam { name, .. } if name == "layer2.0.conv1.weight"), "{err}");
    assert!(err.to_string().contains("layer2.0.conv1.weight"));
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let g = small();
    let mut store = g.params().clone_shallow();
    store.insert("fc.weight".into(), Tensor::zeros([7, 32], (Kind::Float, tch::Device::Cpu)));
    let path = dir.path().join("w.safetensors");
    store.write_safetensors(&path).unwrap();
    let mut h = small();
    let err = h.load_safetensors(&path).unwrap_err();
    match &err {
        Error::ParamShape { name, expected, found, .. } => {
            assert_eq!(name, "fc.weight");
            assert_eq!(expected, &vec![5, 32]);
            assert_eq!(found, &vec![7, 32]);
        }
        other => panic!("expected a shape error, got {other}"),
    }
    // A failed load leaves the graph as it was.
    let a = tch::no_grad(|| h.forward(&[input()], Mode::Eval)).unwrap();
    let b = tch::no_grad(|| small().forward(&[input()], Mode::Eval)).unwrap();
    assert!(a.equal(&b));
}

#[test]
fn unknown_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let g = small();
    let mut store = g.params().clone_shallow();
    store.insert("layer5.0.conv1.weight".into(), Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)));
    let path = dir.path().join("w.safetensors");
    store.write_safetensors(&path).unwrap();
    let err = small().load_safetensors(&path).unwrap_err();
    assert!(err.to_string().contains("layer5.0.conv1.weight"), "{err}");
}

#[test]
fn missing_weights_file_and_unknown_architecture() {
    let err = load_model("resnet18", Some(std::path::Path::new("/nonexistent/w.safetensors")), 0).err().unwrap();
    assert!(err.to_string().contains("/nonexistent/w.safetensors"), "{err}");
    let err = load_model("resnet19", None, 0).err().unwrap();
    assert!(err.to_string().contains("unknown architecture `resnet19`"), "{err}");
    assert!(err.to_string().contains("resnet18"), "the message lists known names: {err}");
    let err = load_model("fmnist-resnt18", None, 0).err().unwrap();
    assert!(err.to_string().contains("zoo models: fmnist-resnet18"), "a misspelt zoo name lists the zoo: {err}");
    let err = Architecture::parse("vgg16_bn:clases=3").unwrap_err();
    assert!(err.to_string().contains("unknown option `clases`"), "{err}");
}

#[test]
fn wrong_input_shape_is_an_error_not_a_panic() {
    let g = small();
    let x = Tensor::zeros([2, 3, 12, 12], (Kind::Float, tch::Device::Cpu));
    let err = tch::no_grad(|| g.forward(&[x], Mode::Eval)).unwrap_err();
    assert!(err.to_string().contains("(B, 1, 12, 12)"), "{err}");
}

#[test]
fn description_that_does_not_match_weights_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    small().save(dir.path()).unwrap();
    // Replace the weights with those of a wider network.
    Architecture::parse("cifar_resnet18:width=8,in=1,size=12,classes=5")
        .unwrap()
        .build(0)
        .unwrap()
        .save_safetensors(&dir.path().join("model.safetensors"))
        .unwrap();
    let err = Graph::load(dir.path()).err().unwrap();
    assert!(err.to_string().contains("expected shape"), "{err}");
}

#[test]
fn parameter_counts_of_every_family_member_match_torchvision() {
    // The smallest members are checked output for output (torchvision_equivalence.rs); here
    // the larger ones: sum(p.numel() for p in torchvision.models.NAME().parameters()).
    for (arch, n) in [
        ("mobilenet_v2", 3504872),
        ("mobilenet_v3_small", 2542856),
        ("mobilenet_v3_large", 5483032),
        ("efficientnet_b0", 5288548),
        ("efficientnet_b1", 7794184),
        ("efficientnet_b2", 9109994),
        ("efficientnet_b3", 12233232),
        ("efficientnet_b4", 19341616),
        ("efficientnet_b5", 30389784),
        ("efficientnet_b6", 43040704),
        ("efficientnet_b7", 66347960),
        ("densenet121", 7978856),
        ("densenet161", 28681000),
        ("densenet169", 14149480),
        ("densenet201", 20013928),
        ("resnext50_32x4d", 25028904),
        ("resnext101_32x8d", 88791336),
        ("resnext101_64x4d", 83455272),
        ("wide_resnet50_2", 68883240),
        ("wide_resnet101_2", 126886696),
        ("regnet_y_400mf", 4344144),
        ("regnet_y_800mf", 6432512),
        ("regnet_y_1_6gf", 11202430),
        ("regnet_y_3_2gf", 19436338),
        ("regnet_y_8gf", 39381472),
        ("regnet_x_400mf", 5495976),
        ("regnet_x_800mf", 7259656),
        ("regnet_x_1_6gf", 9190136),
        ("regnet_x_3_2gf", 15296552),
        ("regnet_x_8gf", 39572648),
        ("regnet_x_16gf", 54278536),
        ("convnext_tiny", 28589128),
        ("convnext_small", 50223688),
        ("convnext_base", 88591464),
    ] {
        let g = Architecture::parse(&format!("{arch}:size=32")).unwrap().build(0).unwrap();
        assert_eq!(g.num_parameters(), n, "{arch}");
    }
}

#[test]
fn unknown_fields_in_graph_json_are_named() {
    let dir = tempfile::tempdir().unwrap();
    small().save(dir.path()).unwrap();
    let path = dir.path().join("graph.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let bad = text.replacen("\"out_channels\"", "\"out_chanels\"", 1);
    std::fs::write(&path, bad).unwrap();
    let e = Graph::load(dir.path()).err().expect("a misspelt field is an error").to_string();
    assert!(e.contains("out_chanels"), "{e}");
}

#[test]
fn parameter_counts_match_torchvision() {
    // torchvision: sum(p.numel() for p in model.parameters())
    for (arch, n) in
        [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032), ("vgg16_bn", 138_365_992)]
    {
        assert_eq!(Architecture::parse(arch).unwrap().build(0).unwrap().num_parameters(), n, "{arch}");
    }
}
