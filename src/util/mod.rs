//! Small helpers shared by every layer of glint.

pub mod choice;
pub mod file_hash;
pub mod finite;
pub mod hash;
pub(crate) mod image_processor;
pub mod mem;
pub mod phases;
pub mod pillow;
pub mod progress;
pub(crate) mod prompt_template;
pub mod rng;
pub mod scratch;
pub mod weights_file;
