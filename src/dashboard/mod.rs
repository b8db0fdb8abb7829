//! What a feature page shows beyond its statistics and top examples: what the feature writes
//! into the vocabulary (logit lens), which features point the same way (neighbours), and which
//! fire on the same image tokens (co-firing). Each is computed exactly, on the device that holds
//! the model and SAE; [`page`] computes them together for the workbench and the export, and the
//! store keeps the result.

pub mod cofiring;
pub mod logit_lens;
pub mod neighbours;
pub mod page;

pub use cofiring::{CoFiring, cofiring};
pub use logit_lens::{LogitLens, TokenLogit, logit_lens};
pub use neighbours::{Neighbour, Side, neighbours};
pub use page::{
    COFIRING_IMAGES, FeaturePage, ImageCodes, PAGE_TOP, PageRequest, feature_page,
    feature_page_with, image_codes,
};
