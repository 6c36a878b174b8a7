//! relprune: prune neural networks by attribution (LRP above all) and optimise the attribution
//! method for pruning.
//!
//! The pipeline, one module per step: [`graph`] (model representation) → [`models`] (builders)
//! → [`data`] (datasets, splits, reference samples).

pub mod attribution;
pub mod budget;
pub mod components;
pub mod compress;
pub mod data;
pub mod dependency;
pub mod device;
pub mod error;
pub mod evaluate;
pub mod experiment;
pub mod export;
pub mod graph;
pub mod import;
pub mod masking;
pub mod metrics;
pub mod models;
pub mod optimize;
pub mod ranking;
pub mod recovery;
pub mod report;
pub mod runtime;
pub mod surgery;
pub mod train;
pub mod util;
pub mod workflow;

pub use error::{Error, Result};
