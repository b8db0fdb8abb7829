//! glint: a terminal workbench for sparse-autoencoder features of multimodal models.
//!
//! Crate map (dependencies point downwards):
//! - [`cli`]: command-line surface shared by the TUI and `--batch` jobs.
//! - [`commands`]: glue from parsed command lines to jobs.
//! - [`pipeline`]: jobs shared by the CLI and the TUI (probe, cache, …).
//! - [`tui`]: the interactive workbench (state, update, panes).
//! - [`engine`]: the model actor: one OS thread owning the model and SAE.
//! - [`model`]: LLaVA-NeXT in candle with a tap at one language-model layer.
//! - [`sae`]: sparse autoencoders in the EleutherAI layout.
//! - [`sample`]: the offline sample world (shapes dataset, tiny checkpoint, tiny SAE).
//! - [`util`]: small shared helpers.

pub mod cli;
pub mod commands;
pub mod engine;
pub mod explain;
pub mod model;
pub mod pipeline;
pub mod sae;
pub mod sample;
pub mod store;
pub mod tui;
pub mod util;
