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
    /// Train a TopK SAE on one layer's residual stream over an image dataset (sparsify recipe).
    Train(TrainArgs),
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
    /// Dataset: a folder of images (recursive) or a JSONL manifest. Defaults to the sample shapes.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
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
    /// Output format (seed: the original system's safetensors layout).
    #[arg(long, default_value = "seed")]
    pub format: String,
    /// Store folder to export.
    #[arg(long, default_value = "glint-cache")]
    pub store: PathBuf,
    /// Output folder.
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
    #[arg(long, value_enum, default_value_t = EvalGrid::Base)]
    pub eval_grid: EvalGrid,
    /// A map cell is active above this fraction of the image's maximum activation.
    #[arg(long, default_value_t = 0.0)]
    pub eval_threshold: f32,
    /// Top images per feature in the feature evaluation.
    #[arg(long, default_value_t = 10)]
    pub eval_top: usize,
}
