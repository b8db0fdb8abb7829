//! `glint probe`.

use std::path::PathBuf;

use clap::Args;

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
