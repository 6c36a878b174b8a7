//! Reference samples: k per class, drawn from a split by a seed. Attribution scores are
//! computed on these.

use super::{ClassSubset, Subset};
use crate::error::Result;
use rand::seq::SliceRandom;

/// Draws `k` samples of each class (of `classes`, or every class present in `split`).
/// The draw is a seeded shuffle per class, so the same seed gives the same references; the
/// result is ordered by class.
pub fn select_references(split: &Subset, k: usize, seed: u64, classes: Option<&ClassSubset>) -> Result<Subset> {
    if k == 0 {
        crate::bail!("references per class must be at least 1");
    }
    let wanted: Vec<i64> = match classes {
        Some(c) => c.classes().to_vec(),
        None => {
            let mut v: Vec<i64> = (0..split.len()).map(|i| split.label(i)).collect();
            v.sort_unstable();
            v.dedup();
            v
        }
    };
    if wanted.len() < 2 {
        crate::bail!(
            "reference set would cover {} class(es); pruning by attribution needs samples of at least two classes",
            wanted.len()
        );
    }
    let mut chosen = Vec::with_capacity(k * wanted.len());
    for &class in &wanted {
        let mut pool: Vec<usize> =
            (0..split.len()).filter(|&i| split.label(i) == class).map(|i| split.indices[i]).collect();
        if pool.len() < k {
            crate::bail!(
                "class {class} has only {} sample(s) in the split, fewer than the {k} references per class asked for",
                pool.len()
            );
        }
        pool.sort_unstable();
        pool.shuffle(&mut crate::util::rng(crate::util::derive_seed(seed, &format!("refs/{class}"))));
        chosen.extend_from_slice(&pool[..k]);
    }
    Ok(Subset { data: split.data.clone(), indices: chosen })
}

/// `k` samples of `split` drawn by `seed`, with no regard to labels: references from text for a
/// language model, whose sequences have no class.
pub fn select_sequences(split: &Subset, k: usize, seed: u64) -> Result<Subset> {
    if k == 0 {
        crate::bail!("at least one reference sequence is needed");
    }
    if split.len() < k {
        crate::bail!(
            "the reference text has {} sequence(s), fewer than the {k} references asked for; give more text, fewer \
             references or a shorter --seq-len",
            split.len()
        );
    }
    let mut pool = split.indices.clone();
    pool.sort_unstable();
    pool.shuffle(&mut crate::util::rng(crate::util::derive_seed(seed, "refs/sequences")));
    pool.truncate(k);
    Ok(Subset { data: split.data.clone(), indices: pool })
}
