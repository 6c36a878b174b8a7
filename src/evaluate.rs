//! Measuring a model: top-1 accuracy on a split (optionally restricted to a class subset).

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
pub fn count_correct(graph: &Graph, split: &Subset, opts: &EvalOptions, progress: &mut dyn FnMut(usize)) -> Result<i64> {
    tch::no_grad(|| {
        let mut correct = 0i64;
        let mut done = 0usize;
        for batch in split.batches(opts.batch_size) {
            let batch = batch?;
            let logits = graph.forward(&batch.inputs, Mode::Eval)?;
            let (logits, labels) = match &opts.classes {
                Some(c) => (c.restrict_logits(&logits)?, c.remap_labels(&batch.labels)?),
                None => (logits, batch.labels.shallow_clone()),
            };
            let pred = logits.f_argmax(-1, false)?;
            correct += pred.f_eq_tensor(&labels)?.f_sum(Kind::Int64)?.int64_value(&[]);
            done += batch.labels.size()[0] as usize;
            progress(done);
        }
        Ok(correct)
    })
}

/// Top-1 accuracy in [0, 1] on `split`.
pub fn accuracy(graph: &Graph, split: &Subset, opts: &EvalOptions) -> Result<f64> {
    if split.is_empty() {
        crate::bail!("cannot measure accuracy on an empty split");
    }
    let correct = count_correct(graph, split, opts, &mut |_| {})?;
    Ok(correct as f64 / split.len() as f64)
}
