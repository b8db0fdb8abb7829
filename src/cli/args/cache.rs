//! `glint --batch cache`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::session::encode::TokenSelection;
use crate::store::{DEFAULT_RANGE_SAMPLE, FeatureFilter, RankRule};

/// Arguments of `glint --batch cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Dataset: a folder of images (recursive; read through its manifest.jsonl when it has one,
    /// mask files left out), a JSONL manifest, or a .parquet file or folder of them (Hugging
    /// Face layout). Defaults to the sample shapes.
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
    pub rank: RankRule,
    /// Firing images each feature keeps as a uniform sample across its activation range, shown
    /// as bands on its page and drawn on by the detection and fuzzing scorers (0: none).
    #[arg(long, default_value_t = DEFAULT_RANGE_SAMPLE)]
    pub range_sample: usize,
    /// Features to store: `all`, a range `A..B`, a list `3,17,42`, or a filter JSON file.
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
    /// Images per atomic commit, at least; while the previous commit is still being written,
    /// images keep aggregating and join the next one (up to 16 times as many).
    #[arg(long, default_value_t = 16)]
    pub commit_every: usize,
    /// Positions scored and stored: image (base view and high-resolution tokens, as the
    /// original), image+newline (also each high-resolution row's newline token), text (the
    /// prompt's tokens) or all.
    #[arg(long, value_enum, default_value_t = TokenSelection::Image)]
    pub tokens: TokenSelection,
    /// Print a JSON summary at the end.
    #[arg(long)]
    pub json: bool,
}

impl CacheArgs {
    /// The features to store: `--features` in the feature-list grammar, or `--filter`'s file.
    pub fn feature_filter(&self, hookpoint: &str) -> Result<FeatureFilter> {
        match (&self.features, &self.filter) {
            (Some(text), _) => FeatureFilter::parse(text, hookpoint),
            (None, Some(file)) => FeatureFilter::parse(&file.display().to_string(), hookpoint)
                .with_context(|| format!("--filter {}", file.display())),
            (None, None) => Ok(FeatureFilter::All),
        }
    }
}
