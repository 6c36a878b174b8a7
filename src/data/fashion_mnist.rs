//! Fashion-MNIST from the standard IDX files, with the fixed split every experiment uses:
//! train 55,000 / validation 5,000 (one twelfth of the original train file, chosen by a fixed
//! seed) and test 10,000 (the original test file).

use super::idx::read_idx;
use super::{permutation, Batch, Dataset, Splits, Subset};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Kind, Tensor};

/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Environment variable that overrides [`DEFAULT_DIR`].
pub const DIR_ENV: &str = "RELPRUNE_FMNIST_DIR";
/// Seed of the train/validation split. Fixed: every run, every seed of an experiment, sees
/// the same three splits.
pub const SPLIT_SEED: u64 = 20_240_823;
/// Per-pixel normalisation (mean and standard deviation of the train images).
pub const MEAN: f64 = 0.2860;
pub const STD: f64 = 0.3530;

pub const CLASS_NAMES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

const INSTALL_HINT: &str = "install the Debian package `dataset-fashion-mnist` (as root: apt-get install \
    dataset-fashion-mnist; the project's setup script does this), or point --fmnist-dir / RELPRUNE_FMNIST_DIR \
    at a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and \
    t10k-labels-idx1-ubyte.gz";

/// The folder to read: the explicit one, else `$RELPRUNE_FMNIST_DIR`, else [`DEFAULT_DIR`].
pub fn resolve_dir(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(DIR_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// Greyscale images held in memory as bytes, normalised when batched.
pub struct GreyImages {
    /// N·H·W bytes (plain memory, so the dataset can be shared across threads).
    images: Vec<u8>,
    size: (i64, i64),
    labels: Vec<i64>,
    class_names: Vec<String>,
    description: String,
}

impl GreyImages {
    /// Builds a dataset from raw bytes (N·H·W) and labels.
    pub fn from_bytes(data: &[u8], n: usize, h: usize, w: usize, labels: Vec<i64>, description: String) -> Self {
        assert_eq!(data.len(), n * h * w, "image bytes must be N·H·W");
        GreyImages {
            images: data.to_vec(),
            size: (h as i64, w as i64),
            labels,
            class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
            description,
        }
    }

    /// Image side lengths (height, width).
    pub fn image_size(&self) -> (i64, i64) {
        self.size
    }
}

impl Dataset for GreyImages {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn labels(&self) -> &[i64] {
        &self.labels
    }
    fn class_names(&self) -> &[String] {
        &self.class_names
    }
    fn batch(&self, indices: &[usize]) -> Result<Batch> {
        let (h, w) = self.size;
        let plane = (h * w) as usize;
        let mut bytes = Vec::with_capacity(indices.len() * plane);
        for &i in indices {
            bytes.extend_from_slice(&self.images[i * plane..(i + 1) * plane]);
        }
        let x = Tensor::from_slice(&bytes).f_reshape([indices.len() as i64, 1, h, w])?.f_to_kind(Kind::Float)?;
        let x = x.f_div_scalar(255.0)?.f_sub_scalar(MEAN)?.f_div_scalar(STD)?;
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i]).collect();
        Ok(Batch { inputs: vec![x], labels: Tensor::from_slice(&labels) })
    }
    fn describe(&self) -> String {
        self.description.clone()
    }
}

fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::DataNotFound {
        what: format!("Fashion-MNIST file {stem}(.gz)"),
        path: dir.to_path_buf(),
        hint: INSTALL_HINT.into(),
    })
}

/// Reads one images/labels pair.
fn read_pair(dir: &Path, prefix: &str) -> Result<GreyImages> {
    let img_path = find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lab_path = find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx(&img_path)?;
    let labels = read_idx(&lab_path)?;
    let bad =
        |path: &Path, reason: String| Error::CorruptData { what: "Fashion-MNIST".into(), path: path.into(), reason };
    if images.dims.len() != 3 {
        return Err(bad(&img_path, format!("expected 3 dimensions (N, H, W), found {:?}", images.dims)));
    }
    if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
        return Err(bad(&lab_path, format!("{:?} labels for {} images", labels.dims, images.dims[0])));
    }
    if let Some(l) = labels.data.iter().find(|&&l| l >= 10) {
        return Err(bad(&lab_path, format!("label {l} outside 0..9")));
    }
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    let desc = format!("Fashion-MNIST {prefix} ({n} images of {h}×{w}) from {}", dir.display());
    Ok(GreyImages::from_bytes(&images.data, n, h, w, labels.data.iter().map(|&l| l as i64).collect(), desc))
}

/// Loads both files and returns the fixed splits.
pub fn load_splits(dir: &Path) -> Result<Splits> {
    if !dir.is_dir() {
        return Err(Error::DataNotFound {
            what: "Fashion-MNIST folder".into(),
            path: dir.into(),
            hint: INSTALL_HINT.into(),
        });
    }
    let train_file: Arc<dyn Dataset> = Arc::new(read_pair(dir, "train")?);
    let test_file: Arc<dyn Dataset> = Arc::new(read_pair(dir, "t10k")?);
    Ok(split_train_file(train_file, test_file))
}

/// Splits the original train file into train and validation (one twelfth, at least one sample),
/// by a fixed seeded permutation; the test file is the test split. The files themselves are in
/// random class order, so sorted indices keep every prefix a random sample (see `Splits`).
pub fn split_train_file(train_file: Arc<dyn Dataset>, test_file: Arc<dyn Dataset>) -> Splits {
    let n = train_file.len();
    let n_val = (n / 12).max(1).min(n);
    let perm = permutation(n, SPLIT_SEED);
    let (val, train) = perm.split_at(n_val);
    let mut train = train.to_vec();
    let mut val = val.to_vec();
    train.sort_unstable();
    val.sort_unstable();
    Splits {
        train: Subset { data: train_file.clone(), indices: train },
        val: Subset { data: train_file, indices: val },
        test: Subset::all(test_file),
    }
}
