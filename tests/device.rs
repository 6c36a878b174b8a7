//! `--device`: every command reports where it ran, a missing GPU is refused before any work, and
//! where CUDA is present the curve, compare, prune and optimise paths run on it and agree with
//! the CPU. Without a GPU that last part prints that it skipped (on the terminal, past the test
//! harness's capture) and checks the CPU side only.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Output;

const MODEL: &str = "cifar_resnet18:width=4,in=1,size=8,classes=10";

fn relprune(data: &Path, device: &str, args: &[&str], out: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
        .args(["--threads", "1", "--json"])
        .args(args)
        .args(["--model", MODEL, "--device", device, "--fmnist-dir"])
        .arg(data)
        .args(["--refs-per-class", "1", "--eval-samples", "60"])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// What the four paths report on `device`: curve accuracies, compare A_PRs, the pruned model's
/// MACs ratio and accuracy, and the study's best validation value.
fn run_paths(data: &Path, device: &str, name: &str) -> Vec<f64> {
    let dir = data.join(name);
    let mut seen = Vec::new();
    let curve =
        json(&relprune(data, device, &["curve", "--criterion", "lrp-epsilon", "--rates", "0:0.4:0.2"], &dir.join("c")));
    assert_eq!(curve["header"]["device"], device_name(device), "{curve}");
    seen.extend(curve["results"][0]["curve"]["accuracies"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
    let cmp = json(&relprune(
        data,
        device,
        &["compare", "--criteria", "taylor,gradient", "--rates", "0:0.4:0.2"],
        &dir.join("k"),
    ));
    assert_eq!(cmp["header"]["device"], device_name(device));
    seen.extend(cmp["results"].as_array().unwrap().iter().map(|r| r["curve"]["summary"]["a_pr"].as_f64().unwrap()));
    let p = json(&relprune(
        data,
        device,
        &[
            "prune",
            "--criterion",
            "lrp-epsilon",
            "--target",
            "macs=0.6",
            "--latency-runs",
            "1",
            "--finetune",
            "1",
            "--ft-samples",
            "200",
        ],
        &dir.join("p"),
    ));
    assert_eq!(p["device"], device_name(device));
    seen.push(p["macs_ratio"].as_f64().unwrap());
    seen.push(p["after"]["accuracy"].as_f64().unwrap());
    let o = json(&relprune(
        data,
        device,
        &[
            "optimize",
            "--trials",
            "2",
            "--rates",
            "0:0.4:0.2",
            "--noise-draws",
            "0",
            "--report",
            "none",
            "--val-samples",
            "60",
        ],
        &dir.join("o"),
    ));
    seen.push(o["best"]["validation_a_pr"].as_f64().unwrap());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("o").join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["device"], device_name(device));
    seen
}

fn device_name(device: &str) -> &str {
    match device {
        "cuda" => "cuda:0",
        d => d,
    }
}

#[test]
fn every_path_runs_on_the_cpu_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 400, 100);
    let a = run_paths(tmp.path(), "cpu", "a");
    // `auto` on a machine without a GPU is the CPU, the same figures.
    if relprune::device::cuda_count() == 0 {
        let tmp2 = tempfile::tempdir().unwrap();
        common::synthetic_fmnist(tmp2.path(), 400, 100);
        let curve = json(&relprune(
            tmp2.path(),
            "auto",
            &["curve", "--criterion", "lrp-epsilon", "--rates", "0:0.4:0.2"],
            &tmp2.path().join("c"),
        ));
        assert_eq!(curve["header"]["device"], "cpu");
        let acc: Vec<f64> = curve["results"][0]["curve"]["accuracies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(acc, a[..acc.len()]);
    }
}

#[test]
fn a_missing_gpu_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 100, 20);
    let n = relprune::device::cuda_count();
    let missing = format!("cuda:{}", n + 1);
    for args in [&["curve"][..], &["prune", "--rate", "0.3"], &["optimize", "--trials", "1"], &["info"]] {
        let out = tmp.path().join("never");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"));
        cmd.args(args).args(["--model", MODEL, "--device", &missing]);
        if args[0] != "info" {
            cmd.arg("--fmnist-dir").arg(tmp.path()).arg("--out").arg(&out);
        }
        let o = cmd.output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(e.contains(&format!("--device {missing}")) && e.contains("CUDA device"), "{args:?}: {e}");
        assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
        assert!(!out.exists(), "{args:?} wrote output before refusing");
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_relprune"))
        .args(["info", "--model", MODEL, "--device", "tpu"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected cpu, cuda, cuda:N"));
}

/// The binary links libtorch's CUDA library whenever the libtorch it was built with has one (the
/// venv's wheel does), so a GPU machine needs no rebuild.
#[test]
fn the_binary_links_libtorchs_cuda_library_when_libtorch_has_one() {
    let lib = Path::new(env!("RELPRUNE_LIBTORCH_LIB")).join("libtorch_cuda.so");
    assert_eq!(relprune::device::cuda_linked(), lib.is_file(), "{}", lib.display());
}

#[test]
fn on_cuda_every_path_agrees_with_the_cpu() {
    if relprune::device::cuda_count() == 0 {
        // Past the harness's capture, so a run without a GPU shows that this was not checked.
        let _ = writeln!(
            std::io::stderr(),
            "device::on_cuda_every_path_agrees_with_the_cpu: SKIPPED, libtorch sees no CUDA device on this machine"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    common::synthetic_fmnist(tmp.path(), 400, 100);
    let cpu = run_paths(tmp.path(), "cpu", "cpu");
    let gpu = run_paths(tmp.path(), "cuda", "gpu");
    assert_eq!(cpu.len(), gpu.len());
    // Float kernels differ between devices (summation order, cuDNN's algorithm choice), so
    // rankings may swap near-ties: the figures agree to a few evaluation samples, not bit for bit.
    for (i, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        assert!((c - g).abs() <= 0.05, "figure {i}: cpu {c} vs cuda {g}\ncpu {cpu:?}\ngpu {gpu:?}");
    }
}
