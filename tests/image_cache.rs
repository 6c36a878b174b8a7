//! The decode-once image cache (src/data/image_cache.rs): batches bit-identical to fresh
//! decoding from memory and from file, invalidation when an image changes, damaged cache files
//! rebuilt, bounded memory while a large set is written, and the prefetching batch iterator.

use rand::RngExt;
use relprune::data::image_folder::{CacheOptions, ImageFolder, IMAGENET_MEAN, IMAGENET_STD};
use relprune::data::{Batch, Dataset, Subset};
use relprune::Result;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tch::Tensor;

/// The tests of this file run one at a time: the memory test counts the process's heap.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `per_class` random-noise images of `w`×`h` (PNG and JPEG alternating, every third one
/// in portrait) into each of `classes` class folders under `root`.
fn noise_folder(root: &Path, classes: usize, per_class: usize, w: u32, h: u32, seed: u64) {
    let mut rng = relprune::util::rng(seed);
    for c in 0..classes {
        let d = root.join(format!("class{c:03}"));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..per_class {
            let (w, h) = if i % 3 == 2 { (h, w) } else { (w, h) };
            let img = image::RgbImage::from_fn(w, h, |_, _| image::Rgb([rng.random(), rng.random(), rng.random()]));
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            img.save(d.join(format!("{i:04}.{ext}"))).unwrap();
        }
    }
}

/// Fresh decoding as relprune did it before the cache (a copy of the former
/// `ImageFolder::load`): the oracle that cached batches must match bit for bit.
fn reference_load(path: &Path, resize: u32, crop: u32) -> Vec<f32> {
    let img = image::open(path).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let (nw, nh) = if w <= h {
        (resize, (resize as u64 * h as u64 / w as u64) as u32)
    } else {
        ((resize as u64 * w as u64 / h as u64) as u32, resize)
    };
    let img = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
    let c = crop.min(nw).min(nh);
    let left = ((nw - c) as f64 / 2.0).round() as u32;
    let top = ((nh - c) as f64 / 2.0).round() as u32;
    let img = image::imageops::crop_imm(&img, left, top, c, c).to_image();
    let plane = (c * c) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = (px[ch] as f32 / 255.0 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch];
        }
    }
    out
}

fn reference_batch(f: &ImageFolder, indices: &[usize], resize: u32, crop: u32) -> Tensor {
    let data: Vec<f32> = indices.iter().flat_map(|&i| reference_load(&f.files()[i], resize, crop)).collect();
    Tensor::from_slice(&data).reshape([indices.len() as i64, 3, crop as i64, crop as i64])
}

fn open(root: &Path, cache_dir: &Path, budget: u64) -> Arc<ImageFolder> {
    let opts = CacheOptions { memory_budget: Some(budget), dir: Some(cache_dir.into()), ..Default::default() };
    Arc::new(ImageFolder::open(root, 32, 28).unwrap().with_cache(opts).unwrap())
}

/// Batches of `subset` (through the cache and the prefetching iterator), each checked against
/// the oracle and against `batch_uncached`.
fn check_batches(f: &Arc<ImageFolder>, subset: &Subset, size: usize) -> Vec<Tensor> {
    let mut out = Vec::new();
    let chunks: Vec<&[usize]> = subset.indices.chunks(size).collect();
    let batches: Vec<Batch> = subset.batches(size).collect::<Result<_>>().unwrap();
    assert_eq!(batches.len(), chunks.len());
    for (b, idx) in batches.iter().zip(chunks) {
        let x = &b.inputs[0];
        assert!(x.equal(&reference_batch(f, idx, 32, 28)), "cached batch {idx:?} differs from fresh decoding");
        let fresh = f.batch_uncached(idx).unwrap();
        assert!(x.equal(&fresh.inputs[0]) && b.labels.equal(&fresh.labels));
        out.push(x.shallow_clone());
    }
    out
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "rpimg")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn cached_batches_are_bit_identical_to_fresh_decoding_in_memory_and_in_file() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("val");
    noise_folder(&root, 3, 9, 64, 48, 1);
    for (budget, in_memory) in [(u64::MAX, true), (0, false)] {
        let cache = t.path().join(format!("cache-{in_memory}"));
        let f = open(&root, &cache, budget);
        let data: Arc<dyn Dataset> = f.clone();
        // An evaluation split: shuffled, and only its first 20 samples are used.
        let split = Subset { data: data.clone(), indices: relprune::data::permutation(27, 3) }.head(20);
        let first = check_batches(&f, &split, 6);
        let st = f.cache_stats();
        assert_eq!((st.sets, st.decoded, st.files_written, st.files_reused), (1, 20, 1, 0), "{st:?}");
        let set_bytes = 20 * 3 * 28 * 28;
        if in_memory {
            assert_eq!((st.in_memory_bytes, st.in_file_bytes), (set_bytes, 0));
        } else {
            assert_eq!((st.in_memory_bytes, st.in_file_bytes), (0, set_bytes));
        }
        // A second pass decodes nothing; batches mixing cached and other samples still match.
        let again = check_batches(&f, &split, 6);
        assert!(first.iter().zip(&again).all(|(a, b)| a.equal(b)));
        assert_eq!(f.cache_stats().decoded, 20);
        let outside: Vec<usize> = (0..27).filter(|i| !split.indices.contains(i)).collect();
        let mixed = [split.indices[0], outside[0], split.indices[5], outside[1]];
        assert!(f.batch(&mixed).unwrap().inputs[0].equal(&reference_batch(&f, &mixed, 32, 28)));
        // Another process (a new folder object) finds the file and decodes nothing.
        let g = open(&root, &cache, budget);
        let split_g = Subset { data: g.clone(), indices: split.indices.clone() };
        let from_file = check_batches(&g, &split_g, 7);
        let st = g.cache_stats();
        assert_eq!((st.decoded, st.files_reused, st.files_written), (0, 1, 0), "{st:?}");
        assert!(Tensor::cat(&first, 0).equal(&Tensor::cat(&from_file, 0)));
        assert_eq!(cache_files(&cache).len(), 1);
    }
    // Without the cache: the same batches, nothing written.
    let off = t.path().join("cache-off");
    let opts = CacheOptions { dir: Some(off.clone()), ..CacheOptions::disabled() };
    let f = Arc::new(ImageFolder::open(&root, 32, 28).unwrap().with_cache(opts).unwrap());
    check_batches(&f, &Subset::all(f.clone()), 8);
    assert_eq!(f.cache_stats().decoded, 0);
    assert!(cache_files(&off).is_empty());
}

#[test]
fn a_changed_image_invalidates_the_cache() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("val");
    noise_folder(&root, 2, 6, 64, 48, 2);
    let cache = t.path().join("cache");
    for budget in [u64::MAX, 0] {
        let f = open(&root, &cache, budget);
        let all = Subset::all(f.clone());
        let before = check_batches(&f, &all, 12);
        let old_files = cache_files(&cache);
        assert_eq!(old_files.len(), 1);
        // Rewrite one image with other pixels (same size: the file length may stay the same) and
        // a modification time a minute later.
        let target = f.files()[3].clone();
        let img = image::open(&target).unwrap().to_rgb8();
        let inverted = image::RgbImage::from_fn(img.width(), img.height(), |x, y| {
            let p = img.get_pixel(x, y);
            image::Rgb([255 - p[0], 255 - p[1], 255 - p[2]])
        });
        inverted.save(&target).unwrap();
        let later = std::fs::metadata(&target).unwrap().modified().unwrap() + std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(&target).unwrap().set_modified(later).unwrap();
        let g = open(&root, &cache, budget);
        let all_g = Subset::all(g.clone());
        let after = check_batches(&g, &all_g, 12);
        let st = g.cache_stats();
        assert_eq!((st.decoded, st.files_reused), (12, 0), "the changed folder is decoded again: {st:?}");
        assert!(!before[0].equal(&after[0]), "the batch holding the changed image differs");
        assert!(before[0].get(2).equal(&after[0].get(2)) && !before[0].get(3).equal(&after[0].get(3)));
        let new_files = cache_files(&cache);
        assert_eq!(new_files.len(), 1, "the outdated cache file is deleted: {new_files:?}");
        assert_ne!(new_files, old_files);
    }
}

#[test]
fn a_damaged_or_partial_cache_file_is_rebuilt_never_read() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("val");
    noise_folder(&root, 2, 5, 64, 48, 3);
    let cache = t.path().join("cache");
    let f = open(&root, &cache, 0);
    let good = check_batches(&f, &Subset::all(f.clone()), 10);
    let file = cache_files(&cache).pop().unwrap();
    let intact = std::fs::read(&file).unwrap();
    let len = intact.len();
    let mut rng = relprune::util::rng(9);
    let garbage: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    let mut wrong_key = intact.clone();
    wrong_key[30] ^= 1;
    let mut longer = intact.clone();
    longer.push(0);
    // Payload bytes changed under an intact header and length: caught by the per-image checksums
    // (10 images of 8 bytes each end the file; the data starts at the first 4 KiB boundary).
    let payload = 4096..len - 10 * 8;
    let mut one_byte = intact.clone();
    one_byte[payload.start + 777] ^= 0x10;
    let mut every_byte = intact.clone();
    every_byte[payload.clone()].iter_mut().for_each(|b| *b = b.wrapping_add(1));
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("header only", intact[..4096].to_vec()),
        ("cut mid-data (a kill mid-write)", intact[..len - 1000].to_vec()),
        ("one byte short", intact[..len - 1].to_vec()),
        ("one byte long", longer),
        ("garbage of the right length", garbage),
        ("another key in the header", wrong_key),
        ("one payload byte changed", one_byte),
        ("every payload byte changed", every_byte),
    ];
    for budget in [0, u64::MAX] {
        for (what, bytes) in &damaged {
            std::fs::write(&file, bytes).unwrap();
            let g = open(&root, &cache, budget);
            let again = check_batches(&g, &Subset::all(g.clone()), 10);
            let st = g.cache_stats();
            assert_eq!((st.decoded, st.files_reused, st.files_written), (10, 0, 1), "{what}: {st:?}");
            assert!(good[0].equal(&again[0]), "{what}");
            assert_eq!(std::fs::read(&file).unwrap(), intact, "{what}: rebuilt to the same bytes");
        }
    }
    // A temporary file of a writer that was killed (a PID above Linux's maximum) is never read
    // and is cleaned up by the next write.
    let leftover = cache.join(format!(".{}.tmp-4194305", file.file_name().unwrap().to_string_lossy()));
    std::fs::write(&leftover, &intact[..len / 2]).unwrap();
    std::fs::remove_file(&file).unwrap();
    let g = open(&root, &cache, 0);
    check_batches(&g, &Subset::all(g.clone()), 10);
    assert_eq!(g.cache_stats().decoded, 10);
    assert!(!leftover.exists() && file.exists());
}

/// Counts the bytes this test binary holds on the Rust heap, and their peak. The resident size
/// (VmRSS) was tried first and is too noisy for a bound: malloc arenas keep freed memory per
/// thread, so it depends on the core count and on what ran before. The image decoding and the
/// cache's buffers are Rust allocations; libtorch's own (the batches' float tensors) are not
/// counted, and are per batch.
struct Counting;

static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn note_alloc(n: usize) {
    use std::sync::atomic::Ordering::Relaxed;
    let now = HELD.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc(l) };
        if !p.is_null() {
            note_alloc(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc_zeroed(l) };
        if !p.is_null() {
            note_alloc(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(p, l) };
        HELD.fetch_sub(l.size(), std::sync::atomic::Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        let q = unsafe { std::alloc::System.realloc(p, l, new) };
        if !q.is_null() {
            HELD.fetch_sub(l.size(), std::sync::atomic::Ordering::Relaxed);
            note_alloc(new);
        }
        q
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Largest growth of the Rust heap over its size at the start while `work` runs.
fn peak_heap_growth(work: impl FnOnce()) -> u64 {
    use std::sync::atomic::Ordering::SeqCst;
    let base = HELD.load(SeqCst);
    PEAK.store(base, SeqCst);
    work();
    (PEAK.load(SeqCst).saturating_sub(base)) as u64
}

#[test]
fn memory_stays_flat_while_a_large_set_is_written_to_file() {
    let _s = serial();
    // 64×48 noise images upscaled to 298×224 and cropped to 224: 150 KB each decoded, so 800 of
    // them (118 MiB) held in memory would show; written to file through a 4 MiB decode buffer
    // they must not. Each decode thread holds one image's working set on top.
    const CHUNK: usize = 4 << 20;
    let cores = std::thread::available_parallelism().map(|w| w.get()).unwrap_or(1) as u64;
    let bound = CHUNK as u64 + (8 << 20) + cores * (2 << 20);
    let t = tempfile::tempdir().unwrap();
    let mut growth = Vec::new();
    for n in [200, 800] {
        let root = t.path().join(format!("val{n}"));
        noise_folder(&root, 4, n / 4, 64, 48, n as u64);
        let opts = CacheOptions {
            memory_budget: Some(0),
            dir: Some(t.path().join("cache")),
            chunk_bytes: Some(CHUNK),
            ..Default::default()
        };
        let f = Arc::new(ImageFolder::open(&root, 224, 224).unwrap().with_cache(opts).unwrap());
        let all = Subset::all(f.clone());
        let g = peak_heap_growth(|| {
            f.prepare(&all.indices).unwrap();
            // Reading it back batch by batch (8 × 600 KB of floats at a time) stays flat too.
            for b in all.batches(8) {
                b.unwrap();
            }
        });
        let st = f.cache_stats();
        assert_eq!(st.decoded, n);
        assert_eq!(st.in_file_bytes, n as u64 * 3 * 224 * 224);
        // The decode buffer: whole images that fit in CHUNK, whatever the set's size.
        assert_eq!(st.peak_chunk_bytes, CHUNK / (3 * 224 * 224) * 3 * 224 * 224, "{st:?}");
        growth.push(g);
    }
    eprintln!(
        "heap growth while caching 200 / 800 images to file on {cores} cores: {} / {} KiB (bound {} KiB)",
        growth[0] >> 10,
        growth[1] >> 10,
        bound >> 10
    );
    for (n, g) in [200, 800].iter().zip(&growth) {
        assert!(*g < bound, "{n} images: the heap grew by {} KiB", g >> 10);
    }
    // 600 more images (88 MiB decoded) must not show: at most one more image per thread.
    assert!(
        growth[1] < growth[0] + cores * (1 << 20),
        "200 → 800 images: heap growth went from {} to {} KiB",
        growth[0] >> 10,
        growth[1] >> 10
    );
    // The check can fail: the same 800 images kept in memory grow the resident size past it.
    let root = t.path().join("val800");
    let opts = CacheOptions { memory_budget: Some(u64::MAX), dir: Some(t.path().join("cache2")), ..Default::default() };
    let f = ImageFolder::open(&root, 224, 224).unwrap().with_cache(opts).unwrap();
    let indices: Vec<usize> = (0..f.len()).collect();
    let g = peak_heap_growth(|| f.prepare(&indices).unwrap());
    assert!(
        g >= 800 * 3 * 224 * 224,
        "in memory, 800 images (118 MiB) grow the heap by {} MiB, to file by {} MiB",
        g >> 20,
        growth[1] >> 20
    );
}

#[test]
fn a_broken_image_is_named_when_the_set_is_decoded() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("val");
    noise_folder(&root, 2, 4, 64, 48, 4);
    std::fs::write(root.join("class001/0002.png"), b"not a png").unwrap();
    for budget in [u64::MAX, 0] {
        let f = open(&root, &t.path().join("cache"), budget);
        let all = Subset::all(f.clone());
        let got: Vec<Result<Batch>> = all.batches(3).collect();
        assert_eq!(got.len(), 1, "the first error ends the batches");
        let e = got.into_iter().next().unwrap().err().unwrap();
        assert!(matches!(e, relprune::Error::CorruptData { .. }), "{e:?}");
        assert!(e.to_string().contains("0002.png"), "{e}");
        assert!(cache_files(&t.path().join("cache")).is_empty(), "nothing is cached from a failed decode");
        // The other samples still load one by one.
        assert!(f.batch(&[0, 1]).is_ok());
    }
}

/// A dataset that prefetches and panics on its third batch.
struct Panicky(Vec<i64>);

impl Dataset for Panicky {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn labels(&self) -> &[i64] {
        &self.0
    }
    fn class_names(&self) -> &[String] {
        &[]
    }
    fn batch(&self, indices: &[usize]) -> Result<Batch> {
        assert!(indices[0] < 4, "a bug while building a batch");
        let x = Tensor::from_slice(&indices.iter().map(|&i| i as f32).collect::<Vec<_>>());
        Ok(Batch {
            inputs: vec![x],
            labels: Tensor::from_slice(&indices.iter().map(|&i| self.0[i]).collect::<Vec<_>>()),
        })
    }
    fn prefetch(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "panicky".into()
    }
}

#[test]
fn prefetched_batches_keep_their_order_and_pass_on_a_panic() {
    let _s = serial();
    let all = Subset::all(Arc::new(Panicky(vec![0, 1, 0, 1, 0, 1])));
    // Taking the first batches and dropping the iterator stops the worker.
    let firsts: Vec<Vec<f32>> =
        all.batches(2).take(2).map(|b| Vec::<f32>::try_from(&b.unwrap().inputs[0]).unwrap()).collect();
    assert_eq!(firsts, vec![vec![0.0, 1.0], vec![2.0, 3.0]]);
    // A panic on the worker reaches the consumer instead of ending the batches early (which
    // would silently measure accuracy on fewer samples).
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| all.batches(2).count()));
    assert!(r.is_err(), "the worker's panic is passed on");
}

#[test]
fn an_unwritable_cache_folder_falls_back_to_memory_or_fresh_decoding() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("val");
    noise_folder(&root, 2, 4, 64, 48, 5);
    let blocker = t.path().join("a-file");
    std::fs::write(&blocker, b"").unwrap();
    for budget in [u64::MAX, 0] {
        let f = open(&root, &blocker.join("image-cache"), budget);
        check_batches(&f, &Subset::all(f.clone()), 3);
        let st = f.cache_stats();
        assert_eq!(st.files_written, 0);
        // Small enough: kept in memory all the same; otherwise decoded per batch.
        assert_eq!(st.sets, if budget == 0 { 0 } else { 1 }, "{st:?}");
    }
}
