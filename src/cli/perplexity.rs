//! `relprune perplexity`: a decoder language model's perplexity and next-token accuracy on text.

use super::common::{progress, ModelArgs, Output};
use clap::Args;
use relprune::data::corpus::{CorpusSpec, Part};
use relprune::workflow::language::{evaluate, LmEvalOptions};

#[derive(Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Text: enwiki (Wikipedia, prepared by setup), brown (the Brown corpus), or text:PATH (a .txt
    /// file of blank-line-separated documents, or a folder of .txt files; split 80/10/10 by
    /// document, see docs/cli.md).
    #[arg(long, default_value = "enwiki")]
    data: String,
    /// Which part: test, validation or reference.
    #[arg(long, default_value = "test")]
    split: Part,
    /// Tokens per sequence [range: 2..=the model's positions].
    #[arg(long, default_value_t = LmEvalOptions::default().seq_len)]
    seq_len: usize,
    /// Evaluate on at most this many sequences (default: the whole split).
    #[arg(long, value_parser = super::ranges::count(1, usize::MAX))]
    sequences: Option<usize>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = LmEvalOptions::default().batch_size, value_parser = super::ranges::count(1, 4096))]
    batch_size: usize,
}

pub fn run(args: PerplexityArgs, out: &Output) -> anyhow::Result<()> {
    let opts = LmEvalOptions {
        corpus: CorpusSpec::parse(&args.data)?,
        part: args.split,
        seq_len: args.seq_len,
        max_sequences: args.sequences,
        batch_size: args.batch_size,
    };
    let mut bar = None;
    let r = evaluate(&args.model.source(), &opts, &mut |done, total| {
        let b = bar.get_or_insert_with(|| progress(total as u64, "sequences"));
        b.set_position(done as u64);
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    out.say(format!(
        "{} on {} ({}): perplexity {:.3}, next-token accuracy {:.4}, over {} tokens ({} sequences of {}); {:.0} tokens/s",
        r.model,
        r.data,
        r.part.name(),
        r.score.perplexity,
        r.score.accuracy,
        r.score.tokens,
        r.sequences,
        r.seq_len,
        r.tokens_per_second
    ));
    out.emit(&r)
}
