//! The workflows a front end calls: each takes plain, typed configuration and returns a typed
//! outcome with everything the command prints or writes. The CLI (and the Python package) only
//! parse options into these, call one function and print; the demo calls the same ones.
//!
//! - [`prune`]: score → select under a budget → surgery → fine-tune → [`prune::PruneOutcome`].
//! - [`curves`]: accuracy curves of one or several criteria → [`crate::report::CurvesReport`].
//! - [`study`]: optimise the attribution method, report the winner → [`study::StudyOutcome`].
//! - [`scores`]: a criterion's per-unit scores, per layer → [`scores::ScoresReport`].
//! - [`info`]: a model's layers, parameters and MACs → [`info::ModelInfo`].
//! - [`language`]: a decoder's perplexity and next-token accuracy → [`language::LmEvaluation`].
//! - [`source`]: where the model and data come from, and the [`Session`] they open into.

pub mod curves;
pub mod info;
pub mod language;
pub mod prune;
pub mod scores;
pub mod source;
pub mod study;

pub use source::{DataSource, ModelSource, Session, SessionData};
