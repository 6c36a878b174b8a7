//! `prune` without `--criterion` chooses the criterion, normalisation and selection on the
//! validation split at the budget: the table lists every candidate, the winner is the best
//! finalist, its "reproduce" options prune the same model, and the reported split (test or
//! validation) never changes what is chosen.

mod common;

use serde_json::Value;
use std::path::Path;

/// `relprune prune` on the trained zoo ResNet at MACs 0.7, with `extra` options; its report.
fn prune(out: &Path, extra: &[&str]) -> Value {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
        .args(["--threads", "2", "--json", "prune", "--model", "fmnist-resnet18", "--target", "macs=0.7"])
        .args(["--eval-samples", "500", "--latency-runs", "1", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// (criterion, normalisation, selection, first-round accuracy) of every candidate.
fn rows(report: &Value) -> Vec<(String, String, String, f64)> {
    report["choice"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap().to_string();
            (s("criterion"), s("normalize"), s("selection"), c["first_accuracy"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn the_default_chooses_on_validation_and_its_choice_reproduces() {
    let tmp = tempfile::tempdir().unwrap();
    let auto = prune(&tmp.path().join("auto"), &[]);
    let choice = &auto["choice"];
    let candidates = choice["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 16, "4 criteria × 2 normalisations × 2 selections");
    let finalists: Vec<&Value> = candidates.iter().filter(|c| !c["final_accuracy"].is_null()).collect();
    assert_eq!(finalists.len(), 4);
    // The finalists are the four best of the first round; the winner is the best finalist.
    // Candidates whose removal equals an earlier one's are not measured again and never finalists.
    let mut first: Vec<f64> = candidates
        .iter()
        .filter(|c| c.get("same_as").is_none())
        .map(|c| c["first_accuracy"].as_f64().unwrap())
        .collect();
    first.sort_by(|a, b| b.total_cmp(a));
    assert!(finalists.iter().all(|c| c["first_accuracy"].as_f64().unwrap() >= first[3]));
    let winner = &candidates[choice["chosen"].as_u64().unwrap() as usize];
    let best = finalists.iter().map(|c| c["final_accuracy"].as_f64().unwrap()).fold(f64::MIN, f64::max);
    assert_eq!(winner["final_accuracy"].as_f64().unwrap(), best);
    assert_eq!(auto["selection"], winner["selection"]);
    assert_eq!(auto["normalize"], winner["normalize"]);
    assert!(auto["criterion"].as_str().unwrap().starts_with(winner["criterion"].as_str().unwrap()));
    assert!(auto["macs_ratio"].as_f64().unwrap() <= 0.7);

    // The winner's explicit options prune the same model.
    let options = [
        "--criterion",
        winner["criterion"].as_str().unwrap(),
        "--normalize",
        winner["normalize"].as_str().unwrap(),
        "--selection",
        winner["selection"].as_str().unwrap(),
    ];
    let given = prune(&tmp.path().join("given"), &options);
    assert!(given["choice"].is_null());
    for k in ["parameters", "macs", "accuracy"] {
        assert_eq!(given["after"][k], auto["after"][k], "{k}");
    }

    // Reporting on the validation split instead of test changes nothing in the choice; a fixed
    // normalisation leaves the candidates with it, measured as before.
    let val = prune(&tmp.path().join("val"), &["--split", "val", "--normalize", "mean"]);
    let mean: Vec<_> = rows(&auto).into_iter().filter(|r| r.1 == "mean").collect();
    assert_eq!(rows(&val), mean);
}

/// Without data there is no validation split to choose on: a clear error before any output. An
/// accuracy budget, searched on validation itself, keeps LRP-ε (as the option's help says).
#[test]
fn choosing_needs_data_and_an_accuracy_budget_keeps_lrp_epsilon() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
            .args(["--threads", "1", "--json", "prune", "--model", "cifar_resnet18:width=4,in=1,size=8,classes=10"])
            .args(["--refs-per-class", "2", "--eval-samples", "100", "--latency-runs", "0", "--out"])
            .arg(tmp.path().join("o"))
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--data", "none", "--rate", "0.2"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("validation split") && e.contains("--criterion"), "{e}");
    assert!(!tmp.path().join("o").exists());
    // A probe where nothing is chosen would be silently ignored: refused instead.
    let o = run(&["--data", "none", "--rate", "0.2", "--criterion", "weight", "--probe-steps", "3"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("--probe-steps applies where prune chooses"), "{e}");
    common::synthetic_fmnist(tmp.path(), 600, 100);
    let o = run(&["--fmnist-dir", tmp.path().to_str().unwrap(), "--max-drop", "50"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["criterion"], "lrp-epsilon");
    assert!(r["choice"].is_null());
}

/// `prune --optimize N` runs an N-trial study for the budget on validation, prunes with its
/// winner, and says which; the winner's rules file with the reported normalisation prunes the
/// same model, and a second run resumes the finished study instead of running it again.
#[test]
fn optimize_prunes_with_the_studys_winner_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 600, 100);
    let run = |out: &str, extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
            .args(["--threads", "1", "--json", "prune", "--model", "cifar_resnet18:width=4,in=1,size=8,classes=10"])
            .args(["--target", "macs=0.7", "--refs-per-class", "2", "--eval-samples", "100", "--latency-runs", "0"])
            .arg("--fmnist-dir")
            .arg(tmp.path())
            .arg("--out")
            .arg(tmp.path().join(out))
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let first = run("opt", &["--optimize", "3"]);
    let study = &first["study"];
    assert_eq!(study["trials"], 3);
    let rules = study["rules_file"].as_str().unwrap().to_string();
    assert!(rules.starts_with(tmp.path().join("opt").join("study").to_str().unwrap()), "{rules}");
    let again = run("opt", &["--optimize", "3"]);
    assert_eq!(again["study"]["trial"], study["trial"]);
    assert_eq!(again["after"]["accuracy"], first["after"]["accuracy"]);
    // Resumed, not run again: the stored study still holds its 3 trials.
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
        .args(["--json", "study", "show", "--study", study["study"].as_str().unwrap(), "--storage"])
        .arg(format!("sqlite:{}", tmp.path().join("opt").join("study").join("study.sqlite").display()))
        .output()
        .unwrap();
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["trials"].as_array().map(Vec::len), Some(3), "{shown}");
    // On a MACs budget the study searches the selection order too, and prune uses the winner's.
    let selection = study["selection"].as_str().expect("the study chose a selection order");
    assert_eq!(first["selection"], selection);
    let norm = first["normalize"].as_str().unwrap();
    let given = run("given", &["--criterion", &format!("file:{rules}"), "--normalize", norm, "--selection", selection]);
    for k in ["parameters", "macs", "accuracy"] {
        assert_eq!(given["after"][k], first["after"][k], "{k}");
    }
    // A selection the user fixes is not searched: every trial and the prune use it.
    let fixed = run("fixed", &["--optimize", "3", "--selection", "cost-aware"]);
    assert!(fixed["study"]["selection"].is_null(), "{}", fixed["study"]);
    assert_eq!(fixed["selection"], "cost_aware", "the report's JSON spelling");
    // A fixed order the model cannot take fails every trial: the error says why.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
        .args(["--threads", "1", "prune", "--model", "cifar_resnet18:width=4,in=1,size=8,classes=10"])
        .args(["--target", "macs=0.7", "--refs-per-class", "2", "--eval-samples", "100", "--latency-runs", "0"])
        .args(["--optimize", "2", "--selection", "layers", "--fmnist-dir"])
        .arg(tmp.path())
        .arg("--out")
        .arg(tmp.path().join("layers"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("the last failed with") && e.contains("keeps at least one channel"),
        "{e}"
    );
}

/// With fine-tuning, the finalists are fine-tuned a few steps before the final comparison and the
/// winner is the best of them after that probe; `--probe-steps 0` compares them as pruned.
#[test]
fn with_fine_tuning_the_finalists_are_compared_after_a_recovery_probe() {
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 600, 100);
    let run = |extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
            .args(["--threads", "1", "--json", "prune", "--model", "cifar_resnet18:width=4,in=1,size=8,classes=10"])
            .args(["--target", "macs=0.7", "--refs-per-class", "2", "--eval-samples", "100", "--latency-runs", "0"])
            .args(["--finetune", "1", "--ft-samples", "200", "--fmnist-dir"])
            .arg(tmp.path())
            .arg("--out")
            .arg(tmp.path().join("o"))
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let probed = run(&["--probe-steps", "3"]);
    let c = &probed["choice"];
    assert_eq!(c["probe_steps"], 3);
    let cands = c["candidates"].as_array().unwrap();
    let finalists: Vec<&Value> = cands.iter().filter(|k| !k["final_accuracy"].is_null()).collect();
    assert!(finalists.iter().all(|k| k["probe_accuracy"].is_f64()), "{c}");
    assert!(cands.iter().filter(|k| k["final_accuracy"].is_null()).all(|k| k.get("probe_accuracy").is_none()));
    let best = finalists.iter().map(|k| k["probe_accuracy"].as_f64().unwrap()).fold(f64::MIN, f64::max);
    assert_eq!(cands[c["chosen"].as_u64().unwrap() as usize]["probe_accuracy"].as_f64().unwrap(), best);
    assert!(!tmp.path().join("o").join("finetune-work").exists(), "probe checkpoints are removed");
    let plain = run(&["--probe-steps", "0"]);
    assert_eq!(plain["choice"]["probe_steps"], 0);
    assert!(plain["choice"]["candidates"].as_array().unwrap().iter().all(|k| k.get("probe_accuracy").is_none()));
}
