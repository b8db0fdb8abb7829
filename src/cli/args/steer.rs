//! `glint --batch steer`.

use std::path::PathBuf;

use clap::Args;

use crate::generate::{DEFAULT_MODE, DEFAULT_STRENGTH, DEFAULT_UNIT, StrengthUnit};
use crate::sae::intervene::{Direction, Mode, Phase, TokenScope};

/// Arguments of `glint --batch steer`.
#[derive(Debug, Args)]
pub struct SteerArgs {
    /// User prompt, rendered with the chat template.
    #[arg(long)]
    pub prompt: String,
    /// Image shown with the prompt.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Features: a range `A..B`, a list `3,17,42`, or a filter JSON file (`{"model.layers.24": [3, 17]}`).
    #[arg(long)]
    pub features: String,
    /// Value set (replace, clamp) or added (add), in --unit.
    #[arg(long, default_value_t = DEFAULT_STRENGTH, allow_negative_numbers = true)]
    pub strength: f32,
    /// replace: the original's (latent set before top-k, output = SAE reconstruction, error dropped);
    /// clamp: keeps the SAE error, only the feature changes; add: h + strength·direction.
    #[arg(long, value_enum, default_value_t = DEFAULT_MODE)]
    pub mode: Mode,
    /// raw, or max: multiples of each feature's cached max activation (read from --store).
    #[arg(long, value_enum, default_value_t = DEFAULT_UNIT)]
    pub unit: StrengthUnit,
    /// Cache store holding the max activations, for --unit max.
    #[arg(long, default_value = "glint-cache")]
    pub store: PathBuf,
    /// For add: the raw decoder row, or its unit vector.
    #[arg(long, value_enum, default_value = "raw")]
    pub direction: Direction,
    /// prefill, decode or both; defaults to prefill for replace (as the original) and both otherwise.
    #[arg(long, value_enum)]
    pub phase: Option<Phase>,
    /// Positions edited: all, image or text.
    #[arg(long, value_enum, default_value = "all")]
    pub tokens: TokenScope,
    /// Most new tokens per generation.
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus mass kept when sampling.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed of the sampling stream (the same for the default and every steered run).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output JSONL, resumed when it exists; a shard writes `<stem>.shard-<i>-of-<n>.<ext>`.
    #[arg(long, default_value = "steer.jsonl")]
    pub out: PathBuf,
    /// This process's shard `i/n` of the feature list; defaults to the launcher's RANK/WORLD_SIZE or Slurm variables.
    #[arg(long)]
    pub shard: Option<String>,
    /// Stream generated text to stderr as it comes.
    #[arg(long)]
    pub stream: bool,
    /// Print a JSON summary instead of a line.
    #[arg(long)]
    pub json: bool,
}
