//! `glint bench`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Arguments of `glint bench`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// Measure one part alone instead of the model.
    #[command(subcommand)]
    pub part: Option<BenchPart>,
    /// Model folder or config.json (defaults to --model, else the 8B config of the sample world).
    #[arg(long)]
    pub config: Option<String>,
    /// SAE latents of the random SAE.
    #[arg(long, default_value_t = 131072)]
    pub latents: usize,
    /// SAE top-k.
    #[arg(long, default_value_t = 256)]
    pub k: usize,
    /// Tapped layer (defaults to 24, or the last layer of smaller models).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Timed images.
    #[arg(long, default_value_t = 5)]
    pub images: usize,
    /// Decode steps timed per generation (0 skips the decode benchmark).
    #[arg(long, default_value_t = 64)]
    pub decode_tokens: usize,
    /// Optimizer steps of the SAE-training benchmark on synthetic rows (0 skips it).
    #[arg(long, default_value_t = 0)]
    pub train_steps: usize,
    /// Also time attribution of one item (forward + backward) against the per-latent loop.
    #[arg(long)]
    pub attribute: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parts `glint bench` can measure alone.
#[derive(Debug, Subcommand)]
pub enum BenchPart {
    /// The cache store alone: seeded synthetic SAE codes through the cache job's aggregation
    /// and commits, no model (prints throughput, bytes written and the store's size and bound).
    Store(StoreBenchArgs),
    /// Feature pages on the model flags' model and SAE: the logit lens and neighbour lists
    /// computed, co-firing over a few images, and a kept page read back (prints milliseconds
    /// and a pass over the decoder as the baseline).
    Pages(PagesBenchArgs),
}

/// Arguments of `glint bench pages`.
#[derive(Debug, Args)]
pub struct PagesBenchArgs {
    /// Features timed, spread evenly over the SAE.
    #[arg(long, default_value_t = 16)]
    pub features: usize,
    /// Folder of images the co-firing is counted over (its first 8 by name; defaults to the
    /// sample shapes).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `glint bench store`.
#[derive(Debug, Args)]
pub struct StoreBenchArgs {
    /// SAE latents.
    #[arg(long, default_value_t = 131072)]
    pub latents: usize,
    /// Features per token.
    #[arg(long, default_value_t = 256)]
    pub k: usize,
    /// Scored tokens per image.
    #[arg(long, default_value_t = 2928)]
    pub tokens: usize,
    /// Images fed.
    #[arg(long, default_value_t = 200)]
    pub images: usize,
    /// Examples kept per feature.
    #[arg(long, default_value_t = 50)]
    pub top_n: usize,
    /// Images each feature keeps as its range sample.
    #[arg(long, default_value_t = crate::store::DEFAULT_RANGE_SAMPLE)]
    pub range_sample: usize,
    /// Also run the same codes without a range sample and print what the sample costs.
    #[arg(long)]
    pub range_cost: bool,
    /// Feature frequencies: uniform (a random SAE) or zipf (a trained one).
    #[arg(long, default_value = "uniform")]
    pub profile: crate::store::bench::Profile,
    /// Seed of the codes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per atomic commit.
    #[arg(long, default_value_t = 16)]
    pub commit_every: usize,
    /// Store folder (new or empty) to keep; a temporary one otherwise.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
