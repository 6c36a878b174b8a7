//! relprune's graphs compute what torchvision's models compute, on the same weights.

mod common;

use relprune::graph::Mode;
use relprune::models::Architecture;

fn check(arch: &str) {
    check_at(arch, 224);
}

/// `arch` at `size`² pixels (the smallest members of a family run on small images).
fn check_at(arch: &str, size: i64) {
    let s = size.to_string();
    let dir = common::oracle("torchvision_logits.py", &["--arch", arch, "--batch", "2", "--size", &s]);
    let sep = if arch.contains(':') { ',' } else { ':' };
    let mut g = Architecture::parse(&format!("{arch}{sep}size={size}")).unwrap().build(0).unwrap();
    g.load_safetensors(&dir.join("model.safetensors")).unwrap();
    let io = dir.join("io.safetensors");
    let x = common::read_tensor(&io, "x");
    let y = common::read_tensor(&io, "y");
    let ours = tch::no_grad(|| g.forward(&[x], Mode::Eval)).unwrap();
    let err = common::rel_err(&ours, &y);
    assert!(err < 1e-4, "{arch}: relative error {err:e} exceeds 1e-4");
}

#[test]
fn resnet18_matches_torchvision() {
    check("resnet18");
}

#[test]
fn resnet50_matches_torchvision() {
    check("resnet50");
}

#[test]
fn vgg16_bn_matches_torchvision() {
    check("vgg16_bn");
}

#[test]
fn mobilenets_match_torchvision() {
    check_at("mobilenet_v2", 64);
    check_at("mobilenet_v3_small", 64);
    check_at("mobilenet_v3_large", 64);
    // The zoo's small-image variant (stride-1 stem), against the same change made to torchvision's.
    check_at("cifar_mobilenet_v2:width_mult=0.5,in=1,classes=10", 28);
}

#[test]
fn efficientnet_resnext_wide_resnet_and_densenet_match_torchvision() {
    check_at("efficientnet_b0", 64);
    check_at("efficientnet_b3", 64);
    check_at("efficientnet_b5", 64);
    check_at("resnext50_32x4d", 64);
    check_at("densenet121", 64);
    check_at("regnet_y_400mf", 64);
    check_at("regnet_x_400mf", 64);
    check_at("convnext_tiny", 64);
    check_at("wide_resnet50_2", 64);
}
