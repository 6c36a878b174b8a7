//! Integrated Gradients at the latent read points (Sundararajan et al.; "layer integrated
//! gradients"): the input moves along the straight path from a zero baseline (for token
//! models: the word embeddings), and each unit's attribution is
//! (a(x) − a(0)) · mean_k ∂y/∂a(α_k·x), with α_k the midpoints (k − ½)/n of n steps.

use super::gradient::latent_grads;
use super::{token_mask, unit_values, LatentAttribution, Reduce};
use crate::data::Batch;
use crate::error::Result;
use crate::graph::Graph;
use crate::prune::components::ComponentSet;
use tch::Tensor;

pub struct IntegratedGradients {
    pub steps: usize,
}

impl LatentAttribution for IntegratedGradients {
    fn name(&self) -> String {
        format!("integrated-gradients({} steps)", self.steps)
    }
    fn attribute(&self, graph: &Graph, comps: &ComponentSet, batch: &Batch) -> Result<Vec<Tensor>> {
        if self.steps == 0 {
            crate::bail!("integrated gradients needs at least one step");
        }
        let at_x = latent_grads(graph, comps, batch, Some(1.0))?;
        let at_zero = latent_grads(graph, comps, batch, Some(0.0))?;
        let mut sum: Option<Vec<Tensor>> = None;
        for k in 0..self.steps {
            let alpha = (k as f64 + 0.5) / self.steps as f64;
            let g = latent_grads(graph, comps, batch, Some(alpha))?.gradients;
            sum = Some(match sum {
                None => g,
                Some(s) => s.iter().zip(&g).map(|(a, b)| a.f_add(b)).collect::<Result<_, _>>()?,
            });
        }
        let sum = sum.expect("at least one step");
        let mask = token_mask(graph, batch);
        comps
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let delta = at_x.activations[i].f_sub(&at_zero.activations[i])?;
                let avg = sum[i].f_div_scalar(self.steps as f64)?;
                unit_values(&delta.f_mul(&avg)?, l, mask, Reduce::Sum)
            })
            .collect()
    }
}
