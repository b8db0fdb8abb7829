//! `glint bench`.

use clap::Args;

/// Arguments of `glint bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
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
    /// SAE dtype (defaults to the model dtype).
    #[arg(long)]
    pub sae_dtype: Option<String>,
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
