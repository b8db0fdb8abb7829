//! Activation heatmaps: per-token activations laid over the image (every tile), and the
//! overlays drawn from them for people (intensity) and explainers (the original's mask).

pub mod field;
pub mod overlay;

pub use field::*;
