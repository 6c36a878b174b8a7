//! Pruning, step by step: the prunable [`components`] and their channel [`dependency`] groups,
//! the global [`ranking`] of scored components, removal by [`masking`] (zeroed under a guard) or
//! [`surgery`] (physically smaller, with the [`plan`] of what it kept), selection under a
//! [`budget`], [`compress`] (score → select → surgery → fine-tune, in steps), and the default
//! criterion, chosen on the validation split by [`choose`]. A namespace only: each module's
//! imports follow the pipeline (components and dependency below attribution, the rest above
//! it), which `tests/architecture.rs` checks module by module.

pub mod budget;
pub mod choose;
pub mod components;
pub mod compress;
pub mod dependency;
pub mod masking;
pub mod plan;
pub mod ranking;
pub mod surgery;
