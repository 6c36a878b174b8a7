//! Measuring a model: top-1 accuracy on a split (optionally restricted to a class subset), a
//! check that its outputs are finite, and forward latency. Below pruning in the module order,
//! since budgets measure what they prune ([`crate::prune::budget`]); [`crate::evaluate`] builds the
//! accuracy curves on top and re-exports these under their old names.

use crate::data::{ClassSubset, Subset};
use crate::error::Result;
use crate::graph::{Graph, Mode};
use tch::Kind;

/// Options of an accuracy measurement.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub batch_size: usize,
    /// Restrict the model's output to these classes (and the data to their samples is the
    /// caller's business: pass an already filtered split).
    pub classes: Option<ClassSubset>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { batch_size: 256, classes: None }
    }
}

/// Number of correct top-1 predictions on `split`, calling `progress(samples_done)` per batch.
pub fn count_correct(
    graph: &Graph,
    split: &Subset,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<i64> {
    Ok(count_hits(graph, split, opts, progress)?.correct)
}

/// What one pass over a split counts: correct top-1 predictions, how many were made (one per
/// sample, or one per next-token target for language-model text; targets below 0 are not
/// counted), and for text the summed negative log-likelihood of the targets.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Hits {
    pub correct: i64,
    pub counted: i64,
    /// Summed NLL (nats) of the counted targets; `None` for classifiers.
    pub nll: Option<f64>,
}

impl Hits {
    /// Top-1 accuracy in [0, 1].
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.counted.max(1) as f64
    }

    /// The next-token scores of language-model text (None for classifiers).
    pub fn next_token(&self) -> Option<NextToken> {
        let mean = self.nll? / self.counted.max(1) as f64;
        Some(NextToken { perplexity: mean.exp(), nll: mean, accuracy: self.accuracy(), tokens: self.counted })
    }
}

/// [`Hits`] on `split`, calling `progress(samples_done)` per batch.
pub fn count_hits(graph: &Graph, split: &Subset, opts: &EvalOptions, progress: &mut dyn FnMut(usize)) -> Result<Hits> {
    let text = split.data.next_token();
    tch::no_grad(|| {
        let mut hits = Hits { nll: text.then_some(0.0), ..Hits::default() };
        let mut done = 0usize;
        for batch in split.batches(opts.batch_size) {
            let batch = batch?;
            let logits = graph.forward(&batch.inputs, Mode::Eval)?;
            let (logits, labels) = match &opts.classes {
                Some(c) => (c.restrict_logits(&logits)?, c.remap_labels(&batch.labels)?),
                None => (logits, batch.labels.shallow_clone()),
            };
            let pred = logits.f_argmax(-1, false)?;
            let labels = labels.f_to_device(pred.device())?;
            let valid = labels.f_ge(0)?;
            let correct = pred.f_eq_tensor(&labels)?.f_logical_and(&valid)?;
            hits.correct += correct.f_sum(Kind::Int64)?.int64_value(&[]);
            hits.counted += valid.f_sum(Kind::Int64)?.int64_value(&[]);
            if let Some(nll) = hits.nll.as_mut() {
                *nll += target_nll(&logits, &labels, &valid)?;
            }
            done += batch.labels.size()[0] as usize;
            progress(done);
        }
        Ok(hits)
    })
}

/// Summed NLL of `labels` under `logits` (.., vocab) where `valid`, accumulated in float64.
fn target_nll(logits: &tch::Tensor, labels: &tch::Tensor, valid: &tch::Tensor) -> Result<f64> {
    let logp = logits.f_log_softmax(-1, Kind::Float)?;
    let target = labels.f_clamp_min(0)?.f_unsqueeze(-1)?;
    let nll = logp.f_gather(-1, &target, false)?.f_squeeze_dim(-1)?.f_neg()?;
    let validf = valid.f_to_kind(Kind::Double)?;
    Ok(nll.f_to_kind(Kind::Double)?.f_mul(&validf)?.f_sum(Kind::Double)?.double_value(&[]))
}

/// Checks that the model's outputs on `inputs` are finite. A model with NaN or infinite
/// weights would otherwise give chance-level curves that look like results; the error names
/// the first layer whose output is not finite.
pub fn check_finite(graph: &Graph, inputs: &[tch::Tensor]) -> Result<()> {
    let finite = |t: &tch::Tensor| -> Result<bool> { Ok(t.f_isfinite()?.f_all()?.int64_value(&[]) == 1) };
    tch::no_grad(|| {
        let out = graph.forward(inputs, Mode::Eval)?;
        if finite(&out)? {
            return Ok(());
        }
        let all = graph.forward_all(inputs, Mode::Eval)?;
        for (id, t) in all.iter().enumerate() {
            if t.is_floating_point() && !finite(t)? {
                let node = graph.node(id);
                let params: Vec<&str> = node
                    .params
                    .values()
                    .filter(|k| {
                        graph.params().get(k).is_some_and(|p| p.is_floating_point() && !finite(p).unwrap_or(false))
                    })
                    .map(String::as_str)
                    .collect();
                crate::bail!(
                    "the unpruned model's output is not finite (NaN or infinity): the first non-finite values appear at \
                     layer `{}` ({}){}; check the weights file",
                    node.name,
                    node.op.kind_name(),
                    if params.is_empty() { String::new() } else { format!(", whose parameters {} hold non-finite values", params.join(", ")) }
                );
            }
        }
        crate::bail!("the unpruned model's output is not finite (NaN or infinity); check the weights file")
    })
}

/// Top-1 accuracy in [0, 1] on `split` (per next-token target for language-model text).
pub fn accuracy(graph: &Graph, split: &Subset, opts: &EvalOptions) -> Result<f64> {
    Ok(evaluate_split(graph, split, opts)?.accuracy())
}

/// Accuracy, and the next-token scores for language-model text, in one pass over `split`.
pub fn evaluate_split(graph: &Graph, split: &Subset, opts: &EvalOptions) -> Result<Hits> {
    if split.is_empty() {
        crate::bail!("cannot measure accuracy on an empty split");
    }
    count_hits(graph, split, opts, &mut |_| {})
}

/// Forward latency of one batch.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    pub batch: usize,
    pub median_ms: f64,
    pub p10_ms: f64,
    pub p90_ms: f64,
    pub runs: usize,
    pub threads: i32,
}

/// Measures eval-mode forward latency on `inputs` (one batch): `warmup` untimed runs, then the
/// median of `runs` timed ones.
pub fn latency(graph: &Graph, inputs: &[tch::Tensor], warmup: usize, runs: usize) -> Result<Latency> {
    let mut times = Vec::with_capacity(runs);
    // The input is put on the graph's device before timing, so a GPU's latency is its own and
    // not the host-to-device copy's; CUDA kernels run asynchronously, so each run waits for them.
    let device = graph.device();
    let inputs = inputs.iter().map(|t| t.f_to_device(device)).collect::<std::result::Result<Vec<_>, _>>()?;
    tch::no_grad(|| -> Result<()> {
        for i in 0..warmup + runs {
            let t = std::time::Instant::now();
            let _ = graph.forward(&inputs, Mode::Eval)?;
            crate::device::synchronize(device);
            if i >= warmup {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok(())
    })?;
    times.sort_by(f64::total_cmp);
    let q = |f: f64| times[((times.len() - 1) as f64 * f).round() as usize];
    Ok(Latency {
        batch: inputs.first().map(|t| t.size()[0] as usize).unwrap_or(0),
        median_ms: q(0.5),
        p10_ms: q(0.1),
        p90_ms: q(0.9),
        runs,
        threads: tch::get_num_threads(),
    })
}

/// A random input batch of `batch` samples matching the graph's inputs (token models:
/// `seq_len` tokens, all real).
pub fn random_inputs(graph: &Graph, batch: i64, seq_len: i64) -> Vec<tch::Tensor> {
    // Ordinary word ids (past BERT's special tokens), inside the vocabulary however small.
    let vocab = token_vocabulary(graph).unwrap_or(1100);
    let (lo, span) = if vocab >= 1100 { (1000, 100) } else { (0, vocab.max(1)) };
    crate::graph::stats::example_inputs(graph, seq_len)
        .into_iter()
        .map(|t| {
            let mut s = t.size();
            s[0] = batch;
            match t.kind() {
                Kind::Float => tch::Tensor::randn(s.as_slice(), (Kind::Float, graph.device())),
                _ if t.int64_value(&[0, 0]) == 1 => tch::Tensor::ones(s.as_slice(), (Kind::Int64, graph.device())),
                _ => tch::Tensor::randint(span, s.as_slice(), (Kind::Int64, graph.device())) + lo,
            }
        })
        .collect()
}

/// The size of the table the token ids index: the rows of the first weight read from them.
fn token_vocabulary(graph: &Graph) -> Option<i64> {
    let ids =
        graph.inputs().iter().copied().find(|&i| {
            matches!(graph.node(i).op.kind().input_kind(), Some(crate::graph::InputKind::TokenIds { .. }))
        })?;
    graph
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.inputs.first() == Some(&ids))
        .find_map(|(id, _)| graph.param(id, crate::graph::ops::Role::Weight).map(|w| w.size()[0]))
}

/// How well a language model predicts the next token, weighted by token: perplexity
/// exp(mean NLL) and top-1 accuracy over every predicted position (a position whose target is
/// padding does not count), as transformers' loss-based perplexity counts them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NextToken {
    pub perplexity: f64,
    /// Mean negative log-likelihood per predicted token (nats).
    pub nll: f64,
    /// Fraction of predicted tokens whose most likely prediction is the true next token.
    pub accuracy: f64,
    /// Predicted tokens counted.
    pub tokens: i64,
}

/// [`NextToken`] of a decoder (inputs: token ids and attention mask; output: logits (B, T,
/// vocab)) on sequences `ids` (N, T) with an optional right-padding `mask`, `batch_size`
/// sequences at a time, calling `progress(sequences_done)` per batch.
pub fn next_token(
    graph: &Graph,
    ids: &tch::Tensor,
    mask: Option<&tch::Tensor>,
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<NextToken> {
    let n = ids.size()[0];
    let device = graph.device();
    let (mut nll, mut correct, mut tokens) = (0f64, 0i64, 0i64);
    tch::no_grad(|| -> Result<()> {
        let mut start = 0;
        while start < n {
            let len = (batch_size.max(1) as i64).min(n - start);
            let x = ids.f_narrow(0, start, len)?.f_to_device(device)?;
            let m = match mask {
                Some(m) => m.f_narrow(0, start, len)?.f_to_device(device)?,
                None => x.f_ones_like()?,
            };
            let logits = graph.forward(&[x.shallow_clone(), m.shallow_clone()], Mode::Eval)?;
            let t = x.size()[1];
            let pred = logits.f_narrow(1, 0, t - 1)?;
            let target = x.f_narrow(1, 1, t - 1)?;
            let valid = m.f_narrow(1, 1, t - 1)?.f_ne(0)?;
            nll += target_nll(&pred, &target, &valid)?;
            let hits = pred.f_argmax(-1, false)?.f_eq_tensor(&target)?.f_logical_and(&valid)?;
            correct += hits.f_sum(Kind::Int64)?.int64_value(&[]);
            tokens += valid.f_sum(Kind::Int64)?.int64_value(&[]);
            start += len;
            progress(start as usize);
        }
        Ok(())
    })?;
    if tokens == 0 {
        crate::bail!("no token to predict: every sequence is shorter than two real tokens");
    }
    let mean = nll / tokens as f64;
    Ok(NextToken { perplexity: mean.exp(), nll: mean, accuracy: correct as f64 / tokens as f64, tokens })
}
