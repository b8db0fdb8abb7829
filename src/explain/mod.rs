//! Explaining features: activation heatmaps over images and the overlays shown to people and LMMs.

pub mod batch;
pub mod client;
pub mod command;
pub mod explainer;
pub mod heatmap;
pub mod journal;
#[cfg(test)]
pub(crate) mod mock_server;
pub mod overlay;
pub mod prompt;
pub mod seed_json;
pub mod select;
pub(crate) mod setup;

pub use batch::{BatchOptions, BatchSummary, run_batch};
pub use explainer::{ExplainError, Explainer, ExplainerConfig, Stage, explain_feature};
