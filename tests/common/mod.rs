//! Shared test helpers: running the Python oracles (cached) and comparing tensors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Tensor;

/// The project venv's python (set by scripts/env.sh, which ./run-tests sources).
pub fn python() -> PathBuf {
    let p = std::env::var_os("RELPRUNE_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("RELPRUNE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/relprune"));
        cache.join("venv/bin/python")
    });
    assert!(p.is_file(), "python oracle interpreter {} not found: run ./run-tests (it sets up the venv)", p.display());
    p
}

fn cache_root() -> PathBuf {
    std::env::var_os("RELPRUNE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/relprune"))
        .join("oracle-cache")
}

/// Runs `tests/oracles/<script>` with `args` and `--out DIR`, caching DIR by the script's
/// content and the arguments, so warm test runs do not recompute oracles.
pub fn oracle(script: &str, args: &[&str]) -> PathBuf {
    use sha2::{Digest, Sha256};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles").join(script);
    let code = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut h = Sha256::new();
    h.update(&code);
    for a in args {
        h.update(a.as_bytes());
        h.update([0]);
    }
    let key = hex::encode(h.finalize());
    let dir = cache_root().join(format!("{}-{}", script.trim_end_matches(".py"), &key[..16]));
    if dir.join(".done").is_file() {
        return dir;
    }
    let tmp = cache_root().join(format!(".tmp-{}-{}", &key[..16], std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let status = Command::new(python())
        .arg(&path)
        .args(args)
        .arg("--out")
        .arg(&tmp)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .status()
        .expect("run python oracle");
    assert!(status.success(), "oracle {script} {args:?} failed");
    std::fs::write(tmp.join(".done"), b"").unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another test process finished the same oracle first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir
}

/// Reads one named tensor from a safetensors file.
pub fn read_tensor(file: &Path, name: &str) -> Tensor {
    Tensor::read_safetensors(file)
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} not in {}", file.display()))
        .1
}

/// max |a − b| / max |b|: the error relative to the reference's scale.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let diff = (a - b).abs().max().double_value(&[]);
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    diff / scale
}
