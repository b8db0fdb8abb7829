//! Small helpers shared by every layer of glint.

pub mod hash;
pub(crate) mod image_processor;
pub(crate) mod prompt_template;
pub mod mem;
pub mod rng;
