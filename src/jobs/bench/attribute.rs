//! Attribution on the benchmark's image and prompt: every latent's effect from one forward and
//! one backward, against the per-latent ablation loop it replaces (one ablation forward timed,
//! times the SAE's latents).

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::attribute::{Attributor, CodeChange, PreparedItem, TokenChoice};
use crate::model::load::LoadedModel;
use crate::model::preprocess::PreprocessedImage;
use crate::sae::Sae;

/// Measured attribution figures.
#[derive(Debug, Clone, Serialize)]
pub struct AttributeBench {
    /// The patched forward with a backward recorded above the tap, seconds.
    pub forward_s: f64,
    /// The backward and the gather of every active latent's gradient, seconds.
    pub backward_s: f64,
    /// Forward + backward + aggregation per latent, seconds (the baseline of `speedup`).
    pub total_s: f64,
    /// Distinct latents with an attribution.
    pub active_latents: usize,
    /// Active (position, latent) pairs.
    pub active_pairs: usize,
    /// One forward with the top latent zero-ablated, seconds.
    pub ablation_s: f64,
    /// `ablation_s` times the SAE's latents: the loop that ablates each latent once.
    pub per_latent_loop_s: f64,
    /// `per_latent_loop_s / total_s`.
    pub speedup: f64,
}

/// Time one attribution of the answer-vs-baseline logit difference (token ids `answer` and
/// `baseline`) for the prompt `ids` with `image`, after one untimed warm-up.
pub fn run(
    model: &LoadedModel,
    sae: &Sae,
    layer: usize,
    ids: &[u32],
    image: &PreprocessedImage,
    (answer, baseline): (u32, u32),
) -> Result<AttributeBench> {
    let images = [crate::model::llava_next::ImageInput {
        pixel_values: &image.pixel_values,
        layout: &image.layout,
    }];
    let (embeds, map) = model.model.embed_sequence(ids, &images)?;
    let choice = |id: u32| TokenChoice {
        text: format!("#{id}"),
        id,
        token: String::new(),
    };
    let item = PreparedItem {
        ids: ids.to_vec(),
        map,
        layout: Some(image.layout.clone()),
        embeds,
        answer: choice(answer),
        baseline: choice(baseline),
    };
    let attributor = Attributor::new(model, sae, layer);
    attributor.run(&item, false)?;
    let t = Instant::now();
    let result = attributor.run(&item, false)?;
    let total_s = t.elapsed().as_secs_f64();
    let top = result.latents.first().map_or(0, |l| l.latent);
    attributor.metric(&item, &CodeChange::Zero(vec![top]), false)?;
    let t = Instant::now();
    attributor.metric(&item, &CodeChange::Zero(vec![top]), false)?;
    let ablation_s = t.elapsed().as_secs_f64();
    let per_latent_loop_s = ablation_s * sae.num_latents() as f64;
    Ok(AttributeBench {
        forward_s: result.timing.forward_s,
        backward_s: result.timing.backward_s,
        total_s,
        active_latents: result.latents.len(),
        active_pairs: result.active_pairs,
        ablation_s,
        per_latent_loop_s,
        speedup: per_latent_loop_s / total_s.max(1e-12),
    })
}
