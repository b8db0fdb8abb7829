//! The steering panel (screen 4): a prompt and optional image, rows of (feature, mode, strength),
//! and the default and steered generations streaming side by side with the differences marked.
//!
//! Every edit sends a new request to the model actor, which stops the running one within a
//! decode step; events of older requests are dropped by ticket. Presets are TOML or JSON files.

pub mod diff;
pub mod preset;
pub mod state;
pub mod ui;
mod update;

use std::path::PathBuf;

use tokio::sync::mpsc::UnboundedSender;

use crate::engine::{ModelError, ModelHandle, SteerEvent, SteerRequest};
use crate::store::Store;
use crate::tui::app::Event;
use preset::Preset;

pub use state::{SteerInput, SteerRow, SteerState};

/// Work the steering screen asks the runner for.
#[derive(Debug, Clone, PartialEq)]
pub enum SteerEffect {
    /// Send a request to the model actor; `image` is resolved first (a dataset index or a path).
    Generate {
        /// The request, without its image.
        request: SteerRequest,
        /// The image as typed.
        image: Option<String>,
    },
    /// Write a preset file.
    SavePreset {
        /// Where.
        path: PathBuf,
        /// What.
        preset: Preset,
    },
    /// Read a preset file.
    LoadPreset(PathBuf),
}

/// Results for the steering screen.
#[derive(Debug)]
pub enum SteerMsg {
    /// A generation event from the model actor.
    Gen(SteerEvent),
    /// A preset was written, or why not.
    PresetSaved {
        /// The file.
        path: PathBuf,
        /// Success or the error text (naming the file).
        result: Result<(), String>,
    },
    /// A preset was read, or why not.
    PresetLoaded {
        /// The file.
        path: PathBuf,
        /// The preset or the error text (naming the file).
        result: Result<Preset, String>,
    },
}

/// Carry out one steering effect; results come back on `tx` as [`Event::Steer`].
pub fn run_effect(
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

/// A dataset index of the store, or a file that must exist.
fn resolve_image(store: &Store, text: &str) -> Result<PathBuf, String> {
    if let Ok(i) = text.trim_start_matches('#').parse::<u32>() {
        return crate::tui::data::dataset_image(store, i)
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
