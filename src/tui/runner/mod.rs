//! The effect runner: the only place the workbench starts work. Store reads and image decoding
//! run on blocking threads, model jobs on the actor, explainer requests on the async runtime;
//! every result comes back to the UI task as an [`Event`]. The steering and attribution screens'
//! effects are carried out in `steer` and `attrib`, feature pages in `page`.

mod attrib;
mod page;
mod steer;
mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::UnboundedSender;

use super::app::{Effect, Event, ImageSource};
use super::data::{self, FeatureDetail, ImageCache};
use crate::engine::{Job, Lane, ModelError, ModelHandle};
use crate::explain::{Explainer, ExplainerConfig, explain_feature};
use crate::llm::FailureKind;
use crate::store::Store;

/// Feature details kept for instant switching (the shown one's neighbours are read ahead).
const DETAIL_CACHE_LEN: usize = 64;

/// Carries out effects; results come back on `tx`. Call [`Runner::run`] inside a tokio runtime.
pub struct Runner {
    store: Store,
    model: ModelHandle,
    tx: UnboundedSender<Event>,
    images: ImageCache,
    details: Arc<Mutex<HashMap<u32, FeatureDetail>>>,
    explain_cfg: Option<ExplainerConfig>,
    explain_hint: Option<String>,
    explainer: Mutex<Option<Explainer>>,
}

impl Runner {
    /// A runner over the store and model, posting results to `tx`.
    pub fn new(store: Store, model: ModelHandle, tx: UnboundedSender<Event>) -> Runner {
        Runner {
            store,
            model,
            tx,
            images: ImageCache::default(),
            details: Arc::default(),
            explain_cfg: None,
            explain_hint: None,
            explainer: Mutex::new(None),
        }
    }

    /// Explain features with these settings (without them, the explain key says how to set
    /// them up).
    pub fn with_explainer(mut self, cfg: ExplainerConfig) -> Runner {
        self.explain_cfg = Some(cfg);
        self
    }

    /// What to say, with the reason, when the explainer cannot be reached (the server was never
    /// configured, so the likely fix is to name one).
    pub fn with_explainer_hint(mut self, hint: Option<String>) -> Runner {
        self.explain_hint = hint;
        self
    }

    /// Where results are posted.
    pub fn sender(&self) -> UnboundedSender<Event> {
        self.tx.clone()
    }

    /// Watch the store for commits another job lands (every [`watch::STORE_WATCH_PERIOD`]),
    /// posting [`Event::StoreGrew`] for each; call once, inside the runtime.
    pub fn watch_store(&self) {
        watch::spawn(self.store.clone(), self.details.clone(), self.tx.clone());
    }

    /// The model actor's handle.
    pub fn model(&self) -> &ModelHandle {
        &self.model
    }

    /// Start one effect; returns `false` on [`Effect::Quit`].
    pub fn run(&self, effect: Effect) -> bool {
        match effect {
            Effect::Quit => return false,
            Effect::CancelModel => self.model.cancel(),
            Effect::LoadFeature(id) => self.load_feature(id),
            Effect::Prefetch(ids) => self.prefetch(ids),
            Effect::LoadFull { id, set, index } => {
                let (store, tx) = (self.store.clone(), self.tx.clone());
                tokio::task::spawn_blocking(move || {
                    let result = data::load_example(&store, id, set, index, data::FULL_SIDE)
                        .map_err(|e| format!("{e:#}"));
                    let _ = tx.send(Event::FullLoaded {
                        id,
                        set,
                        index,
                        result,
                    });
                });
            }
            Effect::Analyze { ticket, source } => self.analyze(ticket, source),
            Effect::Explain(id) => self.explain(id),
            Effect::SaveLabel { id, text } => {
                let (store, tx) = (self.store.clone(), self.tx.clone());
                tokio::task::spawn_blocking(move || {
                    let result = store
                        .put_label(id, text.as_deref())
                        .map_err(|e| format!("{e:#}"));
                    let _ = tx.send(Event::LabelSaved { id, result });
                });
            }
            Effect::AddToList { name, id, note } => {
                let (store, tx) = (self.store.clone(), self.tx.clone());
                tokio::task::spawn_blocking(move || {
                    let result = store
                        .add_to_list(&name, id, note.as_deref())
                        .map_err(|e| format!("{e:#}"));
                    let _ = tx.send(Event::ListSaved { id, result });
                });
            }
            Effect::Steer(e) => steer::run_effect(e, &self.model, &self.store, &self.tx),
            Effect::Attrib(job) => attrib::run_effect(job, &self.model, &self.store, &self.tx),
            Effect::LoadPage { id, compute } => {
                page::run_effect(id, compute, &self.model, &self.store, &self.tx)
            }
        }
        true
    }

    fn load_feature(&self, id: u32) {
        let cached = self.details.lock().ok().and_then(|m| m.get(&id).cloned());
        if let Some(d) = cached {
            let _ = self.tx.send(Event::FeatureLoaded { id, result: Ok(d) });
            return;
        }
        let (store, tx, images) = (self.store.clone(), self.tx.clone(), self.images.clone());
        let details = self.details.clone();
        tokio::task::spawn_blocking(move || {
            let result = data::load_feature_cached(&store, id, data::THUMB_SIDE, &images)
                .map_err(|e| format!("{e:#}"));
            if let Ok(d) = &result {
                remember(&details, d.clone());
            }
            let _ = tx.send(Event::FeatureLoaded { id, result });
        });
    }

    fn prefetch(&self, ids: Vec<u32>) {
        let (store, images, details) = (
            self.store.clone(),
            self.images.clone(),
            self.details.clone(),
        );
        tokio::task::spawn_blocking(move || {
            for id in ids {
                if details.lock().map_or(true, |m| m.contains_key(&id)) {
                    continue;
                }
                // A failed read ahead is retried (and reported) when the feature is opened.
                if let Ok(d) = data::load_feature_cached(&store, id, data::THUMB_SIDE, &images) {
                    remember(&details, d);
                }
            }
        });
    }

    fn analyze(&self, ticket: u64, source: ImageSource) {
        let path = match source {
            ImageSource::Path(p) => Ok(p),
            ImageSource::Dataset(i) => data::dataset_image(&self.store, i).map(|(p, _)| p),
        };
        let path: PathBuf = match path {
            Ok(p) => p,
            Err(e) => {
                let _ = self.tx.send(Event::ImageLoaded {
                    ticket,
                    result: Err(format!("{e:#}")),
                });
                let result = Err(ModelError::Failed(format!("{e:#}")));
                let _ = self.tx.send(Event::Analyzed { ticket, result });
                return;
            }
        };
        let (tx, p) = (self.tx.clone(), path.clone());
        tokio::task::spawn_blocking(move || {
            let result = data::read_image(&p, data::LARGE_SIDE).map_err(|e| format!("{e:#}"));
            let _ = tx.send(Event::ImageLoaded { ticket, result });
        });
        let reply = self.model.submit(
            Job::Analyze {
                image: path,
                prompt: None,
            },
            Lane::Interactive,
        );
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = reply.await.unwrap_or(Err(ModelError::Stopped));
            let _ = tx.send(Event::Analyzed { ticket, result });
        });
    }

    /// The explainer, set up on first use (it finds the dataset and builds the HTTP client).
    fn explainer(&self) -> Result<Explainer, String> {
        let Some(cfg) = &self.explain_cfg else {
            return Err("no explainer configured: see the README (explainer.toml)".into());
        };
        let mut slot = self
            .explainer
            .lock()
            .map_err(|_| "the explainer setup failed earlier".to_string())?;
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let e = Explainer::new(&self.store, cfg.clone()).map_err(|e| format!("{e:#}"))?;
        *slot = Some(e.clone());
        Ok(e)
    }

    fn explain(&self, id: u32) {
        let tx = self.tx.clone();
        let explainer = match self.explainer() {
            Ok(e) => e,
            Err(why) => {
                let _ = tx.send(Event::Explained {
                    id,
                    result: Err(why),
                });
                return;
            }
        };
        let store = self.store.clone();
        let details = self.details.clone();
        let hint = self.explain_hint.clone();
        tokio::spawn(async move {
            let result =
                explain_feature(&explainer, &store, id)
                    .await
                    .map_err(|e| match (&hint, e.kind) {
                        (Some(h), Some(FailureKind::Network | FailureKind::Timeout)) => {
                            format!("{h} ({})", e.reason)
                        }
                        _ => e.reason,
                    });
            // The cached detail no longer lists every explanation.
            if let Ok(mut m) = details.lock() {
                m.remove(&id);
            }
            let _ = tx.send(Event::Explained { id, result });
        });
    }
}

fn remember(details: &Mutex<HashMap<u32, FeatureDetail>>, d: FeatureDetail) {
    if let Ok(mut m) = details.lock() {
        if m.len() >= DETAIL_CACHE_LEN {
            m.clear();
        }
        m.insert(d.id, d);
    }
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
