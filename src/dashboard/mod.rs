//! What a feature page shows beyond its statistics and top examples: what the feature writes
//! into the vocabulary (logit lens), which features point the same way (neighbours), and which
//! fire on the same image tokens (co-firing). Each is computed exactly, on the device that holds
//! the model and SAE.

pub mod cofiring;
pub mod logit_lens;
pub mod neighbours;

pub use cofiring::{CoFiring, cofiring};
pub use logit_lens::{LogitLens, TokenLogit, logit_lens};
pub use neighbours::{Neighbour, Side, neighbours};
