//! Carrying out an attribution: resolve the image, run it on the model actor, read the image for
//! drawing once the answer is in.

use tokio::sync::mpsc::UnboundedSender;

use super::resolve_image;
use crate::engine::{ModelError, ModelHandle};
use crate::store::Store;
use crate::tui::app::Event;
use crate::tui::data;
use crate::tui::screens::attrib::{AttribDone, AttribJob};

/// Resolve the job's image, send it to the model actor and post the answer as
/// [`Event::Attributed`].
pub(super) fn run_effect(
    job: AttribJob,
    model: &ModelHandle,
    store: &Store,
    tx: &UnboundedSender<Event>,
) {
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
