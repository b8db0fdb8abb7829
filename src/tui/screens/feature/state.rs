//! State of the feature screen and of the explanation requests started from it.

use std::collections::BTreeMap;

use crate::dashboard::FeaturePage;
use crate::tui::data::{ExampleSet, FeatureDetail, Picture};

/// The feature screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureState {
    /// Feature shown (or being loaded).
    pub id: Option<u32>,
    /// Its loaded detail.
    pub detail: Option<FeatureDetail>,
    /// Which examples the grid shows: the top ones or those across the range.
    pub set: ExampleSet,
    /// Selected example (in `set`).
    pub sel: usize,
    /// Full-size view of the selected example open.
    pub full: bool,
    /// The full-resolution picture of example `.0`, once read.
    pub full_picture: Option<((ExampleSet, usize), Picture)>,
    /// The right-hand pane shows the feature page instead of the examples.
    pub show_page: bool,
    /// The feature page of the feature shown, as far as it is known.
    pub page: PageState,
    /// The cursor over the page's linked features (neighbours, then co-firing).
    pub page_sel: usize,
    /// The feature marked for comparison, as it was loaded.
    pub marked: Option<Box<FeatureDetail>>,
    /// The right-hand pane compares the marked feature with the one shown.
    pub comparing: bool,
}

/// Where the shown feature's page stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum PageState {
    /// Not asked for (nor found in the store).
    #[default]
    None,
    /// Being read from the store or computed on the model.
    Loading,
    /// Ready.
    Ready(Box<FeaturePage>),
    /// Why it could not be computed.
    Failed(String),
}

/// Explanation requests in flight and the one waiting for a second key press.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExplainState {
    /// Features being explained, with the tick their request started at.
    pub running: BTreeMap<u32, u64>,
    /// A feature that already has an explanation: pressing the key again asks anew.
    pub confirm: Option<u32>,
}
