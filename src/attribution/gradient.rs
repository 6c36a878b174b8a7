//! Criteria from plain activations and gradients at the components' read points:
//! `activation` (mean |a|), `gradient` (∂y/∂a summed per unit), `taylor` (a·∂y/∂a summed per
//! unit, Molchanov et al.). y is the logit of the true class.

use super::{one_hot, token_mask, unit_values, LatentAttribution, Reduce};
use crate::data::Batch;
use crate::error::Result;
use crate::graph::{Graph, Mode};
use crate::prune::components::ComponentSet;
use tch::Tensor;

/// Activations and gradients of the target logit at each layer's read point.
pub struct LatentGrads {
    pub activations: Vec<Tensor>,
    pub gradients: Vec<Tensor>,
}

/// Forward pass with autograd recording from the path roots (float inputs and embedding
/// outputs), optionally scaled by `alpha` (the integrated-gradients path), then the gradient
/// of the true-class logit at every read point of `comps`.
pub fn latent_grads(graph: &Graph, comps: &ComponentSet, batch: &Batch, alpha: Option<f64>) -> Result<LatentGrads> {
    tch::with_grad(|| {
        let outs = graph.forward_with(&batch.inputs, Mode::Eval, &mut |id, y| {
            let root = graph.node(id).op.kind().is_path_root();
            if root && y.is_floating_point() {
                let base = match alpha {
                    Some(a) => y.detach() * a,
                    None => y.detach(),
                };
                Some(base.set_requires_grad(true))
            } else {
                None
            }
        })?;
        let logits = &outs[graph.output()];
        let target = logits.f_mul(&one_hot(&batch.labels, logits)?)?.f_sum(logits.kind())?;
        let reads: Vec<&Tensor> = comps.layers.iter().map(|l| &outs[l.read_at]).collect();
        let grads = Tensor::f_run_backward(&[&target], &reads, false, false)?;
        Ok(LatentGrads { activations: reads.into_iter().map(|t| t.detach()).collect(), gradients: grads })
    })
}

/// Mean absolute activation per unit.
pub struct Activation;

impl LatentAttribution for Activation {
    fn name(&self) -> String {
        "activation".into()
    }
    fn attribute(&self, graph: &Graph, comps: &ComponentSet, batch: &Batch) -> Result<Vec<Tensor>> {
        let outs = tch::no_grad(|| graph.forward_all(&batch.inputs, Mode::Eval))?;
        let mask = token_mask(graph, batch);
        comps.layers.iter().map(|l| unit_values(&outs[l.read_at].f_abs()?, l, mask, Reduce::Mean)).collect()
    }
}

/// Gradient of the true-class logit, summed per unit.
pub struct Gradient;

impl LatentAttribution for Gradient {
    fn name(&self) -> String {
        "gradient".into()
    }
    fn attribute(&self, graph: &Graph, comps: &ComponentSet, batch: &Batch) -> Result<Vec<Tensor>> {
        let g = latent_grads(graph, comps, batch, None)?;
        let mask = token_mask(graph, batch);
        comps.layers.iter().zip(&g.gradients).map(|(l, t)| unit_values(t, l, mask, Reduce::Sum)).collect()
    }
}

/// First-order Taylor term a·∂y/∂a, summed per unit.
pub struct Taylor;

impl LatentAttribution for Taylor {
    fn name(&self) -> String {
        "taylor".into()
    }
    fn attribute(&self, graph: &Graph, comps: &ComponentSet, batch: &Batch) -> Result<Vec<Tensor>> {
        let g = latent_grads(graph, comps, batch, None)?;
        let mask = token_mask(graph, batch);
        comps
            .layers
            .iter()
            .zip(g.activations.iter().zip(&g.gradients))
            .map(|(l, (a, d))| unit_values(&a.f_mul(d)?, l, mask, Reduce::Sum))
            .collect()
    }
}
