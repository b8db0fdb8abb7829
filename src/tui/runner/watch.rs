//! Watching the store while another job writes it: each commit it lands becomes new feature
//! rows on screen, and the feature details read before are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::store::Store;
use crate::tui::app::Event;
use crate::tui::data::{self, FeatureDetail};

/// How often the workbench asks the store whether it took commits.
pub const STORE_WATCH_PERIOD: Duration = Duration::from_secs(2);

/// What tells one commit from the next.
fn mark(store: &Store) -> Option<(u64, u64, bool)> {
    let p = store.progress().ok()?;
    Some((p.images, p.next_image as u64, p.complete))
}

/// Watch `store` until `tx` closes, sending [`Event::StoreGrew`] after each change.
pub(super) fn spawn(
    store: Store,
    details: Arc<Mutex<HashMap<u32, FeatureDetail>>>,
    tx: UnboundedSender<Event>,
) {
    tokio::spawn(async move {
        let mut seen = {
            let s = store.clone();
            tokio::task::spawn_blocking(move || mark(&s))
                .await
                .ok()
                .flatten()
        };
        let mut every = tokio::time::interval(STORE_WATCH_PERIOD);
        every.tick().await;
        loop {
            every.tick().await;
            if tx.is_closed() {
                return;
            }
            let s = store.clone();
            let Ok(now) = tokio::task::spawn_blocking(move || mark(&s)).await else {
                continue;
            };
            if now.is_none() || now == seen {
                continue;
            }
            let s = store.clone();
            let read = tokio::task::spawn_blocking(move || {
                s.forget_cached_state();
                Ok::<_, anyhow::Error>((data::feature_rows(&s)?, crate::tui::store_title(&s)))
            })
            .await;
            let Ok(Ok((rows, title))) = read else {
                continue;
            };
            seen = now;
            if let Ok(mut d) = details.lock() {
                d.clear();
            }
            if tx.send(Event::StoreGrew { rows, title }).is_err() {
                return;
            }
        }
    });
}
