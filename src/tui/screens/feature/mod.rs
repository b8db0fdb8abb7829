//! The feature screen (screen 2): a feature's top examples with their heatmaps, its histogram,
//! explanation, scores and label, the full-size view of one example, next / previous feature.

pub mod state;
pub mod ui;
mod update;

pub use state::{ExplainState, FeatureState};
pub use update::TICKS_PER_SECOND;
