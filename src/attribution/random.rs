//! The random baseline: independent uniform scores from a seed.

use super::{Criterion, Scores};
use crate::data::Subset;
use crate::error::Result;
use crate::graph::Graph;
use crate::prune::components::ComponentSet;
use rand::RngExt;

pub struct Random {
    pub seed: u64,
}

impl Criterion for Random {
    fn name(&self) -> String {
        "random".into()
    }
    fn score(&self, _graph: &Graph, comps: &ComponentSet, _refs: &Subset) -> Result<Scores> {
        let mut rng = crate::util::rng(crate::util::derive_seed(self.seed, "random-criterion"));
        Scores::validated((0..comps.total).map(|_| rng.random::<f64>()).collect(), comps, "random")
    }
}
