//! The features table (screen 1): every cached feature, sortable by any column, filtered by
//! density and search text, with a jump by number.

pub mod state;
pub mod ui;
mod update;

pub use state::{Column, FeaturesState};
