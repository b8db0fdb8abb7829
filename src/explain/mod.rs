//! Explaining features: the evidence images of a feature, the prompt, the explainer's answer
//! and the batch that explains many features resumably.

pub mod batch;
pub mod explainer;
pub mod prompt;
pub mod seed_json;
pub mod select;
pub mod settings;

pub use batch::{BatchOptions, BatchSummary, run_batch};
pub use explainer::{ExplainError, Explainer, ExplainerConfig, Stage, explain_feature};
