//! Carrying out a feature-page request: read the page the store keeps, or compute it on the
//! model actor from the feature's top images and keep it.

use anyhow::Result;
use tokio::sync::mpsc::UnboundedSender;

use crate::dashboard::FeaturePage;
use crate::engine::{ModelError, ModelHandle};
use crate::jobs::pages::page_request;
use crate::store::Store;
use crate::tui::app::Event;

/// Post feature `id`'s page as [`Event::PageLoaded`]: the kept one, else (with `compute`) one
/// computed on the model and then kept.
pub(super) fn run_effect(
    id: u32,
    compute: bool,
    model: &ModelHandle,
    store: &Store,
    tx: &UnboundedSender<Event>,
) {
    let (model, store, tx) = (model.clone(), store.clone(), tx.clone());
    tokio::spawn(async move {
        let result = load(id, compute, &model, &store).await;
        let _ = tx.send(Event::PageLoaded { id, result });
    });
}

async fn load(
    id: u32,
    compute: bool,
    model: &ModelHandle,
    store: &Store,
) -> Result<Option<FeaturePage>, String> {
    let fingerprint = store.manifest().sae_fingerprint.clone();
    let (kept, request) = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || -> Result<_> {
            let kept: Option<FeaturePage> = store.page(id, &fingerprint)?;
            let request = match (&kept, compute) {
                (None, true) => Some(page_request(&store, id)?),
                _ => None,
            };
            Ok((kept, request))
        })
        .await
        .map_err(|e| format!("feature {id} page: {e}"))?
        .map_err(|e| format!("{e:#}"))?
    };
    let Some(request) = request else {
        return Ok(kept);
    };
    let page = match model.submit_page(request).await {
        Ok(Ok(page)) => page,
        Ok(Err(ModelError::Superseded | ModelError::Cancelled)) | Err(_) => return Ok(None),
        Ok(Err(e)) => return Err(e.to_string()),
    };
    let (store, keep) = (store.clone(), page.clone());
    tokio::task::spawn_blocking(move || store.put_page(id, &keep.sae_fingerprint, &keep))
        .await
        .map_err(|e| format!("feature {id} page: {e}"))?
        .map_err(|e| format!("{e:#}"))?;
    Ok(Some(page))
}
