//! `glint --batch attribute`.

use std::path::PathBuf;

use clap::Args;

use crate::jobs::attribute::AttributeJob;

/// Arguments of `glint --batch attribute`.
#[derive(Debug, Clone, Args)]
pub struct AttributeArgs {
    /// JSON list of `{"prompt", "answer", "baseline", "image"}` (the original's probing data).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Output JSON: one entry per item with its top latents.
    #[arg(long, default_value = "attribution.json")]
    pub out: PathBuf,
    /// Latents listed per item.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Also write a filter file of the top K latents (`{"model.layers.L": [ids…]}`).
    #[arg(long, value_name = "K")]
    pub create_filters: Option<usize>,
    /// Rank by the image-token part of the attribution instead of the total.
    #[arg(long)]
    pub image_only: bool,
    /// Rank the listed latents by magnitude instead of signed value (filters stay signed).
    #[arg(long)]
    pub by_abs: bool,
    /// Folder of the filter file `filters_top_<K>_<data stem>.json`.
    #[arg(long, default_value = "filters")]
    pub filters_dir: PathBuf,
    /// Wrap each prompt in the chat template (the original's prompts are formatted already).
    #[arg(long)]
    pub chat: bool,
    /// Decoder layer to tap (defaults to the SAE's hookpoint layer).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Skip the plain (SAE-free) forward that checks the patched metric.
    #[arg(long)]
    pub no_plain_check: bool,
    /// Also time one ablation forward per item, to compare with a per-latent loop.
    #[arg(long)]
    pub time_ablation: bool,
}

impl AttributeArgs {
    /// The job the flags describe (the layer picks the session, not the job).
    pub fn job(&self) -> AttributeJob {
        let a = self;
        AttributeJob {
            data: a.data.clone(),
            out: a.out.clone(),
            top: a.top,
            create_filters: a.create_filters,
            image_only: a.image_only,
            by_abs: a.by_abs,
            filters_dir: a.filters_dir.clone(),
            chat: a.chat,
            no_plain_check: a.no_plain_check,
            time_ablation: a.time_ablation,
        }
    }
}
