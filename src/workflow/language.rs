//! Language-model evaluation: perplexity and next-token accuracy of a decoder on a corpus part,
//! with its throughput.

use super::ModelSource;
use crate::data::corpus::{self, CorpusSpec, Part};
use crate::error::{Error, Result};
use crate::metrics::NextToken;
use std::path::PathBuf;

/// What to evaluate on.
#[derive(Clone, Debug)]
pub struct LmEvalOptions {
    pub corpus: CorpusSpec,
    pub part: Part,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Evaluate on at most this many sequences (None: the whole part).
    pub max_sequences: Option<usize>,
    /// Sequences per forward pass.
    pub batch_size: usize,
}

impl Default for LmEvalOptions {
    fn default() -> Self {
        LmEvalOptions {
            corpus: CorpusSpec::Enwiki,
            part: Part::Test,
            seq_len: 1024,
            max_sequences: None,
            batch_size: 1,
        }
    }
}

/// A decoder's next-token quality on one corpus part.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LmEvaluation {
    pub model: String,
    pub data: String,
    pub part: Part,
    pub seq_len: usize,
    pub sequences: usize,
    #[serde(flatten)]
    pub score: NextToken,
    /// Wall time of the forward passes, and the tokens they read per second.
    pub seconds: f64,
    pub tokens_per_second: f64,
}

/// The folder of a decoder given as `hf:FOLDER`, a folder relprune wrote, or a prepared name,
/// whose `tokenizer.json` turns text into ids.
pub fn model_folder(spec: &str) -> Result<PathBuf> {
    if let Some(found) = crate::models::llama::prepared_folder(spec) {
        return found;
    }
    match spec.strip_prefix("hf:") {
        Some(f) => Ok(PathBuf::from(f)),
        // A model folder relprune wrote (a pruned decoder) carries its tokenizer.
        None if std::path::Path::new(spec).join("tokenizer.json").is_file() => Ok(PathBuf::from(spec)),
        None => Err(Error::invalid(format!(
            "`{spec}` has no tokenizer: a language model's text needs one, so give the model as hf:FOLDER (a \
             Hugging Face folder with tokenizer.json), a folder relprune wrote for a decoder, or a prepared name \
             (smollm2-135m)"
        ))),
    }
}

/// Tokenises the corpus part for the model given by `spec` (its length checked against the
/// model's positions by the caller: [`crate::graph::stats::check_seq_len`]).
fn corpus_sequences(spec: &str, opts: &LmEvalOptions, part: Part) -> Result<corpus::Sequences> {
    let tokenizer = corpus::lm_tokenizer(&model_folder(spec)?.join("tokenizer.json"))?;
    let docs = corpus::read_part(&opts.corpus, part)?;
    let what = format!("{} ({})", opts.corpus.name(), part.name());
    corpus::sequences(&tokenizer, &docs, opts.seq_len, opts.max_sequences, &what)
}

/// Perplexity and next-token accuracy of the decoder `source` on `opts.part`.
pub fn evaluate(
    source: &ModelSource,
    opts: &LmEvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LmEvaluation> {
    let m = source.load()?;
    if !m.graph.is_language_model() {
        crate::bail!("{} is not a language model (token ids in, next-token logits (B, T, vocab) out)", source.model);
    }
    crate::graph::stats::check_seq_len(&m.graph, opts.seq_len as i64)?;
    let seqs = corpus_sequences(&source.model, opts, opts.part)?;
    let total = seqs.len();
    let start = std::time::Instant::now();
    let score =
        crate::metrics::next_token(&m.graph, &seqs.tensor(), None, opts.batch_size, &mut |done| progress(done, total))?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(LmEvaluation {
        model: m.name,
        data: opts.corpus.name(),
        part: opts.part,
        seq_len: opts.seq_len,
        sequences: total,
        tokens_per_second: (total * opts.seq_len) as f64 / seconds.max(1e-9),
        seconds,
        score,
    })
}
