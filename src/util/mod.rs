//! Small helpers shared by every layer of glint.

pub mod hash;
pub mod rng;
