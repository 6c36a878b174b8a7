//! relprune: prune neural networks by attribution (LRP above all) and optimise the attribution
//! method for pruning.
//!
//! The pipeline, in the order data flows and imports point (a module uses only those above it;
//! `tests/architecture.rs` keeps it so):
//!
//! - Model: [`graph`] (typed ops in a DAG: forward, shapes, MACs, safetensors; one file per op
//!   behind `OpKind`), [`models`] (builders with torchvision / Hugging Face names, the zoo),
//!   [`import`] (ONNX files → graphs), [`export`] (graphs → ONNX).
//! - Data: [`data`] (image folders, tensor files, Fashion-MNIST, text; splits and references).
//! - Components: [`prune::components`] (prunable units, depth groups, coupled groups),
//!   [`prune::dependency`] (channel dependencies through each op's channel map).
//! - Scoring: [`attribution`] (the criteria, LRP's rules, the option vocabulary, per-layer
//!   normalisation).
//! - Pruning: [`prune::ranking`] (global order, nested selections), [`prune::masking`] (zeroed
//!   under a guard), [`prune::surgery`] (physically smaller graphs), [`prune::budget`] (MACs /
//!   parameter / accuracy targets), [`prune::compress`] (score → select → surgery → fine-tune).
//! - Measuring: [`metrics`] (accuracy, latency), [`evaluate`] (accuracy curves, A_PR / AUC /
//!   Top-PR), [`experiment`] (a task and one criterion's curve), [`train`] and [`recovery`]
//!   (training and recovery fine-tuning), [`report`] (plots and result files).
//! - Optimisation: [`optimize`] (search space, samplers, early stopping of trials, storage, the
//!   objective).
//! - Workflows: [`workflow`] (prune, curves, study, info: what the command line and other front
//!   ends call, with typed outcomes).
//! - Helpers anyone may use: [`error`], [`util`], [`device`], [`runtime`].

pub mod attribution;
pub mod data;
pub mod device;
pub mod error;
pub mod evaluate;
pub mod experiment;
pub mod export;
pub mod graph;
pub mod import;
pub mod metrics;
pub mod models;
pub mod optimize;
pub mod prune;
pub mod recovery;
pub mod report;
pub mod runtime;
pub mod train;
pub mod util;
pub mod workflow;

pub use error::{Error, Result};

/// What a library user needs for the common workflows, in one import:
/// `use relprune::prelude::*;`.
pub mod prelude {
    pub use crate::attribution::normalize::LayerNormalization;
    pub use crate::attribution::CriterionSpec;
    pub use crate::experiment::{RunOptions, TaskSpec};
    pub use crate::prune::budget::{Selection, Target};
    pub use crate::prune::components::ComponentKind;
    pub use crate::prune::compress::{Amount, CompressConfig};
    pub use crate::workflow::curves::{curves, curves_to, CurveObserver};
    pub use crate::workflow::prune::{prune, prune_session, PruneConfig, PruneOutcome, PruneReport, PruneRequest};
    pub use crate::workflow::study::{run_study, StudyConfig, StudyOutcome};
    pub use crate::workflow::{DataSource, ModelSource, Session};
    pub use crate::{Error, Result};
}
