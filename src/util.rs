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

/// Flushes a written file's data to the device, so a rename never exposes an empty or partial
/// file after a power loss.
fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(Error::io("flush to disk", path))
}

/// Flushes a directory's entries (the renames into it). Some file systems cannot sync a
/// directory; that is not an error.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
        let _ = d.sync_all();
    }
}

/// Runs `write` on a temporary sibling path, flushes it to disk, then renames it over `path`:
/// temp file → fsync → rename. A crash or a full disk leaves the old file (or none), never a
/// half-written one. Every file relprune writes goes through here.
pub fn with_atomic_path(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    }
    let tmp = tmp_sibling(path);
    let _partial = Partial::register(&tmp);
    let done = write(&tmp)
        .and_then(|()| sync_file(&tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(Error::io("move into place", path)));
    match done {
        Ok(()) => {
            sync_dir(dir.unwrap_or(Path::new(".")));
            Ok(())
        }
        // Whatever failed (the write, the flush, or the rename onto a folder or across devices),
        // the temporary file goes: a failed write leaves nothing behind.
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Paths this process is writing that a kill would leave half-done: temporary files and output
/// staging folders. Process-wide because a signal handler must find them; each is registered by
/// a [`Partial`] guard for as long as it exists.
static PARTIALS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Registers a partial path while alive (see [`remove_partials`]).
pub struct Partial(PathBuf);

impl Partial {
    /// Registers `path` until the guard is dropped.
    pub fn register(path: &Path) -> Self {
        if let Ok(mut p) = PARTIALS.lock() {
            p.push(path.to_path_buf());
        }
        Partial(path.to_path_buf())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Ok(mut p) = PARTIALS.lock() {
            if let Some(i) = p.iter().rposition(|x| *x == self.0) {
                p.remove(i);
            }
        }
    }
}

/// Removes every registered partial path (files and folders) and keeps the registry locked, so
/// no new one is registered before the process exits: what an interrupt handler calls before
/// exiting. Previous outputs are untouched (they are only replaced by a commit's renames).
pub fn remove_partials() -> impl Drop {
    let guard = PARTIALS.lock().unwrap_or_else(|e| e.into_inner());
    for p in guard.iter() {
        let _ = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
    }
    guard
}

/// The output folder of one command run, written as a unit.
///
/// Files are written into a hidden staging folder inside the target (`path()`), each of them
/// atomically; [`OutputDir::commit`] then moves them into the target. If the run fails before
/// that (an error, a full disk, Ctrl-C), dropping the guard deletes the staging folder and the
/// previous outputs stay untouched, so a folder never mixes files of two runs. Creating the
/// guard checks up front that the target is a writable folder, before any work starts.
pub struct OutputDir {
    target: PathBuf,
    staging: PathBuf,
    /// Registers the staging folder for removal on an interrupt.
    _partial: Partial,
    /// The target did not exist before: a run that fails removes it again if still empty.
    created: bool,
}

impl OutputDir {
    /// Prefix of staging folders (a killed run may leave one behind; the next run removes it).
    const STAGING_PREFIX: &'static str = ".relprune-partial-";

    /// Creates `target` if needed and checks that files can be written there.
    pub fn new(target: &Path) -> Result<Self> {
        if target.exists() && !target.is_dir() {
            crate::bail!("output folder {} is an existing file; give a folder path", target.display());
        }
        let created = !target.exists();
        std::fs::create_dir_all(target).map_err(Error::io("create output folder", target))?;
        Self::remove_dead_stagings(target);
        let staging = target.join(format!("{}{}", Self::STAGING_PREFIX, std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let _partial = Partial::register(&staging);
        let guard = OutputDir { target: target.to_path_buf(), staging, created, _partial };
        std::fs::create_dir(&guard.staging).map_err(Error::io("write into output folder", target))?;
        let probe = guard.staging.join(".probe");
        std::fs::write(&probe, b"relprune").map_err(Error::io("write into output folder", target))?;
        let _ = std::fs::remove_file(&probe);
        Ok(guard)
    }

    /// Staging folders of processes that no longer run (killed before they could clean up).
    fn remove_dead_stagings(target: &Path) {
        let Ok(entries) = std::fs::read_dir(target) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(Self::STAGING_PREFIX) {
                let alive = pid.parse::<u32>().is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
                if !alive || pid == std::process::id().to_string() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// Where this run writes its files (mirrors the target's layout).
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// The folder the files end up in.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Where `relative` will be once committed (for messages).
    pub fn final_path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.target.join(relative)
    }

    /// Moves every staged file into the target, replacing older versions. `outputs` names
    /// (relative paths) that this command may produce: one that this run did not produce is
    /// removed from the target, so an old file never sits beside a new report. Top-level JSON
    /// reports move last: a reader who sees the new report sees the files it describes.
    pub fn commit(mut self, outputs: &[&str]) -> Result<Vec<PathBuf>> {
        self.created = false;
        let mut files = Vec::new();
        collect_files(&self.staging, &mut files)?;
        let rel = |p: &PathBuf| p.strip_prefix(&self.staging).map(Path::to_path_buf).unwrap_or_default();
        let mut rels: Vec<PathBuf> = files.iter().map(rel).collect();
        rels.sort_by_key(|r| (r.components().count() == 1 && r.extension().is_some_and(|e| e == "json"), r.clone()));
        for name in outputs {
            let r = Path::new(name);
            if !rels.iter().any(|p| p == r || p.starts_with(r)) {
                let old = self.target.join(r);
                let removed = if old.is_dir() { std::fs::remove_dir_all(&old) } else { std::fs::remove_file(&old) };
                match removed {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io("remove outdated output", old)(e))
                    }
                    _ => {}
                }
            }
        }
        let mut written = Vec::new();
        for r in &rels {
            let dest = self.target.join(r);
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
            }
            std::fs::rename(self.staging.join(r), &dest).map_err(Error::io("move into place", &dest))?;
            sync_dir(dest.parent().unwrap_or(&self.target));
            written.push(dest);
        }
        Ok(written)
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
        if self.created {
            // Only succeeds when nothing else was put there (e.g. a study file).
            let _ = std::fs::remove_dir(&self.target);
        }
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let p = e.map_err(Error::io("list", dir))?.path();
        if p.is_dir() {
            collect_files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
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

/// Checks that `path` is a regular file (after links) and returns its length: a FIFO would
/// block a read forever and a device such as /dev/zero never ends, so neither is read as a file
/// the user named.
pub fn regular_file(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(Error::io("read", path))?;
    if !meta.file_type().is_file() {
        let what = if meta.is_dir() { "a folder" } else { "not a regular file (a FIFO, socket or device)" };
        crate::bail!("{} is {what}; give a file", path.display());
    }
    Ok(meta.len())
}

/// The most bytes a text file relprune reads may hold (JSON, YAML, rules, tokenizers, corpora):
/// far above any real one, and a bound on what a sparse or hostile file makes it allocate.
pub const MAX_TEXT_BYTES: u64 = 1 << 30;

/// `n` bytes for people: `512 B`, `3.2 MiB`, `64.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The memory the kernel says a new allocation can still get (`MemAvailable` of
/// /proc/meminfo), or None where that is unknown.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Refuses an allocation of `bytes` that a file asked for (`what` says which) when it exceeds
/// the memory available: libtorch and the allocator would otherwise abort the process.
pub fn check_affordable(bytes: u64, what: impl std::fmt::Display) -> Result<()> {
    match available_memory() {
        Some(free) if bytes > free => crate::bail!(
            "{what} needs {}, more than the {} of memory this machine has available",
            human_bytes(bytes),
            human_bytes(free)
        ),
        _ => Ok(()),
    }
}

/// Checks a file's length before it is read whole: at most `limit` bytes (`why` says why) and
/// no more than the memory available. A sparse file may claim terabytes it does not hold.
pub fn check_length(path: &Path, len: u64, limit: u64, why: &str) -> Result<()> {
    if len > limit {
        crate::bail!("{} is {}, more than {} ({why})", path.display(), human_bytes(len), human_bytes(limit));
    }
    check_affordable(len, format_args!("reading {}", path.display()))
}

/// The bytes of the regular file `path` (see [`regular_file`]), its length checked first by
/// [`check_length`] against `limit` (`why` says whose limit it is).
pub fn read_at_most(path: &Path, limit: u64, why: &str) -> Result<Vec<u8>> {
    let len = regular_file(path)?;
    check_length(path, len, limit, why)?;
    std::fs::read(path).map_err(Error::io("read", path))
}

/// The bytes of the regular file `path` (see [`regular_file`]), if the memory available holds
/// them.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    read_at_most(path, u64::MAX, "no limit but the memory available")
}

/// Why a text file is refused past [`MAX_TEXT_BYTES`].
const TEXT_LIMIT: &str = "the limit for a text file";

/// The text of the regular file `path` (see [`regular_file`]), at most [`MAX_TEXT_BYTES`].
pub fn read_text(path: &Path) -> Result<String> {
    let len = regular_file(path)?;
    check_length(path, len, MAX_TEXT_BYTES, TEXT_LIMIT)?;
    std::fs::read_to_string(path).map_err(Error::io("read", path))
}

/// Reads and parses a JSON file (a text file: at most [`MAX_TEXT_BYTES`]).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read_at_most(path, MAX_TEXT_BYTES, TEXT_LIMIT)?;
    serde_json::from_slice(&bytes).map_err(Error::json(path.display().to_string()))
}

/// Hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = read_file(path)?;
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

/// Mean and sample standard deviation (n − 1; 0 for fewer than two values).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// `FromStr` for plain enums through their serde names (snake_case; `-` is read as `_`, the
/// command line's spelling), so library types need no command-line parser of their own.
#[macro_export]
macro_rules! from_str_by_serde {
    ($($t:ty: $names:literal),* $(,)?) => {$(
        impl std::str::FromStr for $t {
            type Err = $crate::Error;
            fn from_str(s: &str) -> $crate::Result<Self> {
                serde_json::from_value(serde_json::Value::String(s.replace('-', "_")))
                    .map_err(|_| $crate::Error::invalid(format!("unknown value `{s}`; use {}", $names)))
            }
        }
    )*};
}

/// Splits `KEY=VALUE` items separated by `,` or `;` (a bare `KEY` has the value ""). A key given
/// twice is refused.
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in text.split([',', ';']).map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once('=').map_or((item, ""), |(k, v)| (k.trim(), v.trim()));
        if out.iter().any(|(seen, _)| seen == k) {
            crate::bail!("option `{k}` is given twice in `{text}`; give each once");
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// relprune's cache folder: `$RELPRUNE_CACHE`, else `~/.cache/relprune` (where setup puts the
/// venv, prepared models and data, and caches).
pub fn cache_dir() -> std::path::PathBuf {
    std::env::var_os("RELPRUNE_CACHE").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".cache/relprune")
    })
}

/// A folder setup prepares from the package registries: `$var`, else `rel` under
/// [`cache_dir`], accepted once setup marked it complete (`.complete`, written last). The error
/// names `what`, the folder and `hint` (how to get it).
pub fn prepared_dir(var: &str, rel: &str, what: String, hint: String) -> Result<std::path::PathBuf> {
    let dir = std::env::var_os(var).map(std::path::PathBuf::from).unwrap_or_else(|| cache_dir().join(rel));
    if dir.join(".complete").is_file() {
        Ok(dir)
    } else {
        Err(Error::DataNotFound { what, path: dir, hint })
    }
}
