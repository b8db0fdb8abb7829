//! clap's types: the global flags and one file per subcommand, each with the settings step that
//! turns its parsed flags into the core's typed options.

mod attribute;
mod bench;
mod cache;
mod explain;
mod export;
mod import;
mod merge;
mod model;
mod probe;
mod sample_data;
mod score;
mod steer;
mod train;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub use attribute::AttributeArgs;
pub use bench::{BenchArgs, BenchPart, PagesBenchArgs, StoreBenchArgs};
pub use cache::CacheArgs;
pub use explain::ExplainArgs;
pub use export::{ExportArgs, ExportFormat};
pub use import::{ImportArgs, ImportFormat};
pub use merge::MergeArgs;
pub use model::ModelArgs;
pub use probe::ProbeArgs;
pub use sample_data::SampleDataArgs;
pub use score::{PositivesFrom, ScoreArgs};
pub use steer::SteerArgs;
pub use train::TrainArgs;

/// glint: a terminal workbench for sparse-autoencoder features of multimodal models.
#[derive(Debug, Parser)]
#[command(name = "glint", version, about, long_about = None)]
pub struct Cli {
    /// Run headless (no TUI): print progress and results, exit when done.
    #[arg(long, global = true)]
    pub batch: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    /// Store the workbench opens; without it, a sample store is built on first use in the user
    /// cache folder and opened.
    #[arg(long, env = "GLINT_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,

    /// Terminal graphics for images: auto, kitty, sixel, iterm2 or halfblocks.
    #[arg(long, default_value = "auto")]
    pub graphics: String,

    /// Colour theme of the workbench: dark, light, or auto (light on a light terminal background).
    #[arg(long, default_value = "auto")]
    pub theme: String,

    /// What to do; without one, the interactive workbench opens.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one image (and an optional prompt) to the tap and show the strongest SAE features.
    Probe(ProbeArgs),
    /// Regenerate the offline sample world (shapes dataset, tiny checkpoint, configs).
    SampleData(SampleDataArgs),
    /// Cache SAE activations over an image dataset into a store (resumable, shardable).
    Cache(CacheArgs),
    /// Merge shard stores into one.
    Merge(MergeArgs),
    /// Export a store (the original system's safetensors layout).
    Export(ExportArgs),
    /// Import a cache made by the original system into a store.
    Import(ImportArgs),
    /// Explain features with a vision LMM behind an OpenAI-compatible server (resumable).
    Explain(ExplainArgs),
    /// Measure caching throughput, prefill latency and memory on one 672x672 image.
    Bench(BenchArgs),
    /// Train a TopK SAE on one layer's residual stream over an image dataset (sparsify recipe).
    Train(TrainArgs),
    /// Steer one prompt with each listed feature in turn; default vs steered text as JSONL (resumable).
    Steer(SteerArgs),
    /// Score explanations by IOU, CLIP, detection or fuzzing (resumable).
    Score(ScoreArgs),
    /// Attribute answers to SAE latents (one forward + one backward per item); optional filter file.
    Attribute(AttributeArgs),
}
