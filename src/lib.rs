//! glint: a terminal workbench for sparse-autoencoder features of multimodal models.
//!
//! Crate map (dependencies point downwards):
//! - [`cli`]: the command line: flags, the settings step and one runner per command.
//! - [`jobs`]: cache, steer, attribute, train, bench, probe: typed options in, summaries out.
//! - [`session`]: a loaded model + SAE pair, image preparation and the image-token encode.
//! - [`dataset`]: image folders, JSONL manifests, parquet; shards.
//! - [`generate`]: the decode loop, sampling and the steering model.
//! - [`explain`]: explaining features with an LMM (evidence, prompt, batch).
//! - [`heatmap`]: activation fields over every tile and the overlays drawn from them.
//! - [`llm`]: the OpenAI-compatible chat client shared by explain and score.
//! - [`score`]: IOU, CLIP, detection and fuzzing scores of explanations.
//! - [`store`]: the sled store of statistics, examples, explanations and scores.
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
pub mod dataset;
pub mod engine;
pub mod explain;
pub mod generate;
pub mod heatmap;
pub mod jobs;
pub mod kernels;
pub mod llm;
pub mod model;
pub mod sae;
pub mod sample;
pub mod score;
pub mod session;
pub mod store;
pub mod tui;
pub mod util;
