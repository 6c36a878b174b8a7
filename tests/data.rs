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

// ---------------------------------------------------------------------------------------------
// User data for user models: explicit image preprocessing (`--preprocess`) and tensor datasets
// (`--data tensors:DIR`).

mod common;

use relprune::data::image_folder::{load_splits_with, CacheOptions, FolderOptions, Preprocess};
use relprune::data::preprocess::Channels;
use relprune::data::{tensor_file, Dataset, Subset};

/// Writes `files` as `root/<class>/<name>`: (class, name, image).
fn write_images(root: &Path, files: &[(&str, &str, image::DynamicImage)]) {
    for (class, name, img) in files {
        let d = root.join(class);
        std::fs::create_dir_all(&d).unwrap();
        img.save(d.join(name)).unwrap();
    }
}

/// Random-noise images of several sizes (width × height), RGB and one grey PNG, in two classes.
/// Every size leaves an even margin around the crops the tests use, so that centre offsets do
/// not depend on how halves are rounded (torchvision rounds half to even).
fn noise_images(seed: u64) -> Vec<(&'static str, &'static str, image::DynamicImage)> {
    use rand::RngExt;
    let mut rng = relprune::util::rng(seed);
    let mut rgb = |w: u32, h: u32| {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |_, _| {
            image::Rgb([rng.random(), rng.random(), rng.random()])
        }))
    };
    let a = rgb(36, 40);
    let b = rgb(40, 30);
    let c = rgb(50, 50);
    let d = rgb(44, 36);
    let grey = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(40, 44, |x, y| {
        image::Luma([((x * 37 + y * 11) % 256) as u8])
    }));
    vec![("a", "0.png", a), ("a", "1.png", b), ("a", "2.png", grey), ("b", "0.png", c), ("b", "1.png", d)]
}

/// The whole folder as one batch, in file order.
fn all_inputs(f: &relprune::data::image_folder::ImageFolder) -> Tensor {
    let idx: Vec<usize> = (0..f.len()).collect();
    f.batch(&idx).unwrap().inputs[0].shallow_clone()
}

#[test]
fn preprocess_specs_parse_to_typed_settings() {
    let imagenet = Preprocess::imagenet();
    assert_eq!(Preprocess::parse("imagenet").unwrap(), imagenet);
    assert_eq!(imagenet.resize, Some(256));
    assert_eq!(imagenet.crop, (224, 224));
    assert_eq!(imagenet.mean, IMAGENET_MEAN_VEC.to_vec());
    assert_eq!(imagenet.std, IMAGENET_STD_VEC.to_vec());
    assert_eq!(imagenet.channels, Channels::Rgb);
    assert_eq!(imagenet.sample_shape(), [3, 224, 224]);
    let p = Preprocess::parse("resize=none, crop=28:32 ,mean=0.5,std=0.25,channels=gray").unwrap();
    assert_eq!(
        p,
        Preprocess { resize: None, crop: (28, 32), mean: vec![0.5], std: vec![0.25], channels: Channels::Grey }
    );
    assert_eq!(p.sample_shape(), [1, 28, 32]);
    // Keys not given keep the preset's values; the preset may lead.
    let q = Preprocess::parse("imagenet,crop=192,resize=200").unwrap();
    assert_eq!(q, Preprocess { resize: Some(200), crop: (192, 192), ..Preprocess::imagenet() });
    assert_eq!(Preprocess::parse("crop=192,resize=200").unwrap(), q);
    // The canonical form reads back.
    for spec in [&p, &q, &imagenet] {
        assert_eq!(&Preprocess::parse(&spec.to_string()).unwrap(), spec, "{spec}");
    }
    assert_eq!(imagenet.to_string(), "resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,channels=rgb");
    // A YAML file with the same keys, in either value syntax, gives the same settings.
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("pre.yaml");
    std::fs::write(&yaml, "resize: none\ncrop: [28, 32]\nmean: [0.5]\nstd: 0.25\nchannels: grey\n").unwrap();
    assert_eq!(Preprocess::parse(yaml.to_str().unwrap()).unwrap(), p);
    std::fs::write(&yaml, "resize: null\ncrop: \"28:32\"\nmean: \"0.5\"\nstd: [0.25]\nchannels: gray\n").unwrap();
    assert_eq!(Preprocess::from_yaml_file(&yaml).unwrap(), p);
    std::fs::write(&yaml, "crop: 192\nresize: 200\n").unwrap();
    assert_eq!(Preprocess::from_yaml_file(&yaml).unwrap(), q);
    std::fs::write(&yaml, "").unwrap();
    assert_eq!(Preprocess::from_yaml_file(&yaml).unwrap(), imagenet, "an empty file is the preset");
    // The README's example.
    std::fs::write(
        &yaml,
        "resize: 36            # pixels of the shorter side, or none\n\
         crop: 32              # or \"28:32\" (height:width)\n\
         mean: [0.4914, 0.4822, 0.4465]   # or 0.4914:0.4822:0.4465; one per channel\n\
         std: [0.2470, 0.2435, 0.2616]\n\
         channels: rgb         # or grey (1 channel)\n",
    )
    .unwrap();
    assert_eq!(
        Preprocess::from_yaml_file(&yaml).unwrap(),
        Preprocess::parse("resize=36,crop=32,mean=0.4914:0.4822:0.4465,std=0.2470:0.2435:0.2616").unwrap()
    );
}

const IMAGENET_MEAN_VEC: [f32; 3] = relprune::data::image_folder::IMAGENET_MEAN;
const IMAGENET_STD_VEC: [f32; 3] = relprune::data::image_folder::IMAGENET_STD;

#[test]
fn preprocess_errors_are_clear_and_come_first() {
    let cases: &[(&str, &[&str])] = &[
        ("size=3", &["unknown field `size`", "expected one of `resize`, `crop`, `mean`, `std`, `channels`"]),
        ("crop=224,crop=200", &["`crop` is given twice"]),
        ("mean=0.5:0.5", &["mean has 2 value(s) (0.5:0.5) but channels=rgb gives 3 channel(s)"]),
        ("channels=grey,mean=0.5,std=0.2:0.2:0.2", &["std has 3 value(s)", "channels=grey gives 1 channel(s)"]),
        ("channels=grey", &["channels=grey needs its own mean and std"]),
        ("std=0.2:0:0.2", &["std holds 0; every std must be positive"]),
        ("channels=grey,mean=0.5,std=1e-45", &["std holds 1e-45; a std below 1e-6 blows pixel values up"]),
        ("std=0.2:-1:0.2", &["std holds -1"]),
        ("mean=nan:0:0", &["mean holds NaN, which is not a finite number"]),
        ("crop=300", &["the crop 300:300 (height:width) is larger than the resize 256"]),
        ("resize=100,crop=90:120", &["the crop 90:120", "larger than the resize 100"]),
        ("resize=abc", &["resize: `abc` is neither a whole number of pixels nor `none`"]),
        ("resize=0", &["resize=0: give a side of 1 to 65536 pixels, or none"]),
        ("crop=0", &["crop=0:0: each side must be 1 to 65536 pixels"]),
        ("crop=1:2:3", &["crop: `1:2:3` is neither a size S nor HEIGHT:WIDTH"]),
        ("crop=-4", &["crop: `-4` is neither"]),
        ("mean=a:b:c", &["`a` in `a:b:c` is not a number"]),
        ("channels=bgr", &["unknown variant `bgr`", "`rgb`", "`grey`"]),
        ("crop=192,imagenet", &["the preset `imagenet` must come first"]),
        ("cifar", &["`cifar` is neither a preset (imagenet), a key=value pair", "nor an existing YAML file"]),
        ("", &["the spec is empty"]),
    ];
    for (spec, wanted) in cases {
        let e = Preprocess::parse(spec).expect_err(spec).to_string();
        assert!(e.starts_with(&format!("image preprocessing `{spec}`")), "{spec}: {e}");
        for w in *wanted {
            assert!(e.contains(w), "{spec}: `{w}` not in: {e}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let e = Preprocess::parse(&dir.path().join("pre.yaml").to_string_lossy()).unwrap_err().to_string();
    assert!(e.contains("preprocessing file not found") && e.contains("pre.yaml"), "{e}");
    let yaml = dir.path().join("pre.yaml");
    std::fs::write(&yaml, "crop: 32\nresise: 36\n").unwrap();
    let e = Preprocess::parse(yaml.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("pre.yaml") && e.contains("unknown field `resise`"), "{e}");
    std::fs::write(&yaml, "crop: 32\nresize: 36\nmean: [0.5, 0.5]\n").unwrap();
    let e = Preprocess::parse(yaml.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("pre.yaml") && e.contains("mean has 2 value(s)"), "{e}");
    std::fs::write(&yaml, "crop: [32]\n").unwrap();
    let e = Preprocess::parse(yaml.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("crop: a list must hold [HEIGHT, WIDTH], got 1 values"), "{e}");
    // A preprocessing built by hand is validated before the folder is read: the error is about
    // it, not about the missing folder.
    let bad = Preprocess { crop: (300, 300), ..Preprocess::imagenet() };
    let e = load_splits_with(Path::new("/nonexistent/images"), FolderOptions::default(), &bad).err().unwrap();
    assert!(e.to_string().contains("larger than the resize 256"), "{e}");
}

#[test]
fn custom_preprocessing_equals_torchvision() {
    use relprune::data::image_folder::ImageFolder;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("train");
    write_images(&root, &noise_images(5));
    let specs = [
        "resize=none,crop=28:32,mean=0.5:0.25:0.125,std=0.25:0.5:2,channels=rgb",
        "resize=none,crop=28:32,mean=0.5,std=0.25,channels=grey",
        "resize=20,crop=16:18,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,channels=rgb",
        "resize=20,crop=16:18,mean=0.5,std=0.25,channels=grey",
    ];
    let out = t.path().join("oracle");
    let mut args = vec!["--root".to_string(), root.to_string_lossy().into_owned()];
    for s in specs {
        args.extend(["--spec".to_string(), s.to_string()]);
    }
    args.extend(["--out".to_string(), out.to_string_lossy().into_owned()]);
    common::run_oracle("preprocess_torchvision.py", &args.iter().map(String::as_str).collect::<Vec<_>>());
    for (k, spec) in specs.iter().enumerate() {
        let p = Preprocess::parse(spec).unwrap();
        assert_eq!(&p.to_string(), spec, "the oracle reads the canonical form");
        let f = ImageFolder::open_with(&root, &p, None, FolderOptions::default())
            .unwrap()
            .with_cache(CacheOptions::disabled())
            .unwrap();
        let ours = all_inputs(&f);
        let theirs = common::read_tensor(&out.join(format!("{k}.safetensors")), "x");
        let [c, h, w] = p.sample_shape();
        assert_eq!(ours.size(), vec![5, c, h, w], "{spec}");
        assert_eq!(ours.size(), theirs.size(), "{spec}");
        if p.resize.is_none() {
            // Channel conversion, crop, scaling and normalisation: the same f32 arithmetic.
            assert!(ours.equal(&theirs), "{spec}: max diff {}", (&ours - &theirs).abs().max().double_value(&[]));
        } else {
            // The image crate's triangle filter and PIL's antialiased bilinear filter round
            // differently: at most one grey level apart on noise (a third of the values are).
            let std = Tensor::from_slice(&p.std).reshape([1, c, 1, 1]);
            let levels = ((&ours - &theirs) * std * 255.0).abs();
            let max = levels.max().double_value(&[]);
            let mean = levels.mean(Kind::Float).double_value(&[]);
            assert!(max <= 1.0 + 1e-3 && mean < 0.5, "{spec}: {max} grey levels at most, {mean} on average");
        }
    }
}

#[test]
fn grey_preprocessing_gives_one_channel_of_pil_luminance() {
    use relprune::data::image_folder::ImageFolder;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("train");
    // An RGB image of 4 colours in quadrants and a grey image; both 6 × 4 (w × h).
    let colours = [[255u8, 0, 0], [0, 255, 0], [0, 0, 255], [200, 100, 50]];
    let rgb = image::RgbImage::from_fn(6, 4, |x, y| image::Rgb(colours[(y / 2 * 2 + x / 3) as usize]));
    let grey = image::GrayImage::from_fn(6, 4, |x, y| image::Luma([(x * 40 + y) as u8]));
    write_images(
        &root,
        &[
            ("a", "rgb.png", image::DynamicImage::ImageRgb8(rgb)),
            ("b", "grey.png", image::DynamicImage::ImageLuma8(grey)),
        ],
    );
    let p = Preprocess::parse("resize=none,crop=4:6,mean=0.25,std=0.5,channels=grey").unwrap();
    let f = ImageFolder::open_with(&root, &p, None, FolderOptions::default()).unwrap();
    let x = all_inputs(&f);
    assert_eq!(x.size(), vec![2, 1, 4, 6]);
    let norm = |px: u8| (px as f32 / 255.0 - 0.25) / 0.5;
    // PIL's convert("L"): (19595 R + 38470 G + 7471 B + 32768) >> 16: red 76, green 150, blue
    // 29, (200, 100, 50) 124.
    let luma = [76u8, 150, 29, 124];
    for y in 0..4 {
        for xx in 0..6 {
            let q = (y / 2 * 2 + xx / 3) as usize;
            assert_eq!(x.double_value(&[0, 0, y, xx]) as f32, norm(luma[q]), "rgb pixel ({xx}, {y})");
            assert_eq!(x.double_value(&[1, 0, y, xx]) as f32, norm((xx * 40 + y) as u8), "grey pixel ({xx}, {y})");
        }
    }
    // The same folder in RGB: 3 channels, a grey image replicated; an H × W crop.
    let p = Preprocess::parse("resize=none,crop=2:4,mean=0:0.5:1,std=1:2:4").unwrap();
    let f = ImageFolder::open_with(&root, &p, None, FolderOptions::default()).unwrap();
    let x = all_inputs(&f);
    assert_eq!(x.size(), vec![2, 3, 2, 4]);
    let (mean, std) = ([0f32, 0.5, 1.0], [1f32, 2.0, 4.0]);
    for ch in 0..3 {
        for y in 0..2i64 {
            for xx in 0..4i64 {
                // Centre crop of 2 × 4 from 4 × 6: rows 1..3, columns 1..5.
                let (sy, sx) = (y + 1, xx + 1);
                let rgb_px = colours[(sy / 2 * 2 + sx / 3) as usize][ch];
                let want = (rgb_px as f32 / 255.0 - mean[ch]) / std[ch];
                assert_eq!(x.double_value(&[0, ch as i64, y, xx]) as f32, want);
                let want = ((sx * 40 + sy) as u8 as f32 / 255.0 - mean[ch]) / std[ch];
                assert_eq!(x.double_value(&[1, ch as i64, y, xx]) as f32, want);
            }
        }
    }
}

/// ImageNet preprocessing as relprune did it before `--preprocess` (a copy of the former
/// `decode_into` and normalisation): the default must stay bit-identical to it.
fn former_imagenet(path: &Path) -> Vec<f32> {
    let img = image::open(path).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let (resize, crop) = (256u32, 224u32);
    let (nw, nh) = if w <= h {
        (resize, (resize as u64 * h as u64 / w as u64) as u32)
    } else {
        ((resize as u64 * w as u64 / h as u64) as u32, resize)
    };
    let img = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
    let left = ((nw - crop) as f64 / 2.0).round() as u32;
    let top = ((nh - crop) as f64 / 2.0).round() as u32;
    let img = image::imageops::crop_imm(&img, left, top, crop, crop).to_image();
    let plane = (crop * crop) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = (px[ch] as f32 / 255.0 - IMAGENET_MEAN_VEC[ch]) / IMAGENET_STD_VEC[ch];
        }
    }
    out
}

#[test]
fn default_preprocessing_stays_bit_identical() {
    let t = tempfile::tempdir().unwrap();
    let mut images = noise_images(6);
    // A size whose centre offset is a half (rounded away from zero, as before).
    let odd = image::RgbImage::from_fn(300, 257, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 7]));
    images.push(("b", "2.png", image::DynamicImage::ImageRgb8(odd)));
    for split in ["train", "val"] {
        write_images(&t.path().join(split), &images);
    }
    let default = image_folder_load(t.path(), None);
    let train = default.train.data.clone();
    let files: Vec<std::path::PathBuf> = (0..train.len())
        .map(|i| {
            let class = train.class_names()[train.labels()[i] as usize].clone();
            let names: Vec<&str> = images.iter().filter(|(c, _, _)| *c == class).map(|(_, n, _)| *n).collect();
            let k = (0..i).filter(|&j| train.labels()[j] == train.labels()[i]).count();
            t.path().join("train").join(&class).join(names[k])
        })
        .collect();
    let want: Vec<f32> = files.iter().flat_map(|p| former_imagenet(p)).collect();
    let want = Tensor::from_slice(&want).reshape([files.len() as i64, 3, 224, 224]);
    let got = default.train.full_batch().unwrap().inputs[0].shallow_clone();
    assert!(got.equal(&want), "the default preprocessing changed");
    for spec in
        ["imagenet", "resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,channels=rgb", "crop=224"]
    {
        let s = image_folder_load(t.path(), Some(spec));
        assert!(s.train.full_batch().unwrap().inputs[0].equal(&want), "{spec}");
        assert_eq!(s.train.data.describe(), train.describe(), "{spec}: the default is described as before");
    }
}

fn image_folder_load(root: &Path, spec: Option<&str>) -> relprune::data::Splits {
    let p = spec.map(|s| Preprocess::parse(s).unwrap()).unwrap_or_default();
    load_splits_with(root, FolderOptions::default(), &p).unwrap()
}

#[test]
fn preprocessing_is_part_of_the_decode_once_cache_key() {
    use relprune::data::image_folder::ImageFolder;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("val");
    write_images(&root, &noise_images(7));
    let cache = t.path().join("cache");
    let open = |spec: &str| {
        let p = Preprocess::parse(spec).unwrap();
        let opts = CacheOptions { memory_budget: Some(0), dir: Some(cache.clone()), ..Default::default() };
        Arc::new(ImageFolder::open_with(&root, &p, None, FolderOptions::default()).unwrap().with_cache(opts).unwrap())
    };
    let base = "resize=none,crop=28:32,mean=0.5:0.25:0.125,std=0.25:0.5:2";
    let reads = |spec: &str| {
        let f = open(spec);
        let s = Subset::all(f.clone());
        let batches: Vec<Tensor> = s.batches(2).map(|b| b.unwrap().inputs[0].shallow_clone()).collect();
        let cached = Tensor::cat(&batches, 0);
        let idx: Vec<usize> = (0..f.len()).collect();
        let fresh = f.batch_uncached(&idx).unwrap().inputs[0].shallow_clone();
        assert!(cached.equal(&fresh), "{spec}: cached bytes differ from fresh decoding");
        let st = f.cache_stats();
        (st.files_reused, st.decoded, cached.size())
    };
    assert_eq!(reads(base), (0, 5, vec![5, 3, 28, 32]));
    assert_eq!(reads(base), (1, 0, vec![5, 3, 28, 32]), "the same preprocessing reuses the file");
    // Mean and std are applied per batch: the decoded bytes are shared.
    assert_eq!(reads("resize=none,crop=28:32,mean=0.1:0.2:0.3,std=1:1:1"), (1, 0, vec![5, 3, 28, 32]));
    // Anything that changes the bytes is a new set.
    assert_eq!(reads("resize=none,crop=28:32,mean=0.5,std=0.25,channels=grey"), (0, 5, vec![5, 1, 28, 32]));
    assert_eq!(reads(&base.replace("crop=28:32", "crop=28:30")), (0, 5, vec![5, 3, 28, 30]));
    assert_eq!(reads(&base.replace("crop=28:32", "crop=28")), (0, 5, vec![5, 3, 28, 28]));
    assert_eq!(reads(&base.replace("resize=none", "resize=32")), (0, 5, vec![5, 3, 28, 32]));
}

use std::sync::Arc;

#[test]
fn model_input_shape_is_checked_before_any_sample_is_read() {
    use relprune::experiment::{Task, TaskSpec};
    let graph = relprune::models::load_model("cifar_resnet18:width=4,in=1,size=28,classes=2", None, 0).unwrap().graph;
    let t = tempfile::tempdir().unwrap();
    // Undecodable files: any error below comes before an image is read.
    for split in ["train", "val"] {
        for class in ["a", "b"] {
            let d = t.path().join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..3 {
                std::fs::write(d.join(format!("{i}.png")), b"not a png").unwrap();
            }
        }
    }
    let splits = image_folder_load(t.path(), Some("resize=none,crop=28:32,mean=0.5,std=0.25,channels=grey"));
    let task = Task::prepare(&splits, 2, &TaskSpec { refs_per_class: 1, ..Default::default() }).unwrap();
    let e = task.check_model(&graph).unwrap_err().to_string();
    for part in
        ["expects float images of shape (B, 1, 28, 28)", "gives float images of shape (B, 1, 28, 32)", "--preprocess"]
    {
        assert!(e.contains(part), "`{part}` not in: {e}");
    }
    assert!(e.contains("preprocess resize=none,crop=28:32,mean=0.5,std=0.25,channels=grey"), "{e}");
    let rgb = image_folder_load(t.path(), Some("resize=none,crop=28"));
    let e = relprune::data::check_model_inputs(&graph, rgb.train.data.as_ref()).unwrap_err().to_string();
    assert!(e.contains("(B, 3, 28, 28)"), "{e}");
    let ok = image_folder_load(t.path(), Some("resize=none,crop=28,mean=0.5,std=0.25,channels=grey"));
    relprune::data::check_model_inputs(&graph, ok.train.data.as_ref()).unwrap();
    // Data that does not know its shape is not checked here (the forward pass checks it).
    relprune::data::check_model_inputs(&graph, Subset::empty().data.as_ref()).unwrap();
}

/// The tensor datasets of `tests/oracles/tensor_datasets.py`, in a fresh folder.
fn tensor_cases() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    common::run_oracle("tensor_datasets.py", &["--out", d.path().to_str().unwrap()]);
    d
}

/// x[n, c, h, w] of the oracle's arrays before the per-file divisor (exact in float16).
fn oracle_value(n: i64, c: i64, h: i64, w: i64) -> f64 {
    ((7 * n + 5 * c + 3 * h + w) % 17 - 8) as f64 / 4.0
}

/// Checks that `data` holds `n` samples of (2, 3, 4) with x = value / d and y = n % 3.
fn check_tensor_split(data: &Arc<dyn Dataset>, n: usize, d: f64) {
    assert_eq!(data.len(), n, "{}", data.describe());
    assert_eq!(data.sample_shape(), Some([2, 3, 4]));
    let idx: Vec<usize> = (0..n).collect();
    let b = data.batch(&idx).unwrap();
    assert_eq!(b.inputs[0].size(), vec![n as i64, 2, 3, 4]);
    assert_eq!(b.inputs[0].kind(), Kind::Float);
    let x = Vec::<f32>::try_from(&b.inputs[0].reshape([-1])).unwrap();
    let mut k = 0;
    for s in 0..n as i64 {
        for c in 0..2 {
            for h in 0..3 {
                for w in 0..4 {
                    assert_eq!(x[k], (oracle_value(s, c, h, w) / d) as f32, "{} x[{s},{c},{h},{w}]", data.describe());
                    k += 1;
                }
            }
        }
    }
    let want: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
    assert_eq!(data.labels(), &want[..]);
    assert_eq!(Vec::<i64>::try_from(&b.labels).unwrap(), want);
    // A batch of some samples, out of order.
    let b = data.batch(&[n - 1, 0]).unwrap();
    assert_eq!(b.inputs[0].double_value(&[0, 1, 2, 3]) as f32, (oracle_value(n as i64 - 1, 1, 2, 3) / d) as f32);
    assert_eq!(Vec::<i64>::try_from(&b.labels).unwrap(), vec![(n as i64 - 1) % 3, 0]);
}

#[test]
fn tensor_datasets_from_npz_and_safetensors_load_their_values() {
    let tmp = tensor_cases();
    let cases = tmp.path();
    // npz: np.savez (float32 / int64), np.savez_compressed (float64 in Fortran order / uint8),
    // big-endian float32 / int64; classes.txt.
    let s = tensor_file::load_splits(&cases.join("npz")).unwrap();
    check_tensor_split(&s.train.data, 6, 1.0);
    check_tensor_split(&s.val.data, 4, 3.0);
    check_tensor_split(&s.test.data, 5, 1.0);
    assert_eq!(s.train.data.class_names(), &["cat", "dog", "bird"]);
    assert_eq!(s.train.indices, (0..6).collect::<Vec<_>>());
    for (split, n) in [(&s.val, 4), (&s.test, 5)] {
        let mut sorted = split.indices.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "every sample once");
    }
    assert_ne!(s.test.indices, (0..5).collect::<Vec<_>>(), "evaluation splits are in a fixed random order");
    assert_eq!(s.test.indices, tensor_file::load_splits(&cases.join("npz")).unwrap().test.indices);
    assert!(s.test.data.describe().contains("test.npz (5 samples of 2×3×4, 3 classes)"), "{}", s.test.data.describe());
    // safetensors: float16 / int32 and float32 / int64; no test split (val is halved), no
    // classes.txt (names 0..K-1).
    let s = tensor_file::load_splits(&cases.join("safetensors")).unwrap();
    check_tensor_split(&s.train.data, 6, 1.0);
    check_tensor_split(&s.val.data, 4, 1.0);
    assert_eq!(s.train.data.class_names(), &["0", "1", "2"]);
    assert_eq!((s.val.len(), s.test.len()), (2, 2));
    let mut both: Vec<usize> = s.val.indices.iter().chain(&s.test.indices).copied().collect();
    both.sort_unstable();
    assert_eq!(both, vec![0, 1, 2, 3], "val is halved into disjoint validation and test");
    assert!(Arc::ptr_eq(&s.val.data, &s.test.data));
}

#[test]
fn token_tensor_datasets_hold_each_samples_ids_without_its_padding() {
    let tmp = tensor_cases();
    let s = tensor_file::load_splits(&tmp.path().join("tokens")).unwrap();
    assert_eq!(s.train.data.len(), 6);
    assert_eq!(s.train.data.sample_shape(), None);
    // Samples 1 (3 tokens) and 4 (1 token): padded to the batch's longest, mask 1 on the tokens.
    let b = s.train.data.batch(&[1, 4]).unwrap();
    assert_eq!(b.inputs.len(), 2);
    assert_eq!(Vec::<i64>::try_from(&b.inputs[0].reshape([-1])).unwrap(), vec![8, 9, 10, 23, 0, 0]);
    assert_eq!(Vec::<i64>::try_from(&b.inputs[1].reshape([-1])).unwrap(), vec![1, 1, 1, 1, 0, 0]);
    assert_eq!(Vec::<i64>::try_from(&b.labels).unwrap(), vec![1, 1]);
    // Without a mask (int32 ids) every position is a token.
    let b = s.val.data.batch(&[0]).unwrap();
    assert_eq!(Vec::<i64>::try_from(&b.inputs[0].reshape([-1])).unwrap(), vec![3, 4, 5, 6, 7]);
    assert_eq!(Vec::<i64>::try_from(&b.inputs[1].reshape([-1])).unwrap(), vec![1; 5]);
}

#[test]
fn tensor_dataset_defects_are_named_errors() {
    let tmp = tensor_cases();
    let cases = tmp.path();
    let table: &[(&str, &str, &str)] = &[
        ("no_y", "train.npz", "it has no array `y` (it has `x`)"),
        ("n_mismatch", "train.npz", "x has 6 samples but y has 5 labels"),
        (
            "x_rank",
            "train.npz",
            "x has shape [6, 24] (rank 2); it must be images of rank 4, (N, C, H, W), or integer token ids",
        ),
        ("y_rank", "val.npz", "y has shape [4, 1] (rank 2); it must have rank 1"),
        ("label_range", "train.npz", "y[2] = 2 is not a class: classes.txt names 2 classes (labels 0..=1)"),
        ("negative", "train.npz", "y[1] = -1 is negative"),
        ("nan", "val.npz", "x holds NaN or infinite values (first in sample 3)"),
        ("inf64", "val.npz", "x holds NaN or infinite values (first in sample 2)"),
        ("empty", "val.npz", "the split is empty"),
        ("uint8", "train.npz", "x is uint8; relprune does not guess"),
        ("float_y", "train.npz", "y has dtype float32; labels must be integers"),
        ("shape_mismatch", "val.npz", "its samples are images of shape (C, H, W) = [2, 3, 5] but those of"),
        ("mask_gap", "train.npz", "mask row 0 is not 1s then 0s"),
        ("mask_on_images", "train.npz", "it holds a `mask`, which goes with integer token ids"),
        ("token_and_image_splits", "val.npz", "its samples are images of shape (C, H, W) = [2, 3, 4] but those of"),
        ("huge_label", "huge_label", "the largest label is 2147483648, more classes than the limit of 1048576"),
        ("max_label", "max_label", "the largest label is 9223372036854775807, more classes than the limit"),
        ("classes_many", "classes.txt", "more than the limit of 1048576 classes"),
        (
            "npz_bomb",
            "train.npz",
            "array `x`: shape [6, 2, 3, 4] of dtype `<f4` needs 576 bytes of data but the array holds 577",
        ),
        ("npz_huge_header", "train.npz", "more than the limit of 68719476736 for an array"),
        ("no_val", "no_val", "split `val` (`val.npz` or `val.safetensors`) not found"),
        ("both", "both", "both train.npz and train.safetensors exist"),
        ("st_no_x", "train.safetensors", "it has no tensor `x` (it has `input`, `y`)"),
        ("npy_only", "train.npy", "holds one array (np.save); save x and y together with np.savez"),
        ("classes_blank", "classes.txt", "line 2 is empty"),
        ("one_class", "one_class", "every label is 0, so there is one class"),
    ];
    for (case, file, wanted) in table {
        let e = tensor_file::load_splits(&cases.join(case)).err().unwrap_or_else(|| panic!("{case} loads"));
        let msg = e.to_string();
        assert!(msg.contains(wanted), "{case}: `{wanted}` not in: {msg}");
        assert!(msg.contains(file), "{case}: the error does not name {file}: {msg}");
    }
    let e = tensor_file::load_splits(&cases.join("nope")).err().unwrap();
    assert!(matches!(e, Error::DataNotFound { .. }) && e.to_string().contains("nope"), "{e}");
    // The model's input is checked against the arrays' shape before any work.
    let graph = relprune::models::load_model("cifar_resnet18:width=4,in=1,size=28,classes=3", None, 0).unwrap().graph;
    let s = tensor_file::load_splits(&cases.join("npz")).unwrap();
    let e = relprune::data::check_model_inputs(&graph, s.train.data.as_ref()).unwrap_err().to_string();
    assert!(e.contains("(B, 1, 28, 28)") && e.contains("(B, 2, 3, 4)") && e.contains("train.npz"), "{e}");
}
