//! glint: a terminal workbench for sparse-autoencoder features of multimodal models.
//!
//! Crate map (dependencies point downwards):
//! - [`cli`]: command-line surface shared by the TUI and `--batch` jobs.
//! - [`commands`]: glue from parsed command lines to jobs.
//! - [`pipeline`]: jobs shared by the CLI and the TUI (probe, cache, …).
//! - [`attribute`]: which SAE latents drive an answer (one forward and one backward).
//! - [`tui`]: the interactive workbench (state, update, panes).
//! - [`engine`]: the model actor: one OS thread owning the model and SAE.
//! - [`model`]: LLaVA-NeXT in candle with a tap at one language-model layer.
//! - [`kernels`]: fused attention softmax and SAE top-k (host reference + CUDA).
//! - [`sae`]: sparse autoencoders in the EleutherAI layout.
//! - [`clip`]: CLIP in candle for CLIP scores of explanations.
//! - [`sample`]: the offline sample world (shapes dataset, tiny checkpoint, tiny SAE).
//! - [`util`]: small shared helpers.

pub mod attribute;
pub mod cli;
pub mod clip;
pub mod commands;
pub mod engine;
pub mod explain;
pub mod kernels;
pub mod model;
pub mod pipeline;
pub mod sae;
pub mod sample;
pub mod score;
pub mod store;
pub mod tui;
pub mod util;
