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

/// `tests/oracles` of the clone under test. `cargo test` sets `CARGO_MANIFEST_DIR` at run time;
/// the compile-time value may name another clone, since builds are shared through the cache.
pub fn oracle_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("tests/oracles")
}

fn cache_root() -> PathBuf {
    std::env::var_os("RELPRUNE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/relprune"))
        .join("oracle-cache")
}

/// Runs `tests/oracles/<script>` with `args` and `--out DIR`, caching DIR by the script's
/// content, `models.py`, the arguments and the content of file arguments, so warm test runs do
/// not recompute oracles and changed weights do.
pub fn oracle(script: &str, args: &[&str]) -> PathBuf {
    use sha2::{Digest, Sha256};
    let path = oracle_dir().join(script);
    let code = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut h = Sha256::new();
    h.update(&code);
    // The scripts share the model definitions in models.py.
    h.update(std::fs::read(oracle_dir().join("models.py")).unwrap_or_default());
    for a in args {
        h.update(a.as_bytes());
        h.update([0]);
        // A file argument (weights) keys the cache by its content, not only its path.
        if let Ok(bytes) = std::fs::read(a) {
            h.update(&bytes);
        }
    }
    let key = hex::encode(h.finalize());
    let dir = cache_root().join(format!("{}-{}", script.trim_end_matches(".py"), &key[..16]));
    if dir.join(".done").is_file() {
        return dir;
    }
    // Unique per call: tests of one process may compute the same oracle at once.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = cache_root().join(format!(".tmp-{}-{}-{call}", &key[..16], std::process::id()));
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
    if dir.join(".done").is_file() {
        // Another test finished the same oracle first; keep its (equal) results in place.
        let _ = std::fs::remove_dir_all(&tmp);
        return dir;
    }
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

/// A private PostgreSQL server on loopback for the test's lifetime (Debian's binaries; as
/// root the server runs as the `postgres` user, since PostgreSQL refuses to run as root).
pub struct PgServer {
    pub url: String,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

fn run_pg(as_postgres: bool, cmd: &Path, args: &[&str]) -> std::process::Output {
    let mut c = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    };
    c.args(args).current_dir("/tmp").output().expect("run a PostgreSQL binary")
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (./run-tests installs the Debian package)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").is_file())
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let as_postgres = unsafe_is_root();
        let dir = std::env::temp_dir().join(format!("relprune-pg-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            assert!(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().unwrap().success());
        }
        let data = dir.join("data");
        let o = run_pg(
            as_postgres,
            &bin.join("initdb"),
            &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        assert!(o.status.success(), "initdb: {}", String::from_utf8_lossy(&o.stderr));
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let opts = format!("-p {port} -c listen_addresses=127.0.0.1 -k {}", dir.display());
        let log = dir.join("log.txt");
        let o = run_pg(
            as_postgres,
            &bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-o", &opts, "-l", log.to_str().unwrap(), "-w", "start"],
        );
        assert!(
            o.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        PgServer { url: format!("postgresql://postgres@127.0.0.1:{port}/postgres"), dir, bin, as_postgres }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = run_pg(
            self.as_postgres,
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
}

/// Writes a small synthetic Fashion-MNIST folder (8×8 images; class = position of a bright bar).
pub fn synthetic_fmnist(dir: &Path, n_train: usize, n_test: usize) {
    use relprune::data::idx::encode_idx;
    for (prefix, n, seed) in [("train", n_train, 1u64), ("t10k", n_test, 2)] {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as u8
        };
        let mut imgs = Vec::with_capacity(n * 64);
        for i in 0..n {
            let c = i % 10;
            for y in 0..8 {
                for x in 0..8 {
                    let base = next() / 3;
                    imgs.push(if (y * 8 + x) % 10 == c { base.saturating_add(160) } else { base });
                }
            }
        }
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), encode_idx(&[n, 8, 8], &imgs)).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), encode_idx(&[n], &labels)).unwrap();
    }
}

/// Runs `tests/oracles/<script>` with `args` (no caching: for inputs made by the test itself).
pub fn run_oracle(script: &str, args: &[&str]) {
    let path = oracle_dir().join(script);
    let out = Command::new(python()).arg(&path).args(args).output().expect("run python oracle");
    assert!(out.status.success(), "oracle {script} failed: {}", String::from_utf8_lossy(&out.stderr));
}
