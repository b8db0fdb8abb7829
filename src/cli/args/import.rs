//! `glint --batch import`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::store::{DEFAULT_RANGE_SAMPLE, RankRule};

/// Formats `glint --batch import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// The original system's safetensors layout.
    Seed,
    /// A filter file (`{"model.layers.24": [ids]}`) read into the feature list --list of the
    /// store --out.
    Filter,
}

/// Arguments of `glint --batch import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Input format: seed (the original system's safetensors layout) or filter (a filter file
    /// into a feature list).
    #[arg(long, value_enum, default_value_t = ImportFormat::Seed)]
    pub format: ImportFormat,
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
    pub rank: RankRule,
    /// Firing images each feature keeps as a uniform sample across its activation range, shown
    /// as bands on its page and drawn on by the detection and fuzzing scorers (0: none).
    #[arg(long, default_value_t = DEFAULT_RANGE_SAMPLE)]
    pub range_sample: usize,
    /// The feature list a filter file is read into (--format filter).
    #[arg(long)]
    pub list: Option<String>,
}
