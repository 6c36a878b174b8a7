//! Attribution criteria: how relevant is each component? One file per criterion family.
//!
//! A criterion implements [`Criterion`]: scores for every component of a [`ComponentSet`]
//! from a reference set. Sample-based criteria implement the smaller [`LatentAttribution`]
//! (per-sample, per-unit attributions for one batch) and get the shared aggregation of
//! the paper's aggregation — absolute value per sample (or signed), summed over the references — from
//! [`PerSample`]. Adding a criterion is one file plus one line in [`spec`].

pub mod gradient;
pub mod integrated_gradients;
pub mod lrp;
pub mod normalize;
pub mod options;
pub mod random;
pub mod reader_input;
pub mod spec;
pub mod weight;

pub use spec::CriterionSpec;

use crate::data::{Batch, Subset};
use crate::error::{Error, Result};
use crate::graph::{Graph, InputKind};
use crate::prune::components::{ComponentLayer, ComponentSet};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// A score for every component of a [`ComponentSet`], indexed globally.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Scores {
    pub values: Vec<f64>,
}

impl Scores {
    /// Checks length and finiteness; a NaN or infinite score names its layer.
    pub fn validated(values: Vec<f64>, components: &ComponentSet, criterion: &str) -> Result<Self> {
        if values.len() != components.total {
            crate::bail!("criterion {criterion} returned {} scores for {} components", values.len(), components.total);
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            let (layer, unit) = components.locate(i);
            crate::bail!(
                "criterion {criterion} produced a non-finite score ({}) for unit {unit} of layer `{}`; \
                 for LRP try a larger epsilon / stabiliser, otherwise check the model's weights",
                values[i],
                layer.name
            );
        }
        Ok(Scores { values })
    }
}

/// A pruning criterion: scores every component from reference samples.
pub trait Criterion {
    /// Name shown in reports.
    fn name(&self) -> String;
    /// Scores every component of `components` (higher = more relevant).
    fn score(&self, graph: &Graph, components: &ComponentSet, refs: &Subset) -> Result<Scores>;
}

/// Per-sample attributions of every unit, for one batch.
pub trait LatentAttribution {
    fn name(&self) -> String;
    /// One (B, count) tensor per component layer, in the set's order.
    fn attribute(&self, graph: &Graph, components: &ComponentSet, batch: &Batch) -> Result<Vec<Tensor>>;
}

/// Makes a [`LatentAttribution`] a [`Criterion`]: per-sample |attribution| (or signed), summed
/// over the reference samples, which are processed in batches.
pub struct PerSample<A> {
    pub inner: A,
    /// Absolute value per sample before summing (the paper's winning "MAG" choice).
    pub absolute: bool,
    /// With `absolute`: sum the signed values first and take |·| of the sum instead.
    pub sum_first: bool,
    pub batch_size: usize,
}

impl<A> PerSample<A> {
    /// Σ |a| over the references (or signed Σ a without `absolute`), in batches of `batch_size`.
    pub fn new(inner: A, absolute: bool, batch_size: usize) -> Self {
        PerSample { inner, absolute, sum_first: false, batch_size }
    }
}

/// A criterion whose scores are scaled per component layer afterwards
/// ([`normalize::normalize_per_layer`]).
pub struct Normalized {
    pub inner: Box<dyn Criterion>,
    pub how: normalize::LayerNormalization,
}

impl Criterion for Normalized {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn score(&self, graph: &Graph, components: &ComponentSet, refs: &Subset) -> Result<Scores> {
        let s = self.inner.score(graph, components, refs)?;
        Ok(normalize::normalize_per_layer(&s, components, self.how))
    }
}

impl<A: LatentAttribution> Criterion for PerSample<A> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn score(&self, graph: &Graph, components: &ComponentSet, refs: &Subset) -> Result<Scores> {
        if refs.is_empty() {
            crate::bail!("the reference set is empty; use at least one reference sample per class");
        }
        let mut totals = vec![0f64; components.total];
        for batch in refs.batches(self.batch_size) {
            // On the graph's device, so masks and labels meet the activations there.
            let batch = batch?.to_device(graph.device())?;
            let attrs = self.inner.attribute(graph, components, &batch)?;
            for (layer, a) in components.layers.iter().zip(attrs) {
                let a = if self.absolute && !self.sum_first { a.f_abs()? } else { a };
                let sums =
                    Vec::<f64>::try_from(a.f_to_kind(Kind::Double)?.f_sum_dim_intlist(0, false, Kind::Double)?)?;
                for (t, s) in totals[layer.offset..layer.offset + layer.count].iter_mut().zip(sums) {
                    *t += s;
                }
            }
        }
        if self.absolute && self.sum_first {
            totals.iter_mut().for_each(|t| *t = t.abs());
        }
        Scores::validated(totals, components, &self.name())
    }
}

/// How values at a read point are reduced to one number per unit and sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// Sum over positions / tokens (relevances, gradients, Taylor terms).
    Sum,
    /// Mean over positions / real tokens (activations).
    Mean,
}

/// The (B, T) attention mask among a batch's inputs, if the graph takes one.
pub fn token_mask<'a>(graph: &Graph, batch: &'a Batch) -> Option<&'a Tensor> {
    graph.input_kinds().iter().position(|k| matches!(k, InputKind::AttentionMask { .. })).map(|i| &batch.inputs[i])
}

/// Reduces a tensor read at a layer's read point to (B, count): conv maps (B, C, H, W) over
/// H, W; token tensors (B, T, D) over real tokens (and, for heads, over each head's dims);
/// flat tensors (B, D) as they are.
pub fn unit_values(t: &Tensor, layer: &ComponentLayer, mask: Option<&Tensor>, reduce: Reduce) -> Result<Tensor> {
    let s = t.size();
    let b = s[0];
    let k = t.kind();
    let out = match s.len() {
        4 => match reduce {
            Reduce::Sum => t.f_sum_dim_intlist([2i64, 3].as_slice(), false, k)?,
            Reduce::Mean => t.f_mean_dim([2i64, 3].as_slice(), false, k)?,
        },
        2 => t.shallow_clone(),
        3 => {
            let (masked, count) = match mask {
                Some(m) => {
                    let m = m.f_to_kind(k)?;
                    (t.f_mul(&m.f_unsqueeze(-1)?)?, m.f_sum_dim_intlist(1, true, k)?.f_clamp_min(1.0)?)
                }
                None => (t.shallow_clone(), Tensor::full([b, 1], s[1] as f64, (k, t.device()))),
            };
            let mut v = masked.f_sum_dim_intlist(1, false, k)?; // (B, D)
            if reduce == Reduce::Mean {
                v = v.f_div(&count)?;
            }
            v
        }
        r => crate::bail!("cannot read units of layer `{}` from a rank-{r} tensor", layer.name),
    };
    match layer.head_dim {
        Some(dh) => {
            let h = layer.count as i64;
            let v = out.f_reshape([b, h, dh])?;
            Ok(match reduce {
                Reduce::Sum => v.f_sum_dim_intlist(2, false, k)?,
                Reduce::Mean => v.f_mean_dim(2, false, k)?,
            })
        }
        None => {
            if out.size()[1] != layer.count as i64 {
                return Err(Error::invalid(format!(
                    "layer `{}` has {} units but its read point carries {} channels",
                    layer.name,
                    layer.count,
                    out.size()[1]
                )));
            }
            Ok(out)
        }
    }
}

/// One-hot of `labels` over the last dimension of `logits`, of its kind and on its device:
/// (B, C) for class labels (B,), or (B, T, V) for next-token targets (B, T), where a position
/// whose target is negative ([`crate::data::corpus::IGNORE`]) gets none.
pub fn one_hot(labels: &Tensor, logits: &Tensor) -> Result<Tensor> {
    let classes = *logits.size().last().unwrap_or(&0);
    let labels = labels.f_to_device(logits.device())?;
    if labels.dim() + 1 != logits.dim() {
        crate::bail!("targets of shape {:?} do not fit outputs of shape {:?}", labels.size(), logits.size());
    }
    // Scattered into zeros of the logits' kind: libtorch's one_hot builds an int64 tensor first,
    // eight bytes per vocabulary entry per position (1.6 GB for 4,096 tokens of a 49k vocabulary).
    let valid = labels.f_ge(0)?.f_unsqueeze(-1)?.f_to_kind(logits.kind())?;
    let mut size = labels.size();
    size.push(classes);
    let mut oh = Tensor::f_zeros(&size, (logits.kind(), logits.device()))?;
    let _ = oh.f_scatter_(-1, &labels.f_clamp_min(0)?.f_unsqueeze(-1)?, &valid)?;
    Ok(oh)
}
