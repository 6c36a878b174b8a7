//! One LRP vocabulary: a study trial, its rules file through `prune --criterion file:` and
//! `curve --rules`, and the library call rank alike (normalisation included, never applied
//! twice); and a curve's budget mark is the model `prune --target` ships with the same options.

mod common;

use relprune::attribution::normalize::RankingUse;
use relprune::attribution::CriterionSpec;
use relprune::experiment::{score, Task, TaskSpec};
use relprune::models::Architecture;
use relprune::optimize::{ModelTraits, SearchSpace};
use relprune::prune::components::{ComponentKind, ComponentSet};
use relprune::prune::ranking::{normalize_per_layer, units_per_layer, LayerNormalization, PruneOrder, Ranking};
use std::process::Command;

/// No coupled channels (no residual sums): a group is one filter, so the physical selection of
/// `prune` and the masked one of a curve remove the same units.
const VGG: &str = "cifar_vgg11_bn:width=4,hidden=16,in=1,size=8,classes=10";

fn relprune(args: &[&str]) -> serde_json::Value {
    let o =
        Command::new(env!("CARGO_BIN_EXE_relprune")).args(["--threads", "1", "--json"]).args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Conv widths of a model, in component order.
fn widths(model: &str) -> Vec<usize> {
    let g = relprune::models::load_model(model, None, 0).unwrap().graph;
    ComponentSet::find(&g, ComponentKind::Filters).unwrap().layers.iter().map(|l| l.count).collect()
}

#[test]
fn a_trial_its_rules_file_and_the_library_rank_alike() {
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 600, 200);
    let dir = tmp.path().to_str().unwrap();
    // A trial as the study's objective reads it, with a non-default normalisation and |Σ R|.
    let mut params = SearchSpace::default_for(ModelTraits::default()).default_params();
    for (k, v) in [("low_rule", "zplus"), ("mid_rule", "gamma"), ("normalize", "lamp")] {
        params.insert(k.into(), v.into());
    }
    params.insert("mid_gamma".into(), 0.3.into());
    params.insert("sum_first".into(), true.into());
    let (trial, _) = SearchSpace::criterion(&params).unwrap();
    assert_eq!(trial.normalization(), Some(LayerNormalization::Lamp));
    let rules = tmp.path().join("best-rules.yaml");
    trial.to_file(&rules).unwrap();
    let back = CriterionSpec::from_file(&rules).unwrap();
    assert_eq!(back, trial, "the rules file carries the whole trial");
    assert_eq!(CriterionSpec::from_name("lrp", Some(rules.to_str().unwrap()), 0).unwrap(), trial);

    // The library: the trial's scores (lamp applied by the criterion) at rate 0.3.
    let splits = relprune::data::fashion_mnist::load_splits(tmp.path()).unwrap();
    let task_spec = TaskSpec { refs_per_class: 2, eval_samples: 50, ..Default::default() };
    let task = Task::prepare(&splits, 10, &task_spec).unwrap();
    let g = Architecture::parse(VGG).unwrap().build(0).unwrap();
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let raw = score(&g, &comps, &task, &trial, 64).unwrap();
    let ranked = |s: &relprune::attribution::Scores| {
        let r = Ranking::new(s, PruneOrder::default());
        units_per_layer(&comps, r.selection(0.3).unwrap())
    };
    let library = ranked(&trial.ranking_scores(&raw, &comps, RankingUse::Deploy));
    // What the old `prune` did (its mean on top of the file's lamp) ranks differently, so the
    // comparisons below tell the two apart.
    let twice = ranked(&normalize_per_layer(&raw, &comps, LayerNormalization::Mean));
    assert_ne!(library, twice, "mean∘lamp must differ from lamp on this model");

    // `prune --criterion file:` saves a model whose widths lost exactly those units.
    let folder = tmp.path().join("vgg");
    g.save(&folder).unwrap();
    let common_args = ["--fmnist-dir", dir, "--refs-per-class", "2", "--eval-samples", "50"];
    let out = tmp.path().join("p");
    let criterion = format!("file:{}", rules.display());
    let r = relprune(
        &[
            &["prune", "--model", folder.to_str().unwrap(), "--criterion", &criterion, "--rate", "0.3"][..],
            &common_args,
            &["--latency-runs", "1", "--out", out.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(r["normalize"], "lamp", "the file's normalisation, not the filter default on top");
    let before = widths(folder.to_str().unwrap());
    let after = widths(out.join("model").to_str().unwrap());
    let removed: Vec<usize> = before.iter().zip(&after).map(|(b, a)| b - a).collect();
    assert_eq!(removed, library, "prune --criterion file: ranks as the library");

    // `curve --rules FILE` removes the same units at 0.3.
    let c =
        relprune(
            &[
                &[
                    "curve",
                    "--model",
                    folder.to_str().unwrap(),
                    "--criterion",
                    "lrp",
                    "--rules",
                    rules.to_str().unwrap(),
                ][..],
                &common_args,
                &["--rates", "0,0.3", "--out", tmp.path().join("c").to_str().unwrap()],
            ]
            .concat(),
        );
    let per_layer: Vec<usize> =
        serde_json::from_value(c["results"][0]["curve"]["pruned_per_layer"][1].clone()).unwrap();
    assert_eq!(per_layer, library, "curve --rules ranks as the library");

    // A second normalisation beside the file's is refused, not stacked.
    let o = Command::new(env!("CARGO_BIN_EXE_relprune"))
        .args(["--threads", "1", "prune", "--model", folder.to_str().unwrap(), "--criterion", &criterion])
        .args(["--normalize", "mean", "--rate", "0.3", "--out", tmp.path().join("q").to_str().unwrap()])
        .args(common_args)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("normalize: lamp"), "{e}");
    // `--rules` beside a rules file is refused, not ignored.
    let o = Command::new(env!("CARGO_BIN_EXE_relprune"))
        .args(["--threads", "1", "prune", "--model", folder.to_str().unwrap(), "--criterion", &criterion])
        .args(["--rules", "low=zplus", "--rate", "0.3", "--out", tmp.path().join("r").to_str().unwrap()])
        .args(common_args)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("give one"), "{e}");
}

#[test]
fn a_curves_budget_mark_is_the_model_prune_target_ships() {
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 600, 200);
    let dir = tmp.path().to_str().unwrap();
    let model = "cifar_resnet18:width=8,in=1,size=8,classes=10";
    let common_args = ["--model", model, "--fmnist-dir", dir, "--refs-per-class", "2", "--eval-samples", "80"];
    for extra in [&[][..], &["--normalize", "none"][..], &["--normalize", "lamp"][..]] {
        let c = relprune(
            &[
                &["compare", "--criteria", "lrp-epsilon", "--target", "macs=0.5", "--rates", "0,0.5"][..],
                &common_args,
                extra,
                &["--out", tmp.path().join("c").to_str().unwrap()],
            ]
            .concat(),
        );
        let mark = &c["results"][0]["marks"][0];
        let p = relprune(
            &[
                &["prune", "--criterion", "lrp-epsilon", "--target", "macs=0.5", "--latency-runs", "1"][..],
                &common_args,
                extra,
                &["--out", tmp.path().join("p").to_str().unwrap()],
            ]
            .concat(),
        );
        assert_eq!(mark["rate"], p["rate"], "{extra:?}: the mark's rate is prune's");
        assert_eq!(mark["accuracy"], p["after"]["accuracy"], "{extra:?}: the mark's accuracy is prune's");
        assert!((mark["macs_kept"].as_f64().unwrap() - p["macs_ratio"].as_f64().unwrap()).abs() < 1e-12, "{extra:?}");
    }
}
