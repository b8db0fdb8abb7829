//! `glint --batch export`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Formats `glint --batch export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The original system's safetensors layout (a folder).
    Seed,
    /// Features with explanations, labels and scores, as CSV.
    Csv,
    /// Features with explanations, labels, scores and pages, as JSON.
    Json,
    /// One feature list of the store (--list) as the original system's filter file.
    Filter,
}

/// Arguments of `glint --batch export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format (seed: the original system's safetensors layout; csv or json: features
    /// with explanations and scores).
    #[arg(long, value_enum, default_value_t = ExportFormat::Seed)]
    pub format: ExportFormat,
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
    /// The feature list to write (--format filter); the workbench's B adds to lists.
    #[arg(long)]
    pub list: Option<String>,
    /// Compute the missing feature pages (logit lens, neighbours, co-firing) of these features
    /// with the model first (--format json): `all` (every feature that fired), `A..B`, `3,17`
    /// or a filter file. Takes the model flags (--model, --sae, --device).
    #[arg(long, value_name = "FEATURES")]
    pub pages: Option<String>,
}
