//! Decode-once cache of an image folder's preprocessed pixels.
//!
//! An accuracy curve reads the same evaluation samples once per pruning rate, and an
//! optimisation study once per rate and trial. Decoding a JPEG and resizing it costs far more
//! than the model's forward pass on small models, so the samples a [`super::Subset`] is about to
//! stream (announced through [`super::Dataset::prepare`]) are decoded once, in parallel over all
//! cores, after resize and centre crop, and kept as bytes: C × H × W per image (the crop's
//! height and width, 3 channels or 1 for grey), one plane per channel (4× smaller than floats). Normalisation happens when a batch is built, with the
//! same float formula as fresh decoding, so a batch from the cache is bit-identical to one
//! decoded afresh.
//!
//! The unit is a *set* of images (the samples of one subset: an evaluation split or its first
//! `--eval-samples`, the reference samples), not the whole folder: the train split of ImageNet
//! holds 1.28 M images of which a task needs ten per class, and an evaluation of the first 2,000
//! samples should not decode 50,000.
//!
//! Where a set lives:
//! - in memory, while all sets of the process together stay under a budget (2 GiB by default;
//!   `RELPRUNE_IMAGE_CACHE_MB` or [`CacheOptions::memory_budget`]);
//! - otherwise in a file of the cache folder (`$RELPRUNE_CACHE/image-cache/`, default
//!   `~/.cache/relprune/image-cache/`), read per batch with positional reads
//!   (`FileExt::read_exact_at`). Not memory-mapped: a map needs `unsafe` and a new dependency,
//!   and a file truncated by another process under a map kills the process with SIGBUS; a
//!   positional read returns an error instead, costs one system call per batch run of
//!   consecutive samples, and the kernel's page cache keeps the hot pages in memory all the same.
//!
//! Every set is also written to that folder (a set in memory, best effort), so a second process
//! starts without decoding. A file is named by a SHA-256 over what it caches (the folder's
//! canonical path, the images' relative paths in order, the preprocessing that makes the bytes:
//! resize or none, crop height and width, channels; and the format version), followed
//! by a SHA-256 that adds each image's size and modification time: when an image changes, the
//! name changes and the set is decoded again; the outdated file is deleted then, as are files of
//! folders that no longer exist. Files are written temp → fsync → rename
//! ([`crate::util::with_atomic_path`]), so a killed process never leaves a partial file under
//! the final name; a file whose header or length does not match is ignored and rebuilt, and one
//! whose images do not match the checksum stored for each (verified when the file is opened) is
//! reported on stderr and rebuilt. Sets
//! written to file are decoded in chunks ([`CacheOptions::chunk_bytes`]) and written as they
//! go, so memory stays bounded however large the set. The folder can be deleted at any time.
//! The preprocessing's mean and std are not part of the key: they are applied when a batch is
//! built, so sets that differ only in them share the same bytes.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Bumped whenever the preprocessing or the file layout changes: old files are then ignored.
/// Version 2: the key and header hold the crop's height and width and the channels, and a
/// resize of 0 means none. Version 3: a checksum per image after the data, verified when the
/// file is opened.
const FORMAT_VERSION: u32 = 3;
/// Bytes of each image's checksum (the first bytes of its SHA-256).
const SUM_BYTES: usize = 8;
const MAGIC: &[u8; 8] = b"RPIMGCCH";
const EXTENSION: &str = "rpimg";
/// Data starts at a multiple of this (page-aligned reads).
const ALIGN: u64 = 4096;
/// Sets of at least this many images announce their decoding on stderr.
const ANNOUNCE_FROM: usize = 256;
/// Environment variable: MiB of decoded images kept in memory (all folders of a process).
pub const MEMORY_BUDGET_ENV: &str = "RELPRUNE_IMAGE_CACHE_MB";
/// Default memory budget: 2 GiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 2 << 30;
/// Environment variable: MiB of decoded images held at once while a set is written to file.
pub const CHUNK_ENV: &str = "RELPRUNE_IMAGE_CACHE_CHUNK_MB";
/// Default chunk: 64 MiB.
pub const DEFAULT_CHUNK: usize = 64 << 20;

/// Bytes of decoded images held in memory by all caches of this process.
static IN_MEMORY: AtomicU64 = AtomicU64::new(0);
/// One set is built at a time in a process: two folders over the same files (or two threads
/// asking for the same set) then find the first one's file instead of writing the same
/// temporary file at once.
static BUILDING: Mutex<()> = Mutex::new(());

/// How an image folder caches its decoded images.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// Decode the samples of a subset once and keep them (default). `false`: every batch is
    /// decoded afresh, as relprune did before the cache.
    pub enabled: bool,
    /// Bytes of decoded images this process keeps in memory, all folders together, before
    /// further sets go to file. `None`: `RELPRUNE_IMAGE_CACHE_MB` (MiB), else 2 GiB. `Some(0)`
    /// puts every set in a file.
    pub memory_budget: Option<u64>,
    /// Folder of the cache files. `None`: `$RELPRUNE_CACHE/image-cache`, else
    /// `~/.cache/relprune/image-cache`.
    pub dir: Option<PathBuf>,
    /// Decoded bytes held at once while a set is written to file (at least one image). `None`:
    /// `RELPRUNE_IMAGE_CACHE_CHUNK_MB` MiB, else 64 MiB.
    pub chunk_bytes: Option<usize>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions { enabled: true, memory_budget: None, dir: None, chunk_bytes: None }
    }
}

impl CacheOptions {
    /// No caching: every batch is decoded afresh.
    pub fn disabled() -> Self {
        CacheOptions { enabled: false, ..Default::default() }
    }
}

/// What a folder's cache holds and did (for reports and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Sets of images held (in memory or in a file).
    pub sets: usize,
    /// Bytes of the sets held in memory.
    pub in_memory_bytes: u64,
    /// Bytes of the sets read from file per batch.
    pub in_file_bytes: u64,
    /// Images decoded into the cache (not counting batches decoded afresh).
    pub decoded: usize,
    /// Sets found complete in the cache folder (no decoding).
    pub files_reused: usize,
    /// Cache files written.
    pub files_written: usize,
    /// Largest decode buffer held while writing a set to file, in bytes.
    pub peak_chunk_bytes: usize,
}

/// The images a cache decodes: the folder's files and preprocessing.
pub(crate) struct Source<'a> {
    pub root: &'a Path,
    pub files: &'a [PathBuf],
    pub preprocess: &'a super::preprocess::Preprocess,
}

impl Source<'_> {
    fn image_bytes(&self) -> usize {
        self.preprocess.image_bytes()
    }
    /// What of the preprocessing the cached bytes depend on: resize (0: none), crop height,
    /// crop width, channels. (Mean and std are applied when a batch is built.)
    fn decode_settings(&self) -> [u32; 4] {
        let p = self.preprocess;
        [p.resize.unwrap_or(0), p.crop.0, p.crop.1, p.channels.count() as u32]
    }
}

/// Preprocessed bytes of one set of images.
struct Set {
    /// Image index → position in `data`.
    positions: HashMap<usize, usize>,
    data: Data,
}

enum Data {
    Memory(Vec<u8>),
    File { file: File, offset: u64, path: PathBuf },
}

impl Drop for Set {
    fn drop(&mut self) {
        if let Data::Memory(v) = &self.data {
            IN_MEMORY.fetch_sub(v.len() as u64, Ordering::SeqCst);
        }
    }
}

/// Receives a sample's index and its preprocessed bytes (`None`: not cached).
pub(crate) type ImageVisitor<'a> = dyn FnMut(usize, Option<&[u8]>) -> Result<()> + 'a;

/// A folder's decoded sets.
pub(crate) struct Cache {
    opts: CacheOptions,
    budget: u64,
    /// Bytes decoded at once while a set is written to file.
    chunk: usize,
    sets: RwLock<Vec<Arc<Set>>>,
    decoded: AtomicUsize,
    files_reused: AtomicUsize,
    files_written: AtomicUsize,
    peak_chunk: AtomicUsize,
    /// A failure to write the cache folder is reported once per folder.
    warned: AtomicBool,
}

fn budget_from_env() -> Result<u64> {
    match std::env::var(MEMORY_BUDGET_ENV) {
        Err(_) => Ok(DEFAULT_MEMORY_BUDGET),
        Ok(s) => s.trim().parse::<u64>().map(|mb| mb.saturating_mul(1 << 20)).map_err(|_| {
            Error::invalid(format!(
                "{MEMORY_BUDGET_ENV}={s:?}: give the MiB of decoded images to keep in memory as a whole number \
                 (0 puts every image cache in a file)"
            ))
        }),
    }
}

fn chunk_from_env() -> Result<usize> {
    match std::env::var(CHUNK_ENV) {
        Err(_) => Ok(DEFAULT_CHUNK),
        Ok(s) => match s.trim().parse::<usize>() {
            Ok(mb @ 1..) => Ok(mb.saturating_mul(1 << 20)),
            _ => Err(Error::invalid(format!(
                "{CHUNK_ENV}={s:?}: give the MiB of decoded images to hold at once while a cache file is \
                 written, a whole number of at least 1"
            ))),
        },
    }
}

fn default_dir() -> PathBuf {
    crate::util::cache_dir().join("image-cache")
}

/// The expected header of a cache file: a fixed part of 64 bytes (magic, version, resize, crop
/// height, count, key, length of the root), the root, then the crop width and the channels.
struct Header {
    /// Resize, crop height, crop width, channels ([`Source::decode_settings`]).
    settings: [u32; 4],
    count: u64,
    key: [u8; 32],
    root: Vec<u8>,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let [resize, height, width, channels] = self.settings;
        let mut h = Vec::with_capacity(72 + self.root.len());
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        h.extend_from_slice(&resize.to_le_bytes());
        h.extend_from_slice(&height.to_le_bytes());
        h.extend_from_slice(&self.count.to_le_bytes());
        h.extend_from_slice(&self.key);
        h.extend_from_slice(&(self.root.len() as u32).to_le_bytes());
        h.extend_from_slice(&self.root);
        h.extend_from_slice(&width.to_le_bytes());
        h.extend_from_slice(&channels.to_le_bytes());
        h
    }
    fn data_offset(&self) -> u64 {
        (self.encode().len() as u64).div_ceil(ALIGN) * ALIGN
    }
}

/// The root folder recorded in a cache file's header, if it is one.
fn recorded_root(path: &Path) -> Option<PathBuf> {
    let f = File::open(path).ok()?;
    let mut fixed = [0u8; 64];
    f.read_exact_at(&mut fixed, 0).ok()?;
    if &fixed[..8] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(fixed[60..64].try_into().ok()?) as usize;
    if len > 1 << 16 {
        return None;
    }
    let mut root = vec![0u8; len];
    f.read_exact_at(&mut root, 64).ok()?;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(&root)))
}

/// The checksums of the images in `data` (`image_bytes` each), one after another.
fn checksums(data: &[u8], image_bytes: usize) -> Vec<u8> {
    data.chunks(image_bytes).flat_map(|img| Sha256::digest(img)[..SUM_BYTES].to_vec()).collect()
}

/// Opens `path` if it is a complete cache file with exactly this header whose every image
/// matches its checksum. A file with the right header and length whose bytes changed (a disk
/// error, a hand edit) is reported and not used: the caller decodes the set again and rewrites it.
/// The data is verified `chunk` bytes at a time (the cache's decode chunk: memory stays bounded).
fn open_valid(path: &Path, header: &Header, image_bytes: usize, chunk: usize) -> Option<File> {
    let f = File::open(path).ok()?;
    let expected = header.encode();
    let len = f.metadata().ok()?.len();
    let data = header.count.checked_mul(image_bytes as u64)?;
    let sums = header.count.checked_mul(SUM_BYTES as u64)?;
    if len != header.data_offset().checked_add(data)?.checked_add(sums)? {
        return None;
    }
    let mut found = vec![0u8; expected.len()];
    f.read_exact_at(&mut found, 0).ok()?;
    if found != expected {
        return None;
    }
    let mut stored = vec![0u8; sums as usize];
    f.read_exact_at(&mut stored, header.data_offset() + data).ok()?;
    let per_read = (chunk / image_bytes).max(1);
    let mut buf = Vec::new();
    for first in (0..header.count as usize).step_by(per_read) {
        let n = per_read.min(header.count as usize - first);
        buf.resize(n * image_bytes, 0);
        f.read_exact_at(&mut buf, header.data_offset() + (first * image_bytes) as u64).ok()?;
        let want = &stored[first * SUM_BYTES..(first + n) * SUM_BYTES];
        if let Some(k) =
            checksums(&buf, image_bytes).chunks(SUM_BYTES).zip(want.chunks(SUM_BYTES)).position(|(a, b)| a != b)
        {
            eprintln!(
                "warning: image cache: {} is damaged (image {} does not match its checksum); decoding the set again",
                path.display(),
                first + k
            );
            return None;
        }
    }
    Some(f)
}

/// Deletes what a cache folder no longer needs: older versions of the set named `stem`
/// (`identity-key`), files of folders that no longer exist, and temporary files of processes
/// that died while writing. Files that a running process still reads stay readable to it.
fn evict(dir: &Path, keep: &Path) {
    let Some(identity) = keep.file_stem().and_then(|s| s.to_str()).and_then(|s| s.split('-').next()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if path == keep {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            // with_atomic_path's temporary files: `.NAME.tmp-PID`.
            if let Some((_, pid)) = name.rsplit_once(".tmp-") {
                let alive = pid.parse::<u32>().is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
                if !alive && name.contains(&format!(".{EXTENSION}.tmp-")) {
                    let _ = std::fs::remove_file(&path);
                }
            }
            continue;
        }
        if path.extension().is_none_or(|x| x != EXTENSION) {
            continue;
        }
        let stale = name.starts_with(&format!("{identity}-"));
        let orphan = recorded_root(&path).is_some_and(|root| !root.exists());
        if stale || orphan {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Decodes the images `indices` of `src` into consecutive slots of `out`, on all cores. The
/// error of the first failing image (in order) is returned.
fn decode_parallel(src: &Source, indices: &[usize], out: &mut [u8]) -> Result<()> {
    let n = src.image_bytes();
    let workers = std::thread::available_parallelism().map(|w| w.get()).unwrap_or(1).min(indices.len()).max(1);
    let jobs = Mutex::new(indices.iter().zip(out.chunks_mut(n)).enumerate());
    let failed = AtomicBool::new(false);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let Some((k, (&i, slot))) = jobs.lock().unwrap_or_else(|e| e.into_inner()).next() else { break };
                if let Err(e) = super::preprocess::decode_into(&src.files[i], src.preprocess, slot) {
                    failed.store(true, Ordering::Relaxed);
                    errors.lock().unwrap_or_else(|e| e.into_inner()).push((k, e));
                }
            });
        }
    });
    match errors.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().min_by_key(|(k, _)| *k) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

impl Cache {
    pub fn new(opts: CacheOptions) -> Result<Self> {
        let budget = match opts.memory_budget {
            Some(b) => b,
            None if opts.enabled => budget_from_env()?,
            None => 0,
        };
        let chunk = match opts.chunk_bytes {
            Some(c) => c,
            None => chunk_from_env()?,
        };
        Ok(Cache {
            opts,
            budget,
            chunk,
            sets: RwLock::new(Vec::new()),
            decoded: AtomicUsize::new(0),
            files_reused: AtomicUsize::new(0),
            files_written: AtomicUsize::new(0),
            peak_chunk: AtomicUsize::new(0),
            warned: AtomicBool::new(false),
        })
    }

    pub fn stats(&self) -> CacheStats {
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        let mut st = CacheStats {
            sets: sets.len(),
            decoded: self.decoded.load(Ordering::SeqCst),
            files_reused: self.files_reused.load(Ordering::SeqCst),
            files_written: self.files_written.load(Ordering::SeqCst),
            peak_chunk_bytes: self.peak_chunk.load(Ordering::SeqCst),
            ..Default::default()
        };
        for s in sets.iter() {
            match &s.data {
                Data::Memory(v) => st.in_memory_bytes += v.len() as u64,
                Data::File { file, offset, .. } => {
                    // The images' bytes: without the header and the checksums after them.
                    let sums = (s.positions.len() * SUM_BYTES) as u64;
                    st.in_file_bytes +=
                        file.metadata().map(|m| m.len()).unwrap_or(0).saturating_sub(*offset).saturating_sub(sums)
                }
            }
        }
        st
    }

    /// Whether every one of `indices` is held by some set.
    fn covers(&self, indices: &[usize]) -> bool {
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        indices.iter().all(|i| sets.iter().any(|s| s.positions.contains_key(i)))
    }

    fn warn(&self, what: &str) {
        if !self.warned.swap(true, Ordering::SeqCst) {
            eprintln!("warning: image cache: {what}");
        }
    }

    /// Makes the images `indices` of `src` come from the cache: decodes them once (or finds
    /// them in the cache folder) unless they are held already.
    pub fn prepare(&self, src: &Source, indices: &[usize]) -> Result<()> {
        if !self.opts.enabled || indices.is_empty() {
            return Ok(());
        }
        if let Some(&bad) = indices.iter().find(|&&i| i >= src.files.len()) {
            crate::bail!("sample {bad} is out of range: {} holds {} images", src.root.display(), src.files.len());
        }
        if self.covers(indices) {
            return Ok(());
        }
        let _building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
        if self.covers(indices) {
            return Ok(());
        }
        // The set, in first-seen order: a subset's batches are then runs of consecutive bytes.
        let mut seen = std::collections::HashSet::with_capacity(indices.len());
        let order: Vec<usize> = indices.iter().copied().filter(|i| seen.insert(*i)).collect();
        let set = self.build(src, &order)?;
        if let Some(set) = set {
            self.sets.write().unwrap_or_else(|e| e.into_inner()).push(Arc::new(set));
        }
        Ok(())
    }

    /// File name (identity-key) and header of the set `order` of `src`.
    fn describe_set(&self, src: &Source, order: &[usize]) -> Result<(String, Header)> {
        let root = std::fs::canonicalize(src.root).unwrap_or_else(|_| src.root.to_path_buf());
        let mut identity = Sha256::new();
        identity.update(MAGIC);
        identity.update(FORMAT_VERSION.to_le_bytes());
        for v in src.decode_settings() {
            identity.update(v.to_le_bytes());
        }
        identity.update((root.as_os_str().len() as u64).to_le_bytes());
        identity.update(root.as_os_str().as_bytes());
        identity.update((order.len() as u64).to_le_bytes());
        let mut stamps = Vec::with_capacity(order.len() * 20);
        for &i in order {
            let path = &src.files[i];
            let rel = path.strip_prefix(src.root).unwrap_or(path).as_os_str().as_bytes();
            identity.update((rel.len() as u64).to_le_bytes());
            identity.update(rel);
            let meta = std::fs::metadata(path).map_err(Error::io("read", path))?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| (d.as_secs(), d.subsec_nanos()))
                .unwrap_or((0, 0));
            stamps.extend_from_slice(&meta.len().to_le_bytes());
            stamps.extend_from_slice(&mtime.0.to_le_bytes());
            stamps.extend_from_slice(&mtime.1.to_le_bytes());
        }
        let identity = identity.finalize();
        let mut key = Sha256::new();
        key.update(identity);
        key.update(&stamps);
        let key: [u8; 32] = key.finalize().into();
        let name = format!("{}-{}.{EXTENSION}", &hex::encode(identity)[..32], &hex::encode(key)[..32]);
        let header = Header {
            settings: src.decode_settings(),
            count: order.len() as u64,
            key,
            root: root.as_os_str().as_bytes().to_vec(),
        };
        Ok((name, header))
    }

    /// Builds the set `order`: from a complete cache file, else by decoding. `None` when it can
    /// only be decoded per batch (too large for memory and the cache folder is not writable).
    fn build(&self, src: &Source, order: &[usize]) -> Result<Option<Set>> {
        let image_bytes = src.image_bytes();
        let bytes = order.len() as u64 * image_bytes as u64;
        let (name, header) = self.describe_set(src, order)?;
        let dir = self.opts.dir.clone().unwrap_or_else(default_dir);
        let path = dir.join(&name);
        let fits = IN_MEMORY.load(Ordering::SeqCst).saturating_add(bytes) <= self.budget;
        let offset = header.data_offset();
        let data = match open_valid(&path, &header, image_bytes, self.chunk) {
            Some(file) => {
                self.files_reused.fetch_add(1, Ordering::SeqCst);
                if fits {
                    let mut v = vec![0u8; bytes as usize];
                    file.read_exact_at(&mut v, offset).map_err(Error::io("read", &path))?;
                    Data::Memory(v)
                } else {
                    Data::File { file, offset, path }
                }
            }
            None => {
                if order.len() >= ANNOUNCE_FROM {
                    let at = if fits { "in memory and " } else { "" };
                    eprintln!(
                        "decoding {} images of {} once (cached {at}at {})",
                        order.len(),
                        src.root.display(),
                        path.display()
                    );
                }
                if fits {
                    self.decode_to_memory(src, order, &header, &path)?
                } else {
                    match self.decode_to_file(src, order, &header, &path)? {
                        Some(d) => d,
                        None => return Ok(None),
                    }
                }
            }
        };
        if let Data::Memory(v) = &data {
            IN_MEMORY.fetch_add(v.len() as u64, Ordering::SeqCst);
        }
        let positions = order.iter().enumerate().map(|(k, &i)| (i, k)).collect();
        Ok(Some(Set { positions, data }))
    }

    /// Decodes the set into memory, then writes it to `path` too (best effort: a second process
    /// then starts without decoding).
    fn decode_to_memory(&self, src: &Source, order: &[usize], header: &Header, path: &Path) -> Result<Data> {
        let mut v = vec![0u8; order.len() * src.image_bytes()];
        decode_parallel(src, order, &mut v)?;
        self.decoded.fetch_add(order.len(), Ordering::SeqCst);
        let written = crate::util::with_atomic_path(path, |tmp| {
            let mut f = File::create(tmp).map_err(Error::io("create", tmp))?;
            let mut head = header.encode();
            head.resize(header.data_offset() as usize, 0);
            let sums = checksums(&v, src.image_bytes());
            f.write_all(&head)
                .and_then(|()| f.write_all(&v))
                .and_then(|()| f.write_all(&sums))
                .map_err(Error::io("write", tmp))
        });
        match written {
            Ok(()) => {
                self.files_written.fetch_add(1, Ordering::SeqCst);
                evict(path.parent().unwrap_or(Path::new(".")), path);
            }
            Err(e) => self.warn(&format!("{e}; keeping the decoded images in memory only")),
        }
        Ok(Data::Memory(v))
    }

    /// Decodes the set chunk by chunk into the file `path` (bounded memory). `None` when the
    /// file cannot be written: the images are then decoded per batch.
    fn decode_to_file(&self, src: &Source, order: &[usize], header: &Header, path: &Path) -> Result<Option<Data>> {
        let image_bytes = src.image_bytes();
        let offset = header.data_offset();
        let per_chunk = (self.chunk / image_bytes).max(1);
        let mut decode_error = None;
        let written = crate::util::with_atomic_path(path, |tmp| {
            let mut f = File::create(tmp).map_err(Error::io("create", tmp))?;
            let mut head = header.encode();
            head.resize(offset as usize, 0);
            f.write_all(&head).map_err(Error::io("write", tmp))?;
            let mut buf = vec![0u8; per_chunk.min(order.len()) * image_bytes];
            self.peak_chunk.fetch_max(buf.len(), Ordering::SeqCst);
            let mut sums = Vec::with_capacity(order.len() * SUM_BYTES);
            for chunk in order.chunks(per_chunk) {
                let out = &mut buf[..chunk.len() * image_bytes];
                if let Err(e) = decode_parallel(src, chunk, out) {
                    decode_error = Some(e);
                    return Err(Error::invalid("decoding failed"));
                }
                self.decoded.fetch_add(chunk.len(), Ordering::SeqCst);
                sums.extend(checksums(out, image_bytes));
                f.write_all(out).map_err(Error::io("write", tmp))?;
            }
            f.write_all(&sums).map_err(Error::io("write", tmp))
        });
        if let Some(e) = decode_error {
            return Err(e);
        }
        if let Err(e) = written {
            self.warn(&format!("{e}; decoding the images of {} per batch instead", src.root.display()));
            return Ok(None);
        }
        self.files_written.fetch_add(1, Ordering::SeqCst);
        evict(path.parent().unwrap_or(Path::new(".")), path);
        match open_valid(path, header, image_bytes, self.chunk) {
            Some(file) => Ok(Some(Data::File { file, offset, path: path.to_path_buf() })),
            None => {
                self.warn(&format!("{} did not read back; decoding per batch instead", path.display()));
                Ok(None)
            }
        }
    }

    /// Calls `each(i, bytes)` for every one of `indices`, in order, with the image's
    /// preprocessed bytes when the cache holds it and `None` otherwise.
    pub fn read(&self, src: &Source, indices: &[usize], each: &mut ImageVisitor) -> Result<()> {
        let n = src.image_bytes();
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner()).clone();
        let locate = |i: usize| sets.iter().find_map(|s| s.positions.get(&i).map(|&p| (s, p)));
        let mut scratch = Vec::new();
        let mut k = 0;
        while k < indices.len() {
            let Some((set, pos)) = locate(indices[k]) else {
                each(indices[k], None)?;
                k += 1;
                continue;
            };
            // A run of images stored one after another in the same set: one read.
            let mut run = 1;
            while k + run < indices.len()
                && locate(indices[k + run]).is_some_and(|(s, p)| Arc::ptr_eq(s, set) && p == pos + run)
            {
                run += 1;
            }
            let bytes: &[u8] = match &set.data {
                Data::Memory(v) => &v[pos * n..(pos + run) * n],
                Data::File { file, offset, path } => {
                    scratch.resize(run * n, 0);
                    file.read_exact_at(&mut scratch, offset + (pos * n) as u64).map_err(Error::io("read", path))?;
                    &scratch
                }
            };
            for (j, img) in bytes.chunks(n).enumerate() {
                each(indices[k + j], Some(img))?;
            }
            k += run;
        }
        Ok(())
    }
}
