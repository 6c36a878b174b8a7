//! Throughput of evaluation-style reads of an image folder with and without the decode-once
//! cache (benchmarks/scale/decode_once.sh).
//!
//! Usage: cargo run --release --example decode_once -- WORKDIR [CLASSES] [PER_CLASS] [PASSES] [BATCH]
//!
//! Generates `WORKDIR/data/val` if missing: CLASSES (default 100) class folders of PER_CLASS
//! (default 10) random-noise 500×375 JPEGs, a scaled-down ImageNet validation layout. Then reads
//! every batch of the split PASSES times (default 20: one pass per rate of an accuracy curve,
//! without a model) with the ImageNet preprocessing (resize 256, crop 224):
//! - uncached: every batch decoded afresh, as before the cache;
//! - cached in memory, and cached in a file (memory budget 0), each from an empty cache folder:
//!   the first pass decodes once on all cores, the others read the cache;
//! - a second process's view: a new folder object finding the cache file.
//!
//! Prints images/s for each, with the hardware and settings.

use relprune::data::image_folder::{CacheOptions, ImageFolder};
use relprune::data::Subset;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

fn generate(dir: &Path, classes: usize, per_class: usize) -> anyhow::Result<()> {
    use rand::RngExt;
    let mut rng = relprune::util::rng(0);
    for c in 0..classes {
        let d = dir.join(format!("n{c:08}"));
        std::fs::create_dir_all(&d)?;
        for i in 0..per_class {
            let img = image::RgbImage::from_fn(500, 375, |_, _| image::Rgb([rng.random(), rng.random(), rng.random()]));
            img.save(d.join(format!("ILSVRC2012_val_{:08}.JPEG", c * per_class + i)))?;
        }
    }
    Ok(())
}

/// Seconds for `passes` reads of every batch of `split`, and the first pass's seconds.
fn time_passes(split: &Subset, passes: usize, batch: usize) -> anyhow::Result<(f64, f64)> {
    let t = Instant::now();
    let mut first = 0.0;
    for p in 0..passes {
        for b in split.batches(batch) {
            std::hint::black_box(b?);
        }
        if p == 0 {
            first = t.elapsed().as_secs_f64();
        }
    }
    Ok((t.elapsed().as_secs_f64(), first))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let work = Path::new(args.get(1).map(String::as_str).unwrap_or("out/bench/decode-once")).to_path_buf();
    let arg = |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (classes, per_class, passes, batch) = (arg(2, 100), arg(3, 10), arg(4, 20), arg(5, 64));
    let val = work.join("data/val");
    if !val.is_dir() || std::fs::read_dir(&val)?.count() != classes {
        let _ = std::fs::remove_dir_all(&val);
        eprintln!("generating {classes} × {per_class} noise JPEGs (500×375) in {}", val.display());
        generate(&val, classes, per_class)?;
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("hardware: {cores} cores (available_parallelism), CPU {}", cpu_model());
    println!(
        "settings: {} images ({classes} classes × {per_class}, 500×375 noise JPEG; a scaled-down ImageNet val), \
         resize 256, crop 224, batch {batch}, {passes} passes, no model",
        classes * per_class
    );
    let cache_dir = work.join("cache");
    let open = |opts: CacheOptions| -> anyhow::Result<Arc<ImageFolder>> {
        Ok(Arc::new(ImageFolder::open(&val, 256, 224)?.with_cache(opts)?))
    };
    let report = |what: &str, n: usize, secs: f64, first: f64| {
        println!(
            "{what:<44} {:>8.1} images/s  ({} reads in {secs:.1} s; first pass {first:.1} s, later passes {:.1} images/s)",
            (n * passes) as f64 / secs,
            n * passes,
            if passes > 1 { (n * (passes - 1)) as f64 / (secs - first) } else { f64::NAN }
        );
    };
    let folder = open(CacheOptions::disabled())?;
    let n = folder.files().len();
    let (secs, first) = time_passes(&Subset::all(folder), passes, batch)?;
    report("uncached (decode every batch, as before)", n, secs, first);
    for (what, budget) in
        [("cached in memory (decode once, all cores)", u64::MAX), ("cached in file (memory budget 0)", 0)]
    {
        let _ = std::fs::remove_dir_all(&cache_dir);
        let opts = CacheOptions { memory_budget: Some(budget), dir: Some(cache_dir.clone()), ..Default::default() };
        let (secs, first) = time_passes(&Subset::all(open(opts.clone())?), passes, batch)?;
        report(what, n, secs, first);
        let (secs, first) = time_passes(&Subset::all(open(opts)?), passes, batch)?;
        report(
            &format!("  second process, cache file warm ({})", if budget == 0 { "file" } else { "memory" }),
            n,
            secs,
            first,
        );
    }
    Ok(())
}
