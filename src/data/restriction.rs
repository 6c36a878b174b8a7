//! Domain restriction (the paper's 3-class tasks): the model's output is reduced to the
//! logits of a subset of classes and the evaluation data to samples of those classes.

use super::Subset;
use crate::error::Result;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// A subset of the model's classes, in ascending order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassSubset {
    classes: Vec<i64>,
}

impl ClassSubset {
    /// Explicit classes (deduplicated, sorted); each must be below `num_classes`.
    pub fn new(mut classes: Vec<i64>, num_classes: i64) -> Result<Self> {
        classes.sort_unstable();
        classes.dedup();
        if classes.len() < 2 {
            crate::bail!("a class restriction needs at least two classes, got {classes:?}");
        }
        if let Some(c) = classes.iter().find(|&&c| c < 0 || c >= num_classes) {
            crate::bail!("class {c} does not exist; the model has classes 0..{}", num_classes - 1);
        }
        Ok(ClassSubset { classes })
    }

    /// `k` classes out of `num_classes`, drawn by `seed`.
    pub fn random(k: usize, num_classes: i64, seed: u64) -> Result<Self> {
        if k < 2 || k as i64 > num_classes {
            crate::bail!("cannot draw {k} classes out of {num_classes}; choose between 2 and {num_classes}");
        }
        let mut all: Vec<i64> = (0..num_classes).collect();
        all.shuffle(&mut crate::util::rng(crate::util::derive_seed(seed, "classes")));
        Self::new(all[..k].to_vec(), num_classes)
    }

    pub fn classes(&self) -> &[i64] {
        &self.classes
    }

    /// Keeps the selected classes' logits, (B, C) → (B, k). Selecting (not zeroing the others)
    /// matters: a zeroed logit can still win the argmax when all selected logits are negative.
    pub fn restrict_logits(&self, logits: &Tensor) -> Result<Tensor> {
        Ok(logits.f_index_select(1, &Tensor::from_slice(&self.classes).to_device(logits.device()))?)
    }

    /// Original labels → positions in this subset (labels must belong to the subset).
    pub fn remap_labels(&self, labels: &Tensor) -> Result<Tensor> {
        let v: Vec<i64> = Vec::<i64>::try_from(labels)?;
        let mapped: Result<Vec<i64>> = v
            .iter()
            .map(|l| {
                self.classes.iter().position(|c| c == l).map(|p| p as i64).ok_or_else(|| {
                    crate::error::Error::invalid(format!("label {l} is not in the class subset {:?}", self.classes))
                })
            })
            .collect();
        Ok(Tensor::from_slice(&mapped?))
    }

    /// The samples of `split` whose label is in this subset.
    pub fn filter(&self, split: &Subset) -> Subset {
        split.filter_labels(|l| self.classes.contains(&l))
    }
}
