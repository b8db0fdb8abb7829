//! `glint sample-data`.

use std::path::PathBuf;

use clap::Args;

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
