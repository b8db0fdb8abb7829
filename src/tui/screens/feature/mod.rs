//! The feature screen (screen 2): a feature's top examples with their heatmaps, its histogram,
//! explanation, scores and label, the full-size view of one example, next / previous feature, and
//! its page: what it writes (logit lens), its nearest features and what fires with it.

pub mod compare_ui;
pub mod page_ui;
pub mod state;
pub mod ui;
mod update;

pub use state::{ExplainState, FeatureState, PageState};
pub use update::TICKS_PER_SECOND;
