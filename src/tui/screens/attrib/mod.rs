//! The attribution screen (screen 5): an image, a prompt and an answer / baseline token pair in,
//! the SAE latents ranked by how much they drive the answer out, with the selected latent's
//! attribution over the image's patches and a jump to its feature screen.
//!
//! The work runs on the model actor ([`crate::engine::ModelHandle::submit_attribute`]); answers
//! of older requests are dropped by ticket.

pub mod state;
pub mod ui;
mod update;

use image::RgbImage;

use crate::attribute::AttributionResult;
use crate::engine::{AttribRequest, ModelError};

pub use state::{AttribInput, AttribSort, AttribState, MapSign};

/// An attribution the runner should start: the request, with its image as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct AttribJob {
    /// The request, without its image.
    pub request: AttribRequest,
    /// The image as typed: a file path or a dataset index of the store.
    pub image: Option<String>,
}

/// The answer to an [`AttribJob`].
#[derive(Debug)]
pub struct AttribDone {
    /// The request.
    pub ticket: u64,
    /// The image, read for drawing (when there is one), or why it could not be read.
    pub rgb: Option<Result<RgbImage, String>>,
    /// The attribution, or why there is none.
    pub result: Result<AttributionResult, ModelError>,
}
