//! Where a workflow's model and data come from, as plain data a front end fills in, and the
//! [`Session`] every pruning workflow starts from: the model on its device, its data, the task
//! and the components.

use crate::data::{fashion_mnist, image_folder, Splits};
use crate::device::DeviceChoice;
use crate::error::Result;
use crate::experiment::{Task, TaskSpec};
use crate::models::{load_model, LoadedModel};
use crate::prune::components::{ComponentSet, Components};
use std::path::{Path, PathBuf};

/// A model to load: a zoo name, an architecture (`resnet18`, `cifar_resnet18:width=16,…`), a
/// folder written by `relprune prune`, or an ONNX file.
#[derive(Clone, Debug, Default)]
pub struct ModelSource {
    pub model: String,
    /// Weights for an architecture: a safetensors file with torchvision / Hugging Face names.
    pub weights: Option<PathBuf>,
    /// Seed of the random initialisation when no weights are given.
    pub init_seed: u64,
    /// Device the model runs on (resolved before anything is read: a GPU asked for and missing
    /// is an error first).
    pub device: DeviceChoice,
}

impl ModelSource {
    /// A model by name, with the defaults for the rest.
    pub fn named(model: impl Into<String>) -> Self {
        ModelSource { model: model.into(), ..Default::default() }
    }

    /// The model, on its device.
    pub fn load(&self) -> Result<LoadedModel> {
        let device = self.device.resolve()?;
        let mut m = load_model(&self.model, self.weights.as_deref(), self.init_seed)?;
        m.graph.to_device(device);
        Ok(m)
    }
}

/// Data to load: `auto` (a zoo model's own data, else Fashion-MNIST), `fashion-mnist`,
/// `spam[:TOKENIZER.json]`, `imagefolder:PATH`, `tensors:DIR`, or `none` (no data: only the
/// data-free criteria can score and nothing is evaluated).
#[derive(Clone, Debug)]
pub struct DataSource {
    pub spec: String,
    /// Image folders: the preprocessing (`imagenet`, `key=value,…` or a YAML file).
    pub preprocess: Option<String>,
    /// Folder of the Fashion-MNIST IDX files (default: $RELPRUNE_FMNIST_DIR or the Debian path).
    pub fmnist_dir: Option<PathBuf>,
    /// Image folders: accept class folders without images.
    pub skip_empty_classes: bool,
    /// Language-model text: tokens per sequence (None: [`LM_SEQ_LEN`]).
    pub seq_len: Option<usize>,
}

/// Tokens per sequence of language-model text when none is given (or the model's positions,
/// when fewer).
pub const LM_SEQ_LEN: usize = 1024;

/// The sequence length of a language model's text: `given`, else [`LM_SEQ_LEN`] within the
/// model's positions.
pub fn lm_seq_len(given: Option<usize>, graph: &crate::graph::Graph) -> usize {
    given.unwrap_or_else(|| graph.max_tokens().map_or(LM_SEQ_LEN, |m| LM_SEQ_LEN.min(m.max(1) as usize)))
}

impl Default for DataSource {
    fn default() -> Self {
        DataSource { spec: "auto".into(), preprocess: None, fmnist_dir: None, skip_empty_classes: false, seq_len: None }
    }
}

impl DataSource {
    /// Data by spec, with the defaults for the rest.
    pub fn named(spec: impl Into<String>) -> Self {
        DataSource { spec: spec.into(), ..Default::default() }
    }

    /// Whether this is `none`.
    pub fn is_none(&self) -> bool {
        self.spec == "none"
    }

    /// The data for `model`: `auto` follows the model's own dataset.
    pub fn load_for(&self, model: &LoadedModel) -> Result<Splits> {
        if model.graph.is_language_model() {
            return self.load_text(model);
        }
        match (self.spec.as_str(), model.dataset) {
            ("auto", Some(_)) if self.preprocess.is_some() => self.load(),
            ("auto", Some(d)) => d.splits(self.fmnist_dir.as_deref()),
            _ => self.load(),
        }
    }

    /// Text for a language model (`auto`: the prepared Wikipedia split), in sequences of
    /// `seq_len` tokens of the model's own tokenizer.
    fn load_text(&self, model: &LoadedModel) -> Result<Splits> {
        use crate::data::corpus::{lm_splits, CorpusSpec};
        let corpus = match self.spec.as_str() {
            "auto" => CorpusSpec::Enwiki,
            s => CorpusSpec::parse(s).map_err(|_| {
                crate::Error::invalid(format!(
                    "{} is a language model, which reads text: use --data enwiki, brown or text:PATH (not `{s}`)",
                    model.name
                ))
            })?,
        };
        let seq_len = lm_seq_len(self.seq_len, &model.graph);
        crate::graph::stats::check_seq_len(&model.graph, seq_len as i64)?;
        let folder = model.folder.as_ref().ok_or_else(|| {
            crate::Error::invalid(format!(
                "{} has no tokenizer to read text with; give the model as hf:FOLDER (a Hugging Face folder with \
                 tokenizer.json)",
                model.name
            ))
        })?;
        lm_splits(&folder.join("tokenizer.json"), &corpus, seq_len)
    }

    /// The data named by the spec (`auto` means Fashion-MNIST here).
    pub fn load(&self) -> Result<Splits> {
        use crate::data::text::{spam_dir, spam_splits, TextTokenizer, SPAM_MAX_TOKENS};
        let spec = self.spec.as_str();
        // Checked before any data is read.
        let preprocess = self.preprocess.as_deref().map(image_folder::Preprocess::parse).transpose()?;
        if preprocess.is_some() && !spec.starts_with("imagefolder:") {
            crate::bail!(
                "--preprocess applies to image folders (--data imagefolder:PATH) only; `{spec}` is not one (a tensor \
                 dataset's arrays are used as they are)"
            );
        }
        if spec == "fashion-mnist" || spec == "auto" {
            return fashion_mnist::load_splits(&fashion_mnist::resolve_dir(self.fmnist_dir.as_deref()));
        }
        if let Some(rest) = spec.strip_prefix("spam") {
            let tok = match rest.strip_prefix(':') {
                Some(path) => PathBuf::from(path),
                None if rest.is_empty() => crate::models::bert::minilm_dir()?.join("tokenizer.json"),
                None => crate::bail!("unknown data `{spec}`; use spam or spam:TOKENIZER.json"),
            };
            return spam_splits(&spam_dir(), &TextTokenizer::from_file(&tok, SPAM_MAX_TOKENS)?);
        }
        if let Some(path) = spec.strip_prefix("imagefolder:") {
            let opts = image_folder::FolderOptions { skip_empty_classes: self.skip_empty_classes };
            return image_folder::load_splits_with(Path::new(path), opts, &preprocess.unwrap_or_default());
        }
        if let Some(dir) = spec.strip_prefix("tensors:") {
            return crate::data::tensor_file::load_splits(Path::new(dir));
        }
        if spec == "none" {
            crate::bail!(
                "this command needs data; `--data none` only works for `prune` with the weight or random criterion"
            );
        }
        crate::bail!(
            "unknown data `{spec}`; use auto, fashion-mnist, spam[:TOKENIZER.json], imagefolder:PATH or tensors:DIR"
        )
    }
}

/// Why a workflow without data stops.
const NEEDS_DATA: &str =
    "this command needs data; `--data none` only works for `prune` with the weight or random criterion";

/// The data of a session: the splits and the prepared task.
pub struct SessionData {
    pub splits: Splits,
    /// How many classes the data has (= the model's outputs); the task may use a subset of
    /// them (`task.classes`).
    pub num_classes: i64,
    pub task: Task,
}

/// What every pruning workflow starts from: the model, its data (None for `--data none`) and
/// the components of one kind.
pub struct Session {
    pub model: LoadedModel,
    pub data: Option<SessionData>,
    pub comps: ComponentSet,
}

impl Session {
    /// Loads the model and its data, prepares and checks the task, and finds the components
    /// (`component`, or the model's default kind).
    pub fn open(
        model: &ModelSource,
        data: &DataSource,
        task: &TaskSpec,
        component: Option<Components>,
    ) -> Result<Self> {
        Self::with_model(model.load()?, data, task, component)
    }

    /// As [`Session::open`], for a model already loaded.
    pub fn with_model(
        model: LoadedModel,
        data: &DataSource,
        task: &TaskSpec,
        component: Option<Components>,
    ) -> Result<Self> {
        let kind = component.unwrap_or_else(|| ComponentSet::default_kind(&model.graph).into());
        if data.is_none() {
            // A model without data (e.g. random weights to measure speed): its outputs on random
            // inputs must still be finite.
            let inputs = crate::evaluate::random_inputs(&model.graph, 2, crate::experiment::CURVE_SEQ_LEN);
            crate::evaluate::check_finite(&model.graph, &inputs)?;
            let comps = ComponentSet::find(&model.graph, kind.clone())?;
            return Ok(Session { model, data: None, comps });
        }
        let splits = data.load_for(&model)?;
        let num_classes = model
            .graph
            .num_outputs()
            .ok_or_else(|| crate::Error::invalid("the model's output is not a Linear classifier"))?;
        let t = Task::prepare(&splits, num_classes, task)?;
        t.check_model(&model.graph)?;
        let comps = ComponentSet::find(&model.graph, kind.clone())?;
        Ok(Session { model, data: Some(SessionData { splits, num_classes, task: t }), comps })
    }

    /// The data, for workflows that need it.
    pub fn data(&self) -> Result<&SessionData> {
        self.data.as_ref().ok_or_else(|| crate::Error::invalid(NEEDS_DATA))
    }
}
