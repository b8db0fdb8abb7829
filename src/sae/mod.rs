//! Sparse autoencoders in the EleutherAI layout: load, encode, decode.

pub mod codes;
pub mod config;
#[allow(clippy::module_inception)]
pub mod sae;

pub use codes::{SparseCodes, topk_rows};
pub use config::{SaeConfig, layer_of_hookpoint};
pub use sae::Sae;
