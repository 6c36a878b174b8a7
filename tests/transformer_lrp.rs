//! Transformer-specific LRP and masking properties: the z⁺ softmax rules against a brute-force
//! Jacobian, conservation on tiny bias-free transformers, head masks = zeroed attention
//! probabilities, exact restore.

use relprune::attribution::lrp::{relevances, GroupRules, LrpConfig, Rule, SoftmaxRule};
use relprune::graph::{Graph, Mode};
use relprune::models::Architecture;
use relprune::prune::components::{ComponentKind, ComponentSet};
use relprune::prune::masking::apply_mask;
use tch::{Kind, Tensor};

/// Brute force: c_ab = ∂s_b/∂x_a · x_a, keep positives, split R_b in proportion.
fn zplus_reference(x: &[f64], r: &[f64], bias: bool, eps: f64) -> Vec<f64> {
    let t = x.len();
    let m = x.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let z: f64 = e.iter().sum();
    let s: Vec<f64> = e.iter().map(|v| v / z).collect();
    let c = |a: usize, b: usize| s[b] * ((a == b) as i32 as f64 - s[a]) * x[a];
    let mut out = vec![0.0; t];
    for b in 0..t {
        let mut denom: f64 = (0..t).map(|a| c(a, b).max(0.0)).sum();
        if bias {
            let bb = s[b] - (0..t).map(|a| c(a, b)).sum::<f64>();
            denom += bb.max(0.0);
        }
        for (a, o) in out.iter_mut().enumerate() {
            *o += c(a, b).max(0.0) * r[b] / (denom + eps);
        }
    }
    out
}

#[test]
fn zplus_softmax_rules_match_a_brute_force_jacobian() {
    let x = [0.7, -1.2, 2.3, 0.0, -0.4, 1.1];
    let r = [0.3, -0.2, 1.5, 0.1, 0.05, -0.6];
    let xt = Tensor::from_slice(&x).reshape([1, 6]);
    let s = xt.softmax(-1, Kind::Double);
    let rt = Tensor::from_slice(&r).reshape([1, 6]);
    for (rule, bias) in [(SoftmaxRule::Zplus, false), (SoftmaxRule::ZplusBias, true)] {
        let got: Vec<f64> = Vec::try_from(rule.apply(&xt, &s, &rt, 1e-9).unwrap().unwrap().view([-1])).unwrap();
        let want = zplus_reference(&x, &r, bias, 1e-9);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{rule:?}: {got:?} vs {want:?}");
        }
    }
    // Without the bias, z⁺ conserves; with it, the bias keeps a share.
    let sum = |rule: SoftmaxRule| rule.apply(&xt, &s, &rt, 1e-12).unwrap().unwrap().sum(Kind::Double).double_value(&[]);
    assert!((sum(SoftmaxRule::Zplus) - r.iter().sum::<f64>()).abs() < 1e-9);
    assert!(SoftmaxRule::Cp.apply(&xt, &s, &rt, 1e-9).unwrap().is_none());
    // AttnLRP: x ⊙ (R − s ΣR).
    let a: Vec<f64> =
        Vec::try_from(SoftmaxRule::AttnLrp.apply(&xt, &s, &rt, 0.0).unwrap().unwrap().view([-1])).unwrap();
    let sv: Vec<f64> = Vec::try_from(s.view([-1])).unwrap();
    let rs: f64 = r.iter().sum();
    for i in 0..6 {
        assert!((a[i] - x[i] * (r[i] - sv[i] * rs)).abs() < 1e-12);
    }
}

/// A tiny ViT with every bias, LayerNorm shift and the position table set to zero, so that no
/// relevance is absorbed below the class token's insertion.
fn bias_free_vit() -> Graph {
    let mut g =
        Architecture::parse("vit:size=16,patch=4,layers=2,heads=4,dim=32,mlp=64,classes=5").unwrap().build(3).unwrap();
    g.set_kind(Kind::Double);
    tch::manual_seed(5);
    let keys: Vec<String> = g.params().keys().cloned().collect();
    for k in keys {
        let t = g.params().get(&k).unwrap();
        let v = if k.ends_with("bias") || k.contains("pos_embedding") {
            t.zeros_like()
        } else if k == "heads.head.weight" || k == "class_token" {
            t.randn_like() * 0.5
        } else {
            t.shallow_clone()
        };
        g.params_mut().insert(k, v);
    }
    g
}

fn sums(t: &Tensor) -> Vec<f64> {
    Vec::try_from(t.flatten(1, -1).sum_dim_intlist(1, false, Kind::Double)).unwrap()
}

#[test]
fn conservation_on_a_bias_free_vit() {
    // Cuts: after the class token (the token's own share is the parameter's and leaves there),
    // each block output, the final LayerNorm. CP and z⁺ (without virtual bias) conserve;
    // tolerance 1e-6 relative, from the 1e-12 stabilisers in float64.
    let g = bias_free_vit();
    let cuts: Vec<usize> = g
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.name == "encoder.pos_embedding" || n.name.ends_with("add_2") || n.name == "encoder.ln")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(cuts.len(), 4);
    let x = Tensor::randn([3, 3, 16, 16], (Kind::Double, tch::Device::Cpu));
    let labels = Tensor::from_slice(&[0i64, 2, 4]);
    for softmax in [SoftmaxRule::Cp, SoftmaxRule::Zplus] {
        let mut cfg = LrpConfig::new(GroupRules::all(Rule::Epsilon { epsilon: 1e-12 }));
        cfg.softmax = softmax;
        cfg.stabilizer = 1e-12;
        let mut keep = vec![false; g.nodes().len()];
        for &c in &cuts {
            keep[c] = true;
        }
        keep[g.output()] = true;
        let rel = relevances(&g, &[x.shallow_clone()], &labels, &cfg, &keep).unwrap();
        let total = sums(rel[g.output()].as_ref().unwrap());
        for &c in &cuts {
            for (a, b) in sums(rel[c].as_ref().unwrap()).iter().zip(&total) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "{softmax:?}: Σ R = {a} at `{}`, {b} at the output",
                    g.node(c).name
                );
            }
        }
    }
}

#[test]
fn head_mask_equals_zeroing_that_heads_attention_probabilities() {
    let mut g =
        Architecture::parse("vit:size=16,patch=4,layers=2,heads=4,dim=32,mlp=64,classes=5").unwrap().build(1).unwrap();
    // torchvision zero-initialises the classifier; give it weights so outputs differ.
    let w = g.params().get("heads.head.weight").unwrap().randn_like();
    g.params_mut().insert("heads.head.weight".into(), w);
    let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, tch::Device::Cpu));
    let heads = ComponentSet::find(&g, ComponentKind::Heads).unwrap();
    assert_eq!(heads.total, 8);
    let (layer, unit) = heads.locate(6); // layer 1, head 2
    let (node, dh) = (layer.node, layer.head_dim.unwrap());
    // Zeroing head 2's probabilities makes its slice of the attention output zero.
    let gated = tch::no_grad(|| {
        g.forward_with(&[x.shallow_clone()], Mode::Eval, &mut |id, y| {
            (id == node).then(|| {
                let y = y.copy();
                let _ = y.narrow(-1, unit as i64 * dh, dh).fill_(0.0);
                y
            })
        })
    })
    .unwrap();
    let before: Vec<(String, Tensor)> = g.params().iter().map(|(k, t)| (k.clone(), t.copy())).collect();
    let masked = {
        let guard = apply_mask(&mut g, &heads, &[6]).unwrap();
        tch::no_grad(|| guard.forward(&[x.shallow_clone()], Mode::Eval)).unwrap()
    };
    assert!(masked.allclose(&gated[g.output()], 1e-5, 1e-6, false));
    let plain = tch::no_grad(|| g.forward(&[x.shallow_clone()], Mode::Eval)).unwrap();
    assert!(!masked.allclose(&plain, 1e-5, 1e-6, false), "masking a head changes the output");
    assert!(before.iter().all(|(k, t)| g.params().get(k).unwrap().equal(t)), "restored bit for bit");
    // Neurons: the MLP's hidden units, masked by their rows of mlp.0.
    let neurons = ComponentSet::find(&g, ComponentKind::Neurons).unwrap();
    let names: Vec<&str> = neurons.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["encoder.layers.encoder_layer_0.mlp.0", "encoder.layers.encoder_layer_1.mlp.0"]);
    {
        let guard = apply_mask(&mut g, &neurons, &[3, 70]).unwrap();
        let outs = tch::no_grad(|| guard.forward_all(&[x.shallow_clone()], Mode::Eval)).unwrap();
        let (l, u) = neurons.locate(70);
        assert_eq!(outs[l.node].select(-1, u as i64).abs().max().double_value(&[]), 0.0);
    }
    assert!(before.iter().all(|(k, t)| g.params().get(k).unwrap().equal(t)));
}
