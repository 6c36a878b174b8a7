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

/// Most classes a grey-image set may have (labels are class indices below it).
const MAX_CLASSES: i64 = 1 << 20;

/// Largest image side [`GreyImages`] accepts (a bound far above any real data set, so that
/// products of sides never overflow).
const MAX_SIDE: i64 = 1 << 20;

/// Class names for labels `0..=max`: Fashion-MNIST's names, then `class N`. A grey-image set
/// has as many classes as its highest label says (at least Fashion-MNIST's ten when it is
/// Fashion-MNIST, whose files hold every class).
fn class_names(labels: &[i64]) -> Vec<String> {
    let n = labels.iter().copied().max().map_or(0, |m| m + 1).max(0) as usize;
    (0..n).map(|i| CLASS_NAMES.get(i).map_or_else(|| format!("class {i}"), |s| s.to_string())).collect()
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
    /// Builds a dataset from raw bytes (N·H·W) and labels. Errors (never panics) when the sizes
    /// do not fit together: N·H·W overflowing or differing from the byte count, zero-sized
    /// images, or a label count other than N.
    pub fn from_bytes(
        data: &[u8],
        n: usize,
        h: usize,
        w: usize,
        labels: Vec<i64>,
        description: String,
    ) -> Result<Self> {
        if h == 0 || w == 0 {
            crate::bail!("images of {h}×{w} pixels: height and width must be at least 1");
        }
        let side = |v: usize| i64::try_from(v).ok().filter(|&v| v <= MAX_SIDE);
        let (Some(hi), Some(wi)) = (side(h), side(w)) else {
            crate::bail!("images of {h}×{w} pixels: each side must be at most {MAX_SIDE}");
        };
        let expected = n.checked_mul(h).and_then(|v| v.checked_mul(w));
        if expected != Some(data.len()) {
            crate::bail!(
                "{n} images of {h}×{w} pixels need {} bytes, got {}",
                expected.map_or_else(|| "more than 2^64".to_string(), |e| e.to_string()),
                data.len()
            );
        }
        if labels.len() != n {
            crate::bail!("{} labels for {n} images", labels.len());
        }
        if let Some(l) = labels.iter().find(|&&l| !(0..MAX_CLASSES).contains(&l)) {
            crate::bail!("label {l} is outside 0..{MAX_CLASSES}");
        }
        Ok(GreyImages { images: data.to_vec(), size: (hi, wi), class_names: class_names(&labels), labels, description })
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
        let plane = (h * w) as usize; // validated in `from_bytes`: N·H·W bytes are in memory
        let mut bytes = Vec::with_capacity(indices.len().saturating_mul(plane));
        for &i in indices {
            let range = i.checked_mul(plane).and_then(|s| Some(s..s.checked_add(plane)?));
            match range.and_then(|r| self.images.get(r)) {
                Some(img) => bytes.extend_from_slice(img),
                None => crate::bail!("sample {i} requested from {} images", self.labels.len()),
            }
        }
        let x = Tensor::from_slice(&bytes).f_reshape([indices.len() as i64, 1, h, w])?.f_to_kind(Kind::Float)?;
        let x = x.f_div_scalar(255.0)?.f_sub_scalar(MEAN)?.f_div_scalar(STD)?;
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i]).collect();
        Ok(Batch { inputs: vec![x], labels: Tensor::from_slice(&labels) })
    }
    fn sample_shape(&self) -> Option<[i64; 3]> {
        Some([1, self.size.0, self.size.1])
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
    if n == 0 {
        return Err(bad(&img_path, "the file holds no images (N = 0)".into()));
    }
    let desc = format!("Fashion-MNIST {prefix} ({n} images of {h}×{w}) from {}", dir.display());
    GreyImages::from_bytes(&images.data, n, h, w, labels.data.iter().map(|&l| l as i64).collect(), desc).map_err(|e| {
        match e {
            Error::Invalid(reason) => bad(&img_path, reason),
            other => other,
        }
    })
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
