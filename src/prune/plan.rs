//! What surgery kept, in the unpruned model's numbering: for every parameter it sliced, the kept
//! indices per dimension, and for every pruned layer, its kept units. A front end that holds
//! the model in another framework (the Python package holds the user's `nn.Module`, whose
//! `state_dict` names are the parameter keys of an import) slices its own tensors by it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The kept entries of one parameter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamPlan {
    /// The unpruned parameter's shape.
    pub shape: Vec<i64>,
    /// (dimension, kept indices in ascending order) for each sliced dimension.
    pub kept: Vec<(usize, Vec<i64>)>,
}

/// The kept units of one pruned layer (filters, neurons or heads).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerPlan {
    /// Units the unpruned layer had.
    pub count: i64,
    /// The units kept, in ascending order.
    pub kept: Vec<i64>,
}

impl LayerPlan {
    /// The units removed, in ascending order.
    pub fn removed(&self) -> Vec<i64> {
        let mut kept = self.kept.iter().peekable();
        (0..self.count)
            .filter(|u| {
                if kept.peek() == Some(&u) {
                    kept.next();
                    false
                } else {
                    true
                }
            })
            .collect()
    }
}

/// Which entries of each parameter, and which units of each layer, a pruning kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Parameter key → what it kept; parameters that kept everything are absent.
    pub params: BTreeMap<String, ParamPlan>,
    /// Layer name → its kept units; layers that lost nothing are absent.
    pub layers: BTreeMap<String, LayerPlan>,
}

impl Plan {
    /// Records that `key` (of shape `shape` before this surgery) kept `kept` along `dim`.
    pub fn keep_param(&mut self, key: &str, shape: &[i64], dim: usize, kept: &[i64]) {
        let p =
            self.params.entry(key.to_string()).or_insert_with(|| ParamPlan { shape: shape.to_vec(), kept: Vec::new() });
        match p.kept.iter_mut().find(|(d, _)| *d == dim) {
            // Sliced twice along one dimension (a parameter shared by two edited nodes):
            // the second selection indexes the first's result.
            Some((_, prev)) => *prev = kept.iter().map(|&i| prev[i as usize]).collect(),
            None => {
                p.kept.push((dim, kept.to_vec()));
                p.kept.sort_by_key(|(d, _)| *d);
            }
        }
    }

    /// Records that layer `name` of `count` units kept `kept`.
    pub fn keep_units(&mut self, name: &str, count: i64, kept: Vec<i64>) {
        self.layers.insert(name.to_string(), LayerPlan { count, kept });
    }

    /// This plan followed by `next` (a later surgery on this one's result), in the first
    /// model's numbering.
    pub fn then(&self, next: &Plan) -> Plan {
        let mut out = self.clone();
        for (key, p) in &next.params {
            for (dim, kept) in &p.kept {
                out.keep_param(key, &p.shape, *dim, kept);
            }
        }
        for (name, l) in &next.layers {
            let kept = match self.layers.get(name) {
                Some(first) => l.kept.iter().map(|&u| first.kept[u as usize]).collect(),
                None => l.kept.clone(),
            };
            let count = self.layers.get(name).map_or(l.count, |first| first.count);
            out.layers.insert(name.clone(), LayerPlan { count, kept });
        }
        out
    }

    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty() && self.layers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composition_maps_later_indices_into_the_first_numbering() {
        let mut a = Plan::default();
        a.keep_param("w", &[6, 4], 0, &[0, 2, 3, 5]);
        a.keep_units("l", 6, vec![0, 2, 3, 5]);
        let mut b = Plan::default();
        b.keep_param("w", &[4, 4], 0, &[1, 3]);
        b.keep_param("w", &[4, 4], 1, &[0, 1]);
        b.keep_units("l", 4, vec![1, 3]);
        let c = a.then(&b);
        let w = &c.params["w"];
        assert_eq!(w.shape, vec![6, 4]);
        assert_eq!(w.kept, vec![(0, vec![2, 5]), (1, vec![0, 1])]);
        assert_eq!(c.layers["l"], LayerPlan { count: 6, kept: vec![2, 5] });
        assert_eq!(c.layers["l"].removed(), vec![0, 1, 3, 4]);
    }

    #[test]
    fn a_second_slice_of_one_dimension_indexes_the_first() {
        let mut p = Plan::default();
        p.keep_param("w", &[5], 0, &[1, 2, 4]);
        p.keep_param("w", &[3], 0, &[0, 2]);
        assert_eq!(p.params["w"].kept, vec![(0, vec![1, 4])]);
        assert_eq!(p.params["w"].shape, vec![5]);
    }
}
