//! State of the feature screen and of the explanation requests started from it.

use std::collections::BTreeMap;

use crate::tui::data::{FeatureDetail, Picture};

/// The feature screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureState {
    /// Feature shown (or being loaded).
    pub id: Option<u32>,
    /// Its loaded detail.
    pub detail: Option<FeatureDetail>,
    /// Selected example.
    pub sel: usize,
    /// Full-size view of the selected example open.
    pub full: bool,
    /// The full-resolution picture of example `.0`, once read.
    pub full_picture: Option<(usize, Picture)>,
}

/// Explanation requests in flight and the one waiting for a second key press.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExplainState {
    /// Features being explained, with the tick their request started at.
    pub running: BTreeMap<u32, u64>,
    /// A feature that already has an explanation: pressing the key again asks anew.
    pub confirm: Option<u32>,
}
