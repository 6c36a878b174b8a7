//! Data: datasets, fixed splits, reference samples and class restriction.

pub mod fashion_mnist;
pub mod idx;
pub mod image_folder;
pub mod references;
pub mod restriction;
pub mod text;

pub use references::select_references;
pub use restriction::ClassSubset;

use crate::error::Result;
use std::sync::Arc;
use tch::Tensor;

/// Model inputs and labels of some samples.
pub struct Batch {
    /// One tensor per graph input (images; or token ids and attention mask).
    pub inputs: Vec<Tensor>,
    /// Class labels, int64, shape (B,).
    pub labels: Tensor,
}

/// A labelled collection of samples that can produce model-ready batches.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Label of every sample.
    fn labels(&self) -> &[i64];
    /// Class names, indexed by label.
    fn class_names(&self) -> &[String];
    /// Inputs and labels of the samples at `indices`.
    fn batch(&self, indices: &[usize]) -> Result<Batch>;
    /// One line saying what this is (for reports).
    fn describe(&self) -> String;
}

/// A view of some samples of a dataset: a split, a reference set, a filtered subset.
#[derive(Clone)]
pub struct Subset {
    pub data: Arc<dyn Dataset>,
    pub indices: Vec<usize>,
}

impl std::fmt::Debug for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subset({} of {})", self.indices.len(), self.data.describe())
    }
}

/// A dataset with no samples (what data-free criteria receive as references).
struct NoData;

impl Dataset for NoData {
    fn len(&self) -> usize {
        0
    }
    fn labels(&self) -> &[i64] {
        &[]
    }
    fn class_names(&self) -> &[String] {
        &[]
    }
    fn batch(&self, _indices: &[usize]) -> Result<Batch> {
        crate::bail!("no data was given")
    }
    fn describe(&self) -> String {
        "no data".into()
    }
}

impl Subset {
    /// No samples at all.
    pub fn empty() -> Self {
        Subset { data: Arc::new(NoData), indices: Vec::new() }
    }

    /// All samples of `data`.
    pub fn all(data: Arc<dyn Dataset>) -> Self {
        let indices = (0..data.len()).collect();
        Subset { data, indices }
    }
    pub fn len(&self) -> usize {
        self.indices.len()
    }
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
    /// Label of the i-th sample of this subset.
    pub fn label(&self, i: usize) -> i64 {
        self.data.labels()[self.indices[i]]
    }
    /// The first `n` samples (or all when fewer). Evaluation splits are stored in a random order
    /// (see [`Splits`]), so a head of one is a random sample of every class.
    pub fn head(&self, n: usize) -> Subset {
        Subset { data: self.data.clone(), indices: self.indices[..n.min(self.len())].to_vec() }
    }
    /// Only the samples whose label satisfies `keep`.
    pub fn filter_labels(&self, keep: impl Fn(i64) -> bool) -> Subset {
        let labels = self.data.labels();
        Subset { data: self.data.clone(), indices: self.indices.iter().copied().filter(|&i| keep(labels[i])).collect() }
    }
    /// Batches of at most `size` samples, in order.
    pub fn batches(&self, size: usize) -> impl Iterator<Item = Result<Batch>> + '_ {
        self.indices.chunks(size.max(1)).map(move |c| self.data.batch(c))
    }
    /// All samples as one batch.
    pub fn full_batch(&self) -> Result<Batch> {
        self.data.batch(&self.indices)
    }
}

/// The three disjoint splits every experiment uses.
///
/// Validation and test are in a fixed random order, never grouped by class: experiments
/// evaluate on their first n samples (`--eval-samples`, `--val-samples`), which must be a
/// random sample of all classes. (Fashion-MNIST's files are already in random class order; the
/// spam corpus and image folders are stored class by class and are shuffled with a fixed seed.)
#[derive(Clone)]
pub struct Splits {
    /// Where reference samples come from.
    pub train: Subset,
    /// Where hyperparameters are chosen.
    pub val: Subset,
    /// Where results are reported.
    pub test: Subset,
}

/// Which split to evaluate on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SplitName {
    Train,
    Val,
    Test,
}

impl Splits {
    pub fn get(&self, name: SplitName) -> &Subset {
        match name {
            SplitName::Train => &self.train,
            SplitName::Val => &self.val,
            SplitName::Test => &self.test,
        }
    }
}

/// Deterministic shuffle of `0..n` under `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut crate::util::rng(seed));
    v
}
