//! Small helpers shared by every layer of glint.

pub mod rng;
pub mod hash;
