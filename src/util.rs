//! Small helpers shared across the pipeline: atomic file writes, hashing, seeded RNG.

use crate::error::{Error, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A temporary sibling path of `path` (same directory, so a rename is atomic).
fn tmp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Runs `write` on a temporary sibling path, then renames it over `path`. A crash leaves the
/// old file (or none), never a half-written one.
pub fn with_atomic_path(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    }
    let tmp = tmp_sibling(path);
    match write(&tmp) {
        Ok(()) => std::fs::rename(&tmp, path).map_err(Error::io("move into place", path)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    with_atomic_path(path, |tmp| std::fs::write(tmp, bytes).map_err(Error::io("write", tmp)))
}

/// Writes `value` as pretty JSON to `path` atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(Error::json(path.display().to_string()))?;
    write_atomic(path, &bytes)
}

/// Reads and parses a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    serde_json::from_slice(&bytes).map_err(Error::json(path.display().to_string()))
}

/// Hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// The project's seeded random generator (ChaCha8: the same stream on every platform).
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Derives an independent seed for a named purpose from a base seed.
pub fn derive_seed(seed: u64, purpose: &str) -> u64 {
    let d = Sha256::digest(format!("{seed}/{purpose}").as_bytes());
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}
