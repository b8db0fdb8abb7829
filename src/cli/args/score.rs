//! `glint --batch score`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::explain::settings::{DEFAULT_API_KEY_ENV, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S};
use crate::score::Method;
use crate::score::fuzzing::FuzzType;

/// Arguments of `glint --batch score`.
#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    /// Scoring method.
    #[arg(long, value_enum)]
    pub method: Method,
    /// Store folder.
    #[arg(long, default_value = "glint-cache")]
    pub store: PathBuf,
    /// Features: `all`, a range `A..B`, a list `3,17,42`, or the original's filter JSON file.
    #[arg(long, default_value = "all")]
    pub features: String,
    /// Score the newest explanation by this explainer model (default: each feature's newest).
    #[arg(long, value_name = "NAME")]
    pub explainer_model: Option<String>,
    /// Score again features already scored with the same settings.
    #[arg(long)]
    pub force: bool,
    /// Dataset folder or manifest, if it moved since caching.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Shorten explanations into grounding labels with a text model first (the original's step 1).
    #[arg(long)]
    pub refine: bool,
    /// Server of the refining text model (default: --base-url).
    #[arg(long, value_name = "URL")]
    pub refine_url: Option<String>,
    /// Refining text model (the original's judge).
    #[arg(long, default_value = "meta-llama/Llama-3.1-8B-Instruct")]
    pub refine_model: String,
    /// Refinement template file (default: the shipped refine-v1).
    #[arg(long)]
    pub refine_prompt_file: Option<PathBuf>,
    /// Judge server for detection and fuzzing: root, its `/v1`, or the full chat-completions URL.
    #[arg(
        long,
        default_value = "http://localhost:12345",
        env = "GLINT_SCORE_URL"
    )]
    pub base_url: String,
    /// Judge model (vision) for detection and fuzzing.
    #[arg(
        long,
        default_value = "lmms-lab/llava-onevision-qwen2-72b-ov",
        value_name = "NAME"
    )]
    pub scorer_model: String,
    /// Environment variable holding the API key (unset: no Authorization header).
    #[arg(long, default_value = DEFAULT_API_KEY_ENV)]
    pub api_key_env: String,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Seconds allowed per request attempt.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_S)]
    pub timeout: f64,
    /// Retries per request on timeouts, 429 and 5xx.
    #[arg(long, default_value_t = DEFAULT_RETRIES)]
    pub retries: u32,
    /// Mark image parts `"modalities": "multi-images"` (sglang).
    #[arg(long)]
    pub sglang_multi_images: bool,
    /// Judge template file for detection or fuzzing (default: the shipped v1).
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// IOU: grounding service URL (docs/grounding.md); without it, the dataset's ground truth.
    #[arg(long, value_name = "URL")]
    pub grounding_url: Option<String>,
    /// IOU: activation map rule: original (the original's mask < 224 on the base view), any,
    /// a fraction of the image's max (e.g. 0.3) over all tiles, or abs:VALUE.
    #[arg(long, default_value = "original")]
    pub threshold: String,
    /// IOU and CLIP: top images per feature.
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
    /// Detection and fuzzing: activating images, spread over where they come from.
    #[arg(long, default_value_t = 10)]
    pub positives: usize,
    /// Detection and fuzzing: where the activating images come from: range (the feature's
    /// range sample, weak activations as well as strong; the top list on a store cached
    /// without one) or top (its top list, as the original system).
    #[arg(long, value_enum, default_value_t = PositivesFrom::Range)]
    pub positives_from: PositivesFrom,
    /// Detection and fuzzing: non-activating (or, for fuzzing, falsely highlighted) images.
    #[arg(long, default_value_t = 10)]
    pub negatives: usize,
    /// Detection and fuzzing: images per request.
    #[arg(long, default_value_t = 5)]
    pub per_prompt: usize,
    /// Seed of every random draw (negatives, fake highlights, shuffles, CLIP baseline).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Detection and fuzzing: longest side of an image sent, in pixels.
    #[arg(long, default_value_t = 448)]
    pub max_side: u32,
    /// Fuzzing: fakes on non-activating images (default) or elsewhere on the activating ones (active).
    #[arg(long, value_enum, default_value_t = FuzzType::Default)]
    pub fuzz_type: FuzzType,
    /// Fuzzing: tokens at or above this fraction of the example's max are highlighted.
    #[arg(long, default_value_t = 0.3)]
    pub highlight: f32,
    /// CLIP: model folder or hub id in the Hugging Face layout.
    #[arg(long, default_value = "openai/clip-vit-base-patch32")]
    pub clip_model: String,
    /// CLIP: runs of random images for the baseline (0: none; the original uses 30 of 5).
    #[arg(long, default_value_t = 30)]
    pub baseline_runs: usize,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// Where detection and fuzzing draw activating images from (`--positives-from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PositivesFrom {
    /// The feature's range sample.
    Range,
    /// Its top list.
    Top,
}
