//! The image screen (screen 3): one image run through the model, the features that fire on it, and
//! a patch cursor that lists what fires at a token.

pub mod state;
pub mod ui;
mod update;

pub use state::{ImageFocus, ImageState, TokenHere};
