//! `glint --batch explain`.

use std::path::PathBuf;

use clap::Args;

use crate::explain::select::EvidenceStyle;
use crate::explain::settings;

/// Arguments of `glint --batch explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Store folder.
    #[arg(long, default_value = "glint-cache")]
    pub store: PathBuf,
    /// Features: `all`, a range `A..B`, a list `3,17,42`, or the original's filter JSON file.
    #[arg(long, default_value = "all")]
    pub features: String,
    /// Server root (`http://host:port`), its `/v1`, or the full chat-completions URL.
    #[arg(long, default_value = settings::DEFAULT_EXPLAIN_URL, env = settings::EXPLAIN_URL_ENV)]
    pub base_url: String,
    /// Explainer model name sent to the server (`--model` is the global LLaVA model)
    /// [default: lmms-lab/llava-onevision-qwen2-72b-ov, the original's].
    #[arg(long, value_name = "NAME")]
    pub explainer_model: Option<String>,
    /// Environment variable holding the API key (unset: no Authorization header).
    #[arg(long, default_value = settings::DEFAULT_API_KEY_ENV)]
    pub api_key_env: String,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds allowed per request attempt.
    #[arg(long, default_value_t = settings::DEFAULT_TIMEOUT_S)]
    pub timeout: f64,
    /// Retries per request on timeouts, 429 and 5xx (Retry-After is honoured).
    #[arg(long, default_value_t = settings::DEFAULT_RETRIES)]
    pub retries: u32,
    /// Stop starting requests after this many failed features (0: never).
    #[arg(long, default_value_t = 10)]
    pub max_failures: usize,
    /// Top examples shown per feature.
    #[arg(long, default_value_t = settings::DEFAULT_EXAMPLES)]
    pub examples: usize,
    /// Extra examples: one from each of this many slices of the weaker stored examples.
    #[arg(long, default_value_t = 0)]
    pub quantiles: usize,
    /// Evidence images: mask (the original's darkened base view) or heat (colour heatmap).
    #[arg(long, value_enum, default_value = "mask")]
    pub style: EvidenceStyle,
    /// Longest side of heat images in pixels.
    #[arg(long, default_value_t = settings::DEFAULT_MAX_SIDE)]
    pub max_side: u32,
    /// Prompt template file (default: the shipped explain-v1).
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Cap on generated tokens (0: leave it to the server).
    #[arg(long, default_value_t = settings::DEFAULT_MAX_TOKENS)]
    pub max_tokens: u32,
    /// Mark image parts `"modalities": "multi-images"` (sglang with LLaVA-OneVision, as the original).
    #[arg(long)]
    pub sglang_multi_images: bool,
    /// Dataset folder or manifest, if it moved since caching.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Explain again features already explained with this model and prompt.
    #[arg(long)]
    pub redo: bool,
    /// Explain again features whose stored answer had no [EXPLANATION]: line.
    #[arg(long)]
    pub retry_unparsed: bool,
    /// Send nothing: write each selected feature's images and request body under DIR.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["export_seed", "import_seed"])]
    pub preview: Option<PathBuf>,
    /// Send nothing: write stored explanations as the original's JSON (a file, or a folder
    /// that gets `<module>.json`); --explainer-model picks whose.
    #[arg(long, value_name = "PATH", conflicts_with = "import_seed")]
    pub export_seed: Option<PathBuf>,
    /// Send nothing: read the original's explanation JSON (a file or a folder of them).
    #[arg(long, value_name = "PATH")]
    pub import_seed: Option<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}
