//! relprune: prune neural networks by attribution (LRP above all) and optimise the attribution
//! method for pruning.
//!
//! The pipeline, one module per step: [`graph`] (model representation) → [`models`] (builders)
//! → [`data`] (datasets, splits, reference samples).

pub mod data;
pub mod error;
pub mod evaluate;
pub mod graph;
pub mod models;
pub mod runtime;
pub mod train;
pub mod util;

pub use error::{Error, Result};
