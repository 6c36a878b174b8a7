//! Data: datasets, fixed splits, reference samples and class restriction.

pub mod corpus;
pub mod fashion_mnist;
pub mod idx;
pub mod image_cache;
pub mod image_folder;
pub mod npy;
pub mod preprocess;
pub mod references;
pub mod restriction;
pub mod tensor_file;
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

impl Batch {
    /// The batch on `device` (shallow where it is there already).
    pub fn to_device(&self, device: tch::Device) -> Result<Batch> {
        Ok(Batch {
            inputs: self.inputs.iter().map(|t| t.f_to_device(device)).collect::<std::result::Result<_, _>>()?,
            labels: self.labels.f_to_device(device)?,
        })
    }
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
    /// Announces that the samples at `indices` are about to be read in batches, likely more than
    /// once (an evaluation split, reference samples): a dataset may prepare them, e.g. decode
    /// them once ([`image_folder::ImageFolder`]). The default does nothing.
    fn prepare(&self, _indices: &[usize]) -> Result<()> {
        Ok(())
    }
    /// Whether [`Subset::batches`] builds this dataset's batches on a background thread, one
    /// ahead of the consumer. Worth it where building a batch takes a while and needs no libtorch
    /// compute (which would compete with the model for its threads): decoding or normalising
    /// images. The default is no.
    fn prefetch(&self) -> bool {
        false
    }
    /// Shape (channels, height, width) of one sample's image input, where the dataset knows it
    /// without reading samples (its preprocessing, its arrays' shape): the model's image input
    /// is checked against it before any work ([`check_model_inputs`]). The default: unknown.
    fn sample_shape(&self) -> Option<[i64; 3]> {
        None
    }
    /// The most samples one batch may hold, whatever batch size is asked for: long token
    /// sequences cap it, since a language model's activations, relevances and (B, T, vocabulary)
    /// logits grow with every sequence ([`corpus::LmSequences`]). The default: no cap.
    fn max_batch(&self) -> usize {
        usize::MAX
    }
    /// Whether the samples are token sequences whose labels are next-token targets (B, T)
    /// (language-model text, [`corpus::LmSequences`]) rather than one class per sample.
    fn next_token(&self) -> bool {
        false
    }
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
    /// Batches of at most `size` samples (and at most [`Dataset::max_batch`]), in order. The
    /// dataset is first asked to prepare the
    /// subset ([`Dataset::prepare`]); where it asks for it ([`Dataset::prefetch`]), batches are
    /// built on a background thread, one ahead of the consumer, so that loading the next batch
    /// overlaps with the work on the current one. The first error ends the sequence.
    pub fn batches(&self, size: usize) -> impl Iterator<Item = Result<Batch>> + '_ {
        let size = size.min(self.data.max_batch()).max(1);
        if self.data.prefetch() {
            let b: Box<dyn Iterator<Item = Result<Batch>>> =
                Box::new(Prefetch::start(self.data.clone(), self.indices.clone(), size));
            return b;
        }
        let mut prepared = false;
        let mut chunks = self.indices.chunks(size);
        Box::new(std::iter::from_fn(move || {
            if !prepared {
                prepared = true;
                if let Err(e) = self.data.prepare(&self.indices) {
                    chunks = [].chunks(1);
                    return Some(Err(e));
                }
            }
            let b = self.data.batch(chunks.next()?);
            if b.is_err() {
                chunks = [].chunks(1);
            }
            Some(b)
        }))
    }
    /// All samples as one batch.
    pub fn full_batch(&self) -> Result<Batch> {
        self.data.batch(&self.indices)
    }
}

/// Batches built on a worker thread, one ahead of the consumer.
///
/// The channel has no buffer: the worker builds batch k + 1 while the consumer works on batch k,
/// then waits until it is taken, so at most two batches exist at once. Dropping the iterator
/// early ends the worker (its next hand-over fails) and waits for it. A panic in the worker is
/// passed on to the consumer instead of ending the sequence early.
struct Prefetch {
    rx: Option<std::sync::mpsc::Receiver<Result<Batch>>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Prefetch {
    fn start(data: Arc<dyn Dataset>, indices: Vec<usize>, size: usize) -> Self {
        if indices.is_empty() {
            return Prefetch { rx: None, worker: None };
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        let worker = std::thread::spawn(move || {
            if let Err(e) = data.prepare(&indices) {
                let _ = tx.send(Err(e));
                return;
            }
            for c in indices.chunks(size) {
                let b = data.batch(c);
                let failed = b.is_err();
                if tx.send(b).is_err() || failed {
                    return;
                }
            }
        });
        Prefetch { rx: Some(rx), worker: Some(worker) }
    }
}

impl Iterator for Prefetch {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        match self.rx.as_ref()?.recv() {
            Ok(b) => Some(b),
            Err(_) => {
                self.rx = None;
                if let Some(Err(panic)) = self.worker.take().map(|w| w.join()) {
                    std::panic::resume_unwind(panic);
                }
                None
            }
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.rx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitName {
    Train,
    Val,
    Test,
}

crate::from_str_by_serde!(SplitName: "train, val or test");

impl Splits {
    pub fn get(&self, name: SplitName) -> &Subset {
        match name {
            SplitName::Train => &self.train,
            SplitName::Val => &self.val,
            SplitName::Test => &self.test,
        }
    }
}

/// Checks, before any sample is read, that the data fits the model's input: where `data` knows
/// the shape of its samples ([`Dataset::sample_shape`]), the model must take one image input of
/// exactly that (channels, height, width). The error names both shapes and what sets the data's.
pub fn check_model_inputs(graph: &crate::graph::Graph, data: &dyn Dataset) -> Result<()> {
    use crate::graph::ops::InputKind;
    let Some([c, h, w]) = data.sample_shape() else {
        return Ok(());
    };
    let kinds = graph.input_kinds();
    let expected = match kinds.as_slice() {
        [InputKind::Image { channels, height, width }] if [*channels, *height, *width] == [c, h, w] => return Ok(()),
        [] => "no input".to_string(),
        [one] => one.expectation(),
        many => many.iter().map(|k| k.expectation()).collect::<Vec<_>>().join(" and "),
    };
    crate::bail!(
        "the model's input expects {expected}, but the data gives float images of shape (B, {c}, {h}, {w}): {}. \
         Give data of the model's shape: for an image folder, --preprocess sets it (crop=H:W for the height and \
         width, channels=grey for 1 channel, channels=rgb for 3); for a tensor dataset, the arrays' x must have \
         that (C, H, W)",
        data.describe()
    )
}

/// Deterministic shuffle of `0..n` under `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut crate::util::rng(seed));
    v
}
