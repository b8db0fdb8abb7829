//! State of the features table: every row, the sorted and filtered view, the selection.

use crate::tui::data::FeatureRow;

/// Columns of the features table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Feature id.
    Id,
    /// Density.
    Density,
    /// Max activation.
    Max,
    /// Images fired.
    Images,
    /// Explanation score.
    Score,
    /// Explanation text (the human label when there is one).
    Explanation,
}

impl Column {
    /// Every column, in table order.
    pub const ALL: [Column; 6] = [
        Column::Id,
        Column::Density,
        Column::Max,
        Column::Images,
        Column::Score,
        Column::Explanation,
    ];

    /// Header text.
    pub fn title(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Density => "density",
            Column::Max => "max",
            Column::Images => "images",
            Column::Score => "score",
            Column::Explanation => "explanation",
        }
    }
}

/// The features table: all rows plus the sorted, filtered view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeaturesState {
    /// Every feature of the store.
    pub rows: Vec<FeatureRow>,
    /// Indices into `rows` shown, in order.
    pub view: Vec<usize>,
    /// Selected position in `view`.
    pub sel: usize,
    /// Sort column index into [`Column::ALL`] and direction.
    pub sort: (usize, bool),
    /// Search text (matches id, explanation or label).
    pub search: String,
    /// Density range kept.
    pub density: Option<(f64, f64)>,
}
