//! Splits, reference samples, class restriction and data errors, on small synthetic IDX files.

use relprune::data::idx::encode_idx;
use relprune::data::{fashion_mnist, select_references, ClassSubset};
use relprune::Error;
use std::io::Write;
use std::path::Path;
use tch::{Kind, Tensor};

/// Writes a synthetic Fashion-MNIST folder: `n_train` / `n_test` 4×4 images, labels i mod 10;
/// each image's first pixel encodes its index so batches can be checked.
fn write_fmnist(dir: &Path, n_train: usize, n_test: usize, gzip: bool) {
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let imgs: Vec<u8> = (0..n)
            .flat_map(|i| {
                let mut v = vec![0u8; 16];
                v[0] = (i % 256) as u8;
                v
            })
            .collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        for (kind, bytes) in
            [("images-idx3", encode_idx(&[n, 4, 4], &imgs)), ("labels-idx1", encode_idx(&[n], &labels))]
        {
            let name = format!("{prefix}-{kind}-ubyte");
            if gzip {
                let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
                let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::default());
                e.write_all(&bytes).unwrap();
                e.finish().unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
}

#[test]
fn splits_are_disjoint_deterministic_and_sized() {
    let dir = tempfile::tempdir().unwrap();
    write_fmnist(dir.path(), 1200, 300, true);
    let a = fashion_mnist::load_splits(dir.path()).unwrap();
    let b = fashion_mnist::load_splits(dir.path()).unwrap();
    assert_eq!(a.val.len(), 100, "one twelfth of the train file (5,000 of 60,000 for the real data)");
    assert_eq!(a.train.len(), 1100);
    assert_eq!(a.test.len(), 300);
    assert_eq!(a.train.indices, b.train.indices);
    assert_eq!(a.val.indices, b.val.indices);
    let train: std::collections::HashSet<_> = a.train.indices.iter().collect();
    assert!(a.val.indices.iter().all(|i| !train.contains(i)), "train and validation overlap");
    let mut all: Vec<usize> = a.train.indices.iter().chain(&a.val.indices).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..1200).collect::<Vec<_>>(), "train ∪ val is the whole train file");
    // The validation split is a random draw, not the tail of the file.
    assert!(a.val.indices.iter().any(|&i| i < 600) && a.val.indices.iter().any(|&i| i >= 600));
}

#[test]
fn plain_and_gzip_files_give_the_same_batches() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_fmnist(d1.path(), 240, 20, true);
    write_fmnist(d2.path(), 240, 20, false);
    let a = fashion_mnist::load_splits(d1.path()).unwrap().test.full_batch().unwrap();
    let b = fashion_mnist::load_splits(d2.path()).unwrap().test.full_batch().unwrap();
    assert!(a.inputs[0].equal(&b.inputs[0]) && a.labels.equal(&b.labels));
    // Normalisation: pixel byte p becomes (p/255 − mean)/std.
    let px = a.inputs[0].double_value(&[5, 0, 0, 0]);
    assert!((px - (5.0 / 255.0 - fashion_mnist::MEAN) / fashion_mnist::STD).abs() < 1e-6);
    assert_eq!(a.inputs[0].size(), vec![20, 1, 4, 4]);
}

#[test]
fn references_are_k_per_class_and_seeded() {
    let dir = tempfile::tempdir().unwrap();
    write_fmnist(dir.path(), 1200, 100, true);
    let s = fashion_mnist::load_splits(dir.path()).unwrap();
    let r1 = select_references(&s.train, 7, 1, None).unwrap();
    let r2 = select_references(&s.train, 7, 1, None).unwrap();
    let r3 = select_references(&s.train, 7, 2, None).unwrap();
    assert_eq!(r1.indices, r2.indices, "same seed, same references");
    assert_ne!(r1.indices, r3.indices, "another seed draws other references");
    let mut counts = [0; 10];
    for i in 0..r1.len() {
        counts[r1.label(i) as usize] += 1;
    }
    assert_eq!(counts, [7; 10]);
    let train: std::collections::HashSet<_> = s.train.indices.iter().collect();
    assert!(r1.indices.iter().all(|i| train.contains(i)), "references come from the train split");
    // Restricted to a class subset.
    let c = ClassSubset::new(vec![2, 5, 9], 10).unwrap();
    let r = select_references(&s.train, 4, 0, Some(&c)).unwrap();
    assert_eq!(r.len(), 12);
    assert!((0..r.len()).all(|i| [2, 5, 9].contains(&r.label(i))));
}

#[test]
fn reference_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    write_fmnist(dir.path(), 240, 20, true);
    let s = fashion_mnist::load_splits(dir.path()).unwrap();
    let e = select_references(&s.train, 1000, 0, None).unwrap_err();
    assert!(e.to_string().contains("fewer than the 1000 references"), "{e}");
    let e = select_references(&s.train, 0, 0, None).unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let one_class = s.train.filter_labels(|l| l == 3);
    let e = select_references(&one_class, 2, 0, None).unwrap_err();
    assert!(e.to_string().contains("at least two classes"), "{e}");
}

#[test]
fn restriction_selects_logits_rather_than_zeroing() {
    // All kept logits negative: zeroing the dropped classes would make a dropped class win.
    let logits = Tensor::from_slice(&[-3.0f32, 0.5, -1.0, -2.0, 4.0]).reshape([1, 5]);
    let c = ClassSubset::new(vec![0, 2, 3], 5).unwrap();
    let restricted = c.restrict_logits(&logits).unwrap();
    assert_eq!(restricted.size(), vec![1, 3]);
    assert_eq!(restricted.argmax(-1, false).int64_value(&[0]), 1, "class 2 is the best of {{0, 2, 3}}");
    let zeroed = logits.copy() * Tensor::from_slice(&[1.0f32, 0.0, 1.0, 1.0, 0.0]).reshape([1, 5]);
    assert_ne!(zeroed.argmax(-1, false).int64_value(&[0]), 2, "zeroing picks a dropped class (this is what we avoid)");
    let labels = Tensor::from_slice(&[3i64, 0, 2]);
    let mapped = c.remap_labels(&labels).unwrap();
    assert_eq!(Vec::<i64>::try_from(&mapped).unwrap(), vec![2, 0, 1]);
    assert!(c.remap_labels(&Tensor::from_slice(&[4i64])).is_err());
}

#[test]
fn random_class_subsets_are_seeded_and_valid() {
    let a = ClassSubset::random(3, 10, 7).unwrap();
    assert_eq!(a, ClassSubset::random(3, 10, 7).unwrap());
    assert_eq!(a.classes().len(), 3);
    let draws: std::collections::HashSet<Vec<i64>> =
        (0..10).map(|s| ClassSubset::random(3, 10, s).unwrap().classes().to_vec()).collect();
    assert!(draws.len() > 5, "different seeds draw different subsets");
    assert!(ClassSubset::random(11, 10, 0).is_err());
    assert!(ClassSubset::new(vec![1, 12], 10).is_err());
    assert!(ClassSubset::new(vec![1], 10).is_err());
}

#[test]
fn missing_data_names_the_path_and_the_fix() {
    let e = fashion_mnist::load_splits(Path::new("/nonexistent/fmnist")).err().unwrap();
    let msg = e.to_string();
    assert!(msg.contains("/nonexistent/fmnist") && msg.contains("dataset-fashion-mnist"), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    write_fmnist(dir.path(), 240, 20, true);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let e = fashion_mnist::load_splits(dir.path()).err().unwrap();
    assert!(matches!(e, Error::DataNotFound { .. }) && e.to_string().contains("t10k-labels-idx1-ubyte"), "{e}");
}

#[test]
fn corrupt_data_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_fmnist(dir.path(), 240, 20, false);
    // Truncate the test images.
    let p = dir.path().join("t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let e = fashion_mnist::load_splits(dir.path()).err().unwrap();
    assert!(matches!(e, Error::CorruptData { .. }) && e.to_string().contains("t10k-images"), "{e}");
    // Not IDX at all.
    std::fs::write(&p, b"hello world").unwrap();
    assert!(fashion_mnist::load_splits(dir.path()).is_err());
    // Damaged gzip.
    let dir2 = tempfile::tempdir().unwrap();
    write_fmnist(dir2.path(), 240, 20, true);
    let g = dir2.path().join("train-labels-idx1-ubyte.gz");
    let mut gz = std::fs::read(&g).unwrap();
    gz.truncate(gz.len() / 2);
    std::fs::write(&g, gz).unwrap();
    let e = fashion_mnist::load_splits(dir2.path()).err().unwrap();
    assert!(e.to_string().contains("gzip"), "{e}");
    // Labels out of range.
    let dir3 = tempfile::tempdir().unwrap();
    write_fmnist(dir3.path(), 240, 20, false);
    std::fs::write(dir3.path().join("t10k-labels-idx1-ubyte"), encode_idx(&[20], &[11u8; 20])).unwrap();
    assert!(fashion_mnist::load_splits(dir3.path()).err().unwrap().to_string().contains("label 11"));
}

#[test]
fn image_folder_layout_and_preprocessing() {
    use relprune::data::image_folder::{load_splits, ImageFolder, IMAGENET_MEAN, IMAGENET_STD};
    use relprune::data::Dataset;
    let root = tempfile::tempdir().unwrap();
    for split in ["train", "val"] {
        for (ci, class) in ["cat", "dog"].iter().enumerate() {
            let d = root.path().join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..4 {
                // 300×400 solid images; class 0 red, class 1 blue.
                let c = if ci == 0 { [200u8, 10, 10] } else { [10u8, 10, 200] };
                image::RgbImage::from_pixel(300 + i, 400, image::Rgb(c)).save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let f = ImageFolder::open(&root.path().join("train"), 256, 224).unwrap();
    assert_eq!(f.class_names(), &["cat".to_string(), "dog".to_string()]);
    assert_eq!(f.labels(), &[0, 0, 0, 0, 1, 1, 1, 1]);
    let b = f.batch(&[0, 7]).unwrap();
    assert_eq!(b.inputs[0].size(), vec![2, 3, 224, 224]);
    let red = b.inputs[0].double_value(&[0, 0, 100, 100]);
    assert!((red - (200.0 / 255.0 - IMAGENET_MEAN[0] as f64) / IMAGENET_STD[0] as f64).abs() < 1e-4);
    let s = load_splits(root.path(), Default::default()).unwrap();
    assert_eq!((s.train.len(), s.val.len() + s.test.len()), (8, 8));
    let val: std::collections::HashSet<_> = s.val.indices.iter().collect();
    assert!(s.test.indices.iter().all(|i| !val.contains(i)), "val and test halves are disjoint");
    // With a test/ folder too: both evaluation splits are in a fixed random order, not class by
    // class, so a prefix (--eval-samples) covers both classes.
    for (ci, class) in ["cat", "dog"].iter().enumerate() {
        let d = root.path().join("test").join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..4 {
            let c = if ci == 0 { [200u8, 10, 10] } else { [10u8, 10, 200] };
            image::RgbImage::from_pixel(300, 400 + i, image::Rgb(c)).save(d.join(format!("{i}.png"))).unwrap();
        }
    }
    let s = load_splits(root.path(), Default::default()).unwrap();
    assert_eq!((s.val.len(), s.test.len()), (8, 8));
    for split in [&s.val, &s.test] {
        let labels: std::collections::HashSet<i64> = (0..3).map(|i| split.label(i)).collect();
        assert_eq!(labels.len(), 2, "the first 3 samples hold both classes: {:?}", split.indices);
    }
    let e = ImageFolder::open(&root.path().join("nope"), 256, 224).err().unwrap();
    assert!(e.to_string().contains("nope"));
    let bad = root.path().join("train/cat/broken.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let f = ImageFolder::open(&root.path().join("train"), 256, 224).unwrap();
    let idx = (0..f.len()).find(|&i| f.batch(&[i]).is_err()).expect("the broken file fails");
    assert!(f.batch(&[idx]).err().unwrap().to_string().contains("broken.png"));
    let _ = Kind::Float;
}

#[test]
fn real_fashion_mnist_prefixes_cover_every_class() {
    // Experiments evaluate on the first n samples of a split; the installed files are in random
    // class order, which the split keeps (see `data::Splits`).
    let s = fashion_mnist::load_splits(&fashion_mnist::resolve_dir(None)).expect("Fashion-MNIST (run ./run-tests)");
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (55_000, 5_000, 10_000));
    for split in [&s.val, &s.test] {
        let mut counts = [0usize; 10];
        for i in 0..500 {
            counts[split.label(i) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (25..=75).contains(&c)), "classes among the first 500: {counts:?}");
    }
}
