//! Carrying out the steering screen's effects: generations on the model actor, preset files on
//! blocking threads.

use tokio::sync::mpsc::UnboundedSender;

use super::resolve_image;
use crate::engine::{ModelError, ModelHandle, SteerEvent};
use crate::store::Store;
use crate::tui::app::Event;
use crate::tui::screens::steer::preset::Preset;
use crate::tui::screens::steer::{SteerEffect, SteerMsg};

/// Carry out one steering effect; results come back on `tx` as [`Event::Steer`].
pub(super) fn run_effect(
    effect: SteerEffect,
    model: &ModelHandle,
    store: &Store,
    tx: &UnboundedSender<Event>,
) {
    let send = {
        let tx = tx.clone();
        move |m: SteerMsg| {
            let _ = tx.send(Event::Steer(m));
        }
    };
    match effect {
        SteerEffect::Generate { mut request, image } => {
            match image
                .as_deref()
                .map(|i| resolve_image(store, i))
                .transpose()
            {
                Ok(path) => request.image = path,
                Err(e) => {
                    return send(SteerMsg::Gen(SteerEvent::Ended {
                        ticket: request.ticket,
                        result: Err(ModelError::Failed(e)),
                    }));
                }
            }
            model.submit_steer(request, move |e| send(SteerMsg::Gen(e)));
        }
        SteerEffect::SavePreset { path, preset } => {
            tokio::task::spawn_blocking(move || {
                let result = preset.save(&path).map_err(|e| format!("{e:#}"));
                send(SteerMsg::PresetSaved { path, result });
            });
        }
        SteerEffect::LoadPreset(path) => {
            tokio::task::spawn_blocking(move || {
                let result = Preset::load(&path).map_err(|e| format!("{e:#}"));
                send(SteerMsg::PresetLoaded { path, result });
            });
        }
    }
}
