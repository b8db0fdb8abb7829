//! Command-line surface: global flags and subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    #[arg(long, global = true, env = "GLINT_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,

    /// Terminal graphics for images: auto, kitty, sixel, iterm2 or halfblocks.
    #[arg(long, global = true, default_value = "auto")]
    pub graphics: String,

    /// Colour theme of the workbench: dark or light.
    #[arg(long, global = true, default_value = "dark")]
    pub theme: String,

    /// What to do; without one, the interactive workbench opens.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where the model and SAE come from and how they run.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// LLaVA-NeXT model: a local Hugging Face folder, a hub id, or a config.json (with --random-weights).
    /// Defaults to the sample world's tiny checkpoint.
    #[arg(long, global = true, env = "GLINT_MODEL")]
    pub model: Option<String>,

    /// SAE: a hookpoint folder (cfg.json + sae.safetensors), a root holding one, or a hub id.
    /// Defaults to the sample world's SAE.
    #[arg(long, global = true, env = "GLINT_SAE")]
    pub sae: Option<String>,

    /// Hookpoint folder inside an SAE root or hub repo (e.g. model.layers.24).
    #[arg(long, global = true)]
    pub hookpoint: Option<String>,

    /// Device: cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "cpu", env = "GLINT_DEVICE")]
    pub device: String,

    /// Model compute dtype: f32, bf16 or f16.
    #[arg(long, global = true, default_value = "f32")]
    pub dtype: String,

    /// Invent deterministic weights from this seed instead of reading them (benchmarks).
    #[arg(long, global = true, value_name = "SEED", num_args = 0..=1, default_missing_value = "0")]
    pub random_weights: Option<u64>,

    /// Largest image accepted, in pixels (width x height).
    #[arg(long, global = true, default_value_t = 40_000_000)]
    pub max_pixels: u64,
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
    Score(crate::score::command::ScoreArgs),
    /// Attribute answers to SAE latents (one forward + one backward per item); optional filter file.
    Attribute(crate::pipeline::attribute::AttributeArgs),
}

/// Arguments of `glint --batch steer`.
#[derive(Debug, Args)]
pub struct SteerArgs {
    /// User prompt, rendered with the chat template.
    #[arg(long)]
    pub prompt: String,
    /// Image shown with the prompt.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Features: a filter JSON (`{"model.layers.24": [3, 17]}`), a list `3,17,42`, or a range `A..B`.
    #[arg(long)]
    pub features: String,
    /// Value set (replace, clamp) or added (add), in --unit.
    #[arg(long, default_value_t = 50.0, allow_negative_numbers = true)]
    pub strength: f32,
    /// replace: the original's (latent set before top-k, output = SAE reconstruction, error dropped);
    /// clamp: keeps the SAE error, only the feature changes; add: h + strength·direction.
    #[arg(long, default_value = "replace")]
    pub mode: crate::sae::intervene::Mode,
    /// raw, or max: multiples of each feature's cached max activation (read from --store).
    #[arg(long, default_value = "raw")]
    pub unit: crate::pipeline::generate::StrengthUnit,
    /// Cache store holding the max activations, for --unit max.
    #[arg(long, default_value = "glint-cache")]
    pub store: PathBuf,
    /// For add: the raw decoder row, or its unit vector.
    #[arg(long, default_value = "raw")]
    pub direction: crate::sae::intervene::Direction,
    /// prefill, decode or both; defaults to prefill for replace (as the original) and both otherwise.
    #[arg(long)]
    pub phase: Option<crate::sae::intervene::Phase>,
    /// Positions edited: all, image or text.
    #[arg(long, default_value = "all")]
    pub tokens: crate::sae::intervene::TokenScope,
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

/// Arguments of `glint probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Image file to probe.
    #[arg(long)]
    pub image: PathBuf,
    /// User prompt, rendered with the chat template; without it the sequence is `<bos><image>`.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Decoder layer to tap (defaults to the SAE's hookpoint layer).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Features to list per image and per token.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write input_ids, residual, top_acts, top_indices and image_token_mask to a safetensors file.
    #[arg(long, value_name = "FILE")]
    pub dump: Option<PathBuf>,
    /// Draw the strongest feature's heatmap over the image in the terminal.
    #[arg(long)]
    pub show: bool,
}

/// Arguments of `glint sample-data`.
#[derive(Debug, Args)]
pub struct SampleDataArgs {
    /// Output folder.
    #[arg(long, default_value = "sample-data")]
    pub out: PathBuf,
    /// Seed for every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write a randomly initialised SAE (the committed one is trained).
    #[arg(long)]
    pub random_sae: bool,
}

/// Arguments of `glint --batch cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Dataset: a folder of images (recursive), a JSONL manifest, or a .parquet file or folder of
    /// them (Hugging Face layout). Defaults to the sample shapes.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Parquet datasets: read only the files of this split (`NAME-*.parquet`).
    #[arg(long)]
    pub split: Option<String>,
    /// Store folder; an existing store with the same manifest is resumed.
    #[arg(long, default_value = "glint-cache")]
    pub out: PathBuf,
    /// Examples kept per feature.
    #[arg(long, default_value_t = 50)]
    pub top_n: usize,
    /// Example ranking: max (over all image tokens) or mean-base (the original's rule).
    #[arg(long, default_value = "max")]
    pub rank: String,
    /// Features to store, as a range `A..B`.
    #[arg(long, conflicts_with = "filter")]
    pub features: Option<String>,
    /// Features to store, as the original's filter JSON (`{"model.layers.24": [0, 1]}`).
    #[arg(long)]
    pub filter: Option<PathBuf>,
    /// This process's shard `i/n`; defaults to the launcher's RANK/WORLD_SIZE or Slurm variables.
    #[arg(long)]
    pub shard: Option<String>,
    /// Only the first N images (after shuffling).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Shuffle the dataset (with --seed) before limiting.
    #[arg(long)]
    pub shuffle: bool,
    /// Seed of the shuffle.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per atomic commit.
    #[arg(long, default_value_t = 16)]
    pub commit_every: usize,
    /// Print a JSON summary at the end.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `glint --batch merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Output store folder.
    pub out: PathBuf,
    /// Shard store folders.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
}

/// Arguments of `glint --batch export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format (seed: the original system's safetensors layout; csv or json: features
    /// with explanations and scores).
    #[arg(long, default_value = "seed")]
    pub format: String,
    /// Store folder to export.
    #[arg(long, default_value = "glint-cache")]
    pub store: PathBuf,
    /// Output folder (seed), or file (csv, json; `-` for standard output).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of latent-range files.
    #[arg(long, default_value_t = 128)]
    pub n_splits: usize,
    /// Drop the last feature of every split, as the original system does.
    #[arg(long)]
    pub reproduce_split_bug: bool,
}

/// Arguments of `glint --batch import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Input format (seed: the original system's safetensors layout).
    #[arg(long, default_value = "seed")]
    pub format: String,
    /// The original cache's save_dir (holding `<hookpoint>/<start>_<end>.safetensors`).
    #[arg(long)]
    pub from: PathBuf,
    /// The dataset the cache was made from (same order).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Output store folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Examples kept per feature.
    #[arg(long, default_value_t = 50)]
    pub top_n: usize,
    /// Example ranking: max or mean-base.
    #[arg(long, default_value = "mean-base")]
    pub rank: String,
}

/// Which sequence positions feed SAE training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainTokens {
    /// Image tokens of the base view and the high-resolution map (no newline tokens).
    Image,
    /// Text tokens only.
    Text,
    /// Every position.
    All,
}

/// Token grid of the activation maps scored against ground-truth masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalGrid {
    /// The base view (as the original system draws its maps).
    Base,
    /// The high-resolution map.
    Highres,
    /// Per feature, the grid holding more of its activation.
    Auto,
}

/// How activation maps are upsampled to pixels in the feature evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalUpsample {
    /// Each pixel takes its cell's value.
    Nearest,
    /// Interpolated between cell centres.
    Bilinear,
}

/// How a feature's top images are ranked in the feature evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalRank {
    /// Mean activation over the map's cells (the original's ranking).
    Mean,
    /// Largest activation.
    Max,
}

/// Arguments of `glint --batch train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Images: a JSONL manifest (masks in it enable the feature check) or a folder. Defaults to the
    /// sample shapes.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Use only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Root the SAE is written to, as <out>/model.layers.<L>/{cfg.json, sae.safetensors}.
    #[arg(long)]
    pub out: PathBuf,
    /// Folder for the checkpoint, log, report and activation cache (default: --out).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Decoder layer whose output is read (default: the middle layer).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Dictionary width (default: 32 x the hidden size).
    #[arg(long)]
    pub latents: Option<usize>,
    /// Latents kept per token.
    #[arg(long, default_value_t = 32)]
    pub k: usize,
    /// Optimizer steps (default: one epoch).
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Passes over the training images.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Tokens per optimizer step (a batch holds between this and twice this many).
    #[arg(long, default_value_t = 4096)]
    pub batch_tokens: usize,
    /// Tokens gathered (whole images) before shuffling.
    #[arg(long, default_value_t = 32768)]
    pub buffer_tokens: usize,
    /// Peak learning rate (default: 2e-4 / sqrt(latents / 2^14)).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Linear warm-up steps (default: a tenth of the run, at most 1000).
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Weight of the AuxK loss on dead latents (0 turns it off).
    #[arg(long, default_value_t = 1.0 / 32.0)]
    pub auxk_alpha: f64,
    /// A latent idle for more than this many tokens counts as dead.
    #[arg(long, default_value_t = 10_000_000)]
    pub dead_threshold: u64,
    /// Add the multi-TopK (4k) loss term.
    #[arg(long)]
    pub multi_topk: bool,
    /// Seed of the initialisation, data order and held-out split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Which positions are training tokens.
    #[arg(long, value_enum, default_value_t = TrainTokens::Image)]
    pub tokens: TrainTokens,
    /// Images held out of training to measure FVU on.
    #[arg(long, default_value_t = 0)]
    pub holdout: usize,
    /// Checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 1000)]
    pub save_every: u64,
    /// Progress line and log record every N steps.
    #[arg(long, default_value_t = 50)]
    pub log_every: u64,
    /// Stop after N steps in this invocation (with a checkpoint); --resume continues.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Continue the run checkpointed in the work folder (same options).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Discard a checkpoint, log and report already in the work folder.
    #[arg(long)]
    pub force: bool,
    /// Keep the activations on disk (<work>/activations) so the model runs once per image.
    #[arg(long)]
    pub cache_activations: bool,
    /// Skip training; evaluate the SAE already in --out.
    #[arg(long, conflicts_with_all = ["resume", "force"])]
    pub eval_only: bool,
    /// Skip the feature-mask evaluation.
    #[arg(long)]
    pub no_eval: bool,
    /// Grid of the activation maps in the feature evaluation.
    #[arg(long, value_enum, default_value_t = EvalGrid::Auto)]
    pub eval_grid: EvalGrid,
    /// Upsampling of the activation maps to pixels in the feature evaluation.
    #[arg(long, value_enum, default_value_t = EvalUpsample::Bilinear)]
    pub eval_upsample: EvalUpsample,
    /// A map pixel is active above this fraction of the image's maximum activation.
    #[arg(long, default_value_t = 0.5)]
    pub eval_threshold: f32,
    /// Ranking of a feature's images in the feature evaluation.
    #[arg(long, value_enum, default_value_t = EvalRank::Max)]
    pub eval_rank: EvalRank,
    /// Top images per feature in the feature evaluation.
    #[arg(long, default_value_t = 10)]
    pub eval_top: usize,
}

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

/// Parts `glint bench` can measure alone.
#[derive(Debug, Subcommand)]
pub enum BenchPart {
    /// The cache store alone: seeded synthetic SAE codes through the cache job's aggregation
    /// and commits, no model (prints throughput, bytes written and the store's size and bound).
    Store(StoreBenchArgs),
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
    #[arg(
        long,
        default_value = "http://localhost:12345",
        env = "GLINT_EXPLAIN_URL"
    )]
    pub base_url: String,
    /// Explainer model name sent to the server (`--model` is the global LLaVA model)
    /// [default: lmms-lab/llava-onevision-qwen2-72b-ov, the original's].
    #[arg(long, value_name = "NAME")]
    pub explainer_model: Option<String>,
    /// Environment variable holding the API key (unset: no Authorization header).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds allowed per request attempt.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// Retries per request on timeouts, 429 and 5xx (Retry-After is honoured).
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Stop starting requests after this many failed features (0: never).
    #[arg(long, default_value_t = 10)]
    pub max_failures: usize,
    /// Top examples shown per feature.
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
    /// Extra examples: one from each of this many slices of the weaker stored examples.
    #[arg(long, default_value_t = 0)]
    pub quantiles: usize,
    /// Evidence images: mask (the original's darkened base view) or heat (colour heatmap).
    #[arg(long, default_value = "mask")]
    pub style: String,
    /// Longest side of heat images in pixels.
    #[arg(long, default_value_t = 672)]
    pub max_side: u32,
    /// Prompt template file (default: the shipped explain-v1).
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Cap on generated tokens (0: leave it to the server).
    #[arg(long, default_value_t = 512)]
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
