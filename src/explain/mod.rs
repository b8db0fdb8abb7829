//! Explaining features: activation heatmaps over images and the overlays shown to people and LMMs.

pub mod heatmap;
pub mod overlay;
