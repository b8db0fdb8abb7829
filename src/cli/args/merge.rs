//! `glint --batch merge`.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `glint --batch merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Output store folder.
    pub out: PathBuf,
    /// Shard store folders.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
}
