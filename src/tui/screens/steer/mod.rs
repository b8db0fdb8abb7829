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

use crate::engine::{SteerEvent, SteerRequest};
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
