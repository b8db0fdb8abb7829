//! The attribution screen (screen 5): an image, a prompt and an answer / baseline token pair in,
//! the SAE latents ranked by how much they drive the answer out, with the selected latent's
//! attribution over the image's patches and a jump to its feature screen.
//!
//! The work runs on the model actor ([`crate::engine::ModelHandle::submit_attribute`]); answers
//! of older requests are dropped by ticket.

pub mod state;
pub mod ui;
mod update;

use std::path::PathBuf;

use image::RgbImage;
use tokio::sync::mpsc::UnboundedSender;

use crate::attribute::AttributionResult;
use crate::engine::{AttribRequest, ModelError, ModelHandle};
use crate::store::Store;
use crate::tui::app::Event;
use crate::tui::data;

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

/// Resolve the job's image, send it to the model actor and post the answer as
/// [`Event::Attributed`].
pub fn run_effect(job: AttribJob, model: &ModelHandle, store: &Store, tx: &UnboundedSender<Event>) {
    let AttribJob { mut request, image } = job;
    let ticket = request.ticket;
    let path = match image
        .as_deref()
        .map(|i| resolve_image(store, i))
        .transpose()
    {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Event::Attributed(AttribDone {
                ticket,
                rgb: None,
                result: Err(ModelError::Failed(e)),
            }));
            return;
        }
    };
    request.image = path.clone();
    let reply = model.submit_attribute(request);
    let tx = tx.clone();
    tokio::spawn(async move {
        let result = reply.await.unwrap_or(Err(ModelError::Stopped));
        let rgb = match (&result, path) {
            (Ok(_), Some(p)) => tokio::task::spawn_blocking(move || {
                data::read_image(&p, data::LARGE_SIDE).map_err(|e| format!("{e:#}"))
            })
            .await
            .ok(),
            _ => None,
        };
        let _ = tx.send(Event::Attributed(AttribDone {
            ticket,
            rgb,
            result,
        }));
    });
}

/// A dataset index of the store (`12` or `#12`), or a file that must exist.
fn resolve_image(store: &Store, text: &str) -> Result<PathBuf, String> {
    if let Ok(i) = text.trim_start_matches('#').parse::<u32>() {
        return data::dataset_image(store, i)
            .map(|(p, _)| p)
            .map_err(|e| format!("{e:#}"));
    }
    let path = PathBuf::from(text);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{text}: no such image file (give a file path or a dataset index)"
        ))
    }
}
