//! Sparse autoencoders in the EleutherAI layout: load, encode, decode.

pub mod codes;
pub mod config;
pub mod evaluate;
pub mod intervene;
#[allow(clippy::module_inception)]
pub mod sae;
pub mod topk_device;
pub mod train;

pub use codes::{ACTIVE_MIN, SparseCodes, is_active, topk_rows};
pub use config::{SaeConfig, layer_of_hookpoint};
pub use sae::Sae;
