//! Image folders with one sub-folder per class (the ImageNet / torchvision `ImageFolder`
//! layout), with an explicit preprocessing ([`Preprocess`], `--preprocess`); the default is the
//! standard ImageNet one: resize the shorter side to 256, centre-crop 224, scale to [0, 1],
//! normalise per channel. The samples of a subset that is streamed (an evaluation split, the
//! references) are decoded once and cached ([`super::image_cache`]); other batches are decoded
//! when asked for.

use super::image_cache::{Cache, Source};
use super::preprocess::decode_into;
pub use super::preprocess::{Channels, Preprocess, IMAGENET_MEAN, IMAGENET_STD};
use super::{permutation, Batch, Dataset, Splits, Subset};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::Tensor;

pub use super::image_cache::{CacheOptions, CacheStats};

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Files of an image folder and their labels (class = sorted sub-folder index).
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<PathBuf>,
    labels: Vec<i64>,
    class_names: Vec<String>,
    preprocess: Preprocess,
    /// The normalised float of every byte value, per channel (see [`normalize_into`]).
    table: Vec<[f32; 256]>,
    cache: Cache,
}

/// How the class folders of an image-folder dataset are read.
#[derive(Clone, Copy, Debug, Default)]
pub struct FolderOptions {
    /// Accept class folders that hold no images (the class keeps its index, so labels still
    /// match the model's outputs, but gets no references). Without it such a folder is an error:
    /// it would silently leave a class out of the references.
    pub skip_empty_classes: bool,
}

/// The sub-folders of `root` that can be classes, with their images (sorted by name). Hidden
/// folders (`.name`) are never classes.
fn scan(root: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let entries = std::fs::read_dir(root).map_err(|_| Error::DataNotFound {
        what: "image folder".into(),
        path: root.into(),
        hint: "give a folder with one sub-folder of images per class".into(),
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let mut imgs: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(Error::io("list", &dir))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .map(|e| EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str()))
                            .unwrap_or(false)
                })
                .collect();
            imgs.sort();
            Ok((dir.file_name().unwrap_or_default().to_string_lossy().into_owned(), imgs))
        })
        .collect()
}

fn names(list: &[&str]) -> String {
    list.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

impl ImageFolder {
    /// Scans `root/<class>/<image>`; classes are the sub-folders in sorted order. Every class
    /// folder must hold images. Images are resized to `resize` (shorter side), centre-cropped to
    /// `crop` × `crop` and normalised with ImageNet's mean and std
    /// ([`Preprocess::imagenet_sized`]).
    pub fn open(root: &Path, resize: u32, crop: u32) -> Result<Self> {
        Self::open_with(root, &Preprocess::imagenet_sized(resize, crop), None, FolderOptions::default())
    }

    /// Scans `root/<class>/<image>`, whose images go through `preprocess` (validated here, before
    /// the folder is read). With `classes` (a split other than train), the folder must have
    /// exactly those class folders, which keep their indices; otherwise the classes are the
    /// sub-folders in sorted order. Folders holding no images are an error unless
    /// `opts.skip_empty_classes`; empty folders that are not classes are ignored.
    pub fn open_with(
        root: &Path,
        preprocess: &Preprocess,
        classes: Option<&[String]>,
        opts: FolderOptions,
    ) -> Result<Self> {
        preprocess.validate()?;
        let scanned = scan(root)?;
        let class_names: Vec<String> = match classes {
            Some(c) => c.to_vec(),
            None => scanned.iter().map(|(n, _)| n.clone()).collect(),
        };
        let found = |name: &str| scanned.iter().find(|(n, _)| n == name);
        let bad = |reason: String| Error::CorruptData { what: "image folder".into(), path: root.into(), reason };
        if let Some(expected) = classes {
            let missing: Vec<&str> = expected.iter().map(String::as_str).filter(|c| found(c).is_none()).collect();
            let extra: Vec<&str> = scanned
                .iter()
                .filter(|(n, imgs)| !imgs.is_empty() && !expected.contains(n))
                .map(|(n, _)| n.as_str())
                .collect();
            if !missing.is_empty() || !extra.is_empty() {
                let mut why = Vec::new();
                if !missing.is_empty() {
                    why.push(format!("it lacks the class folder(s) {}", names(&missing)));
                }
                if !extra.is_empty() {
                    why.push(format!("it has class folder(s) {} that train/ does not have", names(&extra)));
                }
                return Err(bad(format!(
                    "{}; every split needs the same class folders as train/ ({}), or class indices would not match",
                    why.join(" and "),
                    names(&expected.iter().map(String::as_str).collect::<Vec<_>>())
                )));
            }
        }
        let empty: Vec<&str> = class_names
            .iter()
            .map(String::as_str)
            .filter(|c| found(c).is_some_and(|(_, imgs)| imgs.is_empty()))
            .collect();
        if !empty.is_empty() && !opts.skip_empty_classes {
            return Err(bad(format!(
                "class folder(s) {} hold no .jpg/.jpeg/.png images; add images, or pass --skip-empty-classes to keep \
                 the class index without samples",
                names(&empty)
            )));
        }
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for (label, name) in class_names.iter().enumerate() {
            let imgs = found(name).map(|(_, imgs)| imgs.clone()).unwrap_or_default();
            labels.extend(std::iter::repeat_n(label as i64, imgs.len()));
            files.extend(imgs);
        }
        if class_names.len() < 2 || files.is_empty() {
            return Err(Error::DataNotFound {
                what: "image folder".into(),
                path: root.into(),
                hint: "need at least two class sub-folders holding .jpg/.jpeg/.png images".into(),
            });
        }
        let cache = Cache::new(CacheOptions::default())?;
        let table = normalize_table(preprocess);
        Ok(ImageFolder { root: root.into(), files, labels, class_names, preprocess: preprocess.clone(), table, cache })
    }

    /// The preprocessing every image goes through.
    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// The same folder with other cache settings (see [`CacheOptions`]); drops what was cached.
    pub fn with_cache(mut self, opts: CacheOptions) -> Result<Self> {
        self.cache = Cache::new(opts)?;
        Ok(self)
    }

    /// What the cache holds and did.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The images' files, in sample order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn source(&self) -> Source<'_> {
        Source { root: &self.root, files: &self.files, preprocess: &self.preprocess }
    }

    /// The samples at `indices`, decoded afresh from their files whatever the cache holds (what
    /// every batch cost before the cache; for comparisons).
    pub fn batch_uncached(&self, indices: &[usize]) -> Result<Batch> {
        self.build_batch(indices, false)
    }

    fn build_batch(&self, indices: &[usize], cached: bool) -> Result<Batch> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.files.len()) {
            crate::bail!("sample {bad} is out of range: {} holds {} images", self.root.display(), self.files.len());
        }
        let n = self.preprocess.image_bytes();
        let mut data = Vec::with_capacity(indices.len() * n);
        let mut scratch = vec![0u8; n];
        let mut push = |i: usize, bytes: Option<&[u8]>| -> Result<()> {
            let bytes = match bytes {
                Some(b) => b,
                None => {
                    decode_into(&self.files[i], &self.preprocess, &mut scratch)?;
                    &scratch
                }
            };
            normalize_into(bytes, &self.table, &mut data);
            Ok(())
        };
        if cached {
            self.cache.read(&self.source(), indices, &mut push)?;
        } else {
            for &i in indices {
                push(i, None)?;
            }
        }
        let [c, h, w] = self.preprocess.sample_shape();
        let x = Tensor::from_slice(&data).reshape([indices.len() as i64, c, h, w]);
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i]).collect();
        Ok(Batch { inputs: vec![x], labels: Tensor::from_slice(&labels) })
    }
}

/// The normalised float of every byte value per channel: `(px / 255 - mean) / std`.
fn normalize_table(p: &Preprocess) -> Vec<[f32; 256]> {
    p.mean
        .iter()
        .zip(&p.std)
        .map(|(&mean, &std)| {
            let mut row = [0f32; 256];
            for (px, v) in row.iter_mut().enumerate() {
                *v = (px as u8 as f32 / 255.0 - mean) / std;
            }
            row
        })
        .collect()
}

/// Appends the normalised floats of one image's preprocessed bytes (one plane per channel):
/// `(px / 255 - mean) / std` per channel, the same f32 arithmetic for every byte value as when
/// the floats were computed straight from the decoded pixels (a table of the C × 256 results).
fn normalize_into(bytes: &[u8], table: &[[f32; 256]], out: &mut Vec<f32>) {
    let plane = bytes.len() / table.len();
    for (ch, row) in table.iter().enumerate() {
        out.extend(bytes[ch * plane..(ch + 1) * plane].iter().map(|&b| row[b as usize]));
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn labels(&self) -> &[i64] {
        &self.labels
    }
    fn class_names(&self) -> &[String] {
        &self.class_names
    }
    fn batch(&self, indices: &[usize]) -> Result<Batch> {
        self.build_batch(indices, true)
    }
    fn prepare(&self, indices: &[usize]) -> Result<()> {
        self.cache.prepare(&self.source(), indices)
    }
    fn prefetch(&self) -> bool {
        true
    }
    fn sample_shape(&self) -> Option<[i64; 3]> {
        Some(self.preprocess.sample_shape())
    }
    fn describe(&self) -> String {
        let preprocess =
            if self.preprocess.is_imagenet() { String::new() } else { format!("; preprocess {}", self.preprocess) };
        format!(
            "image folder {} ({} images, {} classes{preprocess})",
            self.root.display(),
            self.files.len(),
            self.class_names.len()
        )
    }
}

/// Splits for an image-folder dataset at `root`:
/// - `root/train` gives the references; `root/val` the validation split and `root/test` the
///   test split when present;
/// - without `root/test`, `root/val` is halved by a fixed seed into validation and test, so
///   hyperparameters are never chosen on the split that is reported.
/// - the class list comes from `root/train`; the other splits must have the same class folders.
///
/// Images get the default preprocessing ([`Preprocess::imagenet`]); see [`load_splits_with`].
pub fn load_splits(root: &Path, opts: FolderOptions) -> Result<Splits> {
    load_splits_with(root, opts, &Preprocess::imagenet())
}

/// [`load_splits`] with the preprocessing `preprocess` for every split, validated before any
/// folder is read.
pub fn load_splits_with(root: &Path, opts: FolderOptions, preprocess: &Preprocess) -> Result<Splits> {
    preprocess.validate()?;
    let train = root.join("train");
    let val = root.join("val");
    if !train.is_dir() || !val.is_dir() {
        return Err(Error::DataNotFound {
            what: "image folder splits".into(),
            path: root.into(),
            hint: "expected `train/` and `val/` (and optionally `test/`) each with one sub-folder per class".into(),
        });
    }
    let train_folder = ImageFolder::open_with(&train, preprocess, None, opts)?;
    let classes = train_folder.class_names.clone();
    let open = |dir: &Path| ImageFolder::open_with(dir, preprocess, Some(&classes), opts);
    let train: Arc<dyn Dataset> = Arc::new(train_folder);
    let val_ds: Arc<dyn Dataset> = Arc::new(open(&val)?);
    let test_dir = root.join("test");
    // Folders list their files class by class; evaluation splits get a fixed random order so
    // that their first n samples cover every class (see `Splits`).
    let shuffled = |ds: Arc<dyn Dataset>| {
        let indices = permutation(ds.len(), super::fashion_mnist::SPLIT_SEED);
        Subset { data: ds, indices }
    };
    let (val, test) = if test_dir.is_dir() {
        (shuffled(val_ds), shuffled(Arc::new(open(&test_dir)?)))
    } else {
        let perm = permutation(val_ds.len(), super::fashion_mnist::SPLIT_SEED);
        let half = perm.len() / 2;
        let (a, b) = (perm[..half].to_vec(), perm[half..].to_vec());
        (Subset { data: val_ds.clone(), indices: a }, Subset { data: val_ds, indices: b })
    };
    Ok(Splits { train: Subset::all(train), val, test })
}
