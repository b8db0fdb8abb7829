//! CLIP score, as the original's CLIP scorer: `max(100·cos, 0)` between the label and each of
//! the feature's top images (unmasked), against a baseline of the same label on random images of
//! the dataset (the original draws 30 runs of 5).

use std::path::PathBuf;

use anyhow::{Context, Result};
use image::DynamicImage;
use serde_json::json;

use super::{LocalScorer, Outcome};
use crate::clip::ClipScorer;
use crate::model::preprocess::load_image;
use crate::store::Store;
use crate::util::rng::SeededRng;

/// Images per baseline run, as in the original.
pub const BASELINE_IMAGES: usize = 5;

/// A loaded CLIP model and the scoring recipe.
pub struct ClipRun {
    /// The loaded CLIP model.
    pub scorer: ClipScorer,
    /// Its name, as recorded with each score.
    pub model: String,
    /// Top images scored per feature.
    pub examples: usize,
    /// Runs of random images for the baseline.
    pub baseline_runs: usize,
    /// Seed of the baseline's draws.
    pub seed: u64,
    /// Dataset root.
    pub root: PathBuf,
    /// Largest image read, in pixels.
    pub max_pixels: u64,
}

/// Mean and (population) standard deviation.
fn mean_std(v: &[f32]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

impl ClipRun {
    fn image(&self, store: &Store, i: u32) -> Result<DynamicImage> {
        let rec = store
            .image(i)?
            .with_context(|| format!("image {i} has no image record; rebuild the cache"))?;
        load_image(&self.root.join(&rec.path), self.max_pixels)
            .with_context(|| format!("image {i} of the dataset at {}", self.root.display()))
    }

    /// Scores of `label` on `runs` x [`BASELINE_IMAGES`] random images (distinct within a run).
    fn baseline(&self, store: &Store, f: u32, label: &str) -> Result<Vec<f32>> {
        if self.baseline_runs == 0 {
            return Ok(Vec::new());
        }
        let all: Vec<u32> = store
            .images()
            .map(|r| r.map(|r| r.index))
            .collect::<Result<_>>()?;
        let mut rng = SeededRng::for_name(self.seed, &format!("clip-baseline/{f}"));
        let mut out = Vec::new();
        for _ in 0..self.baseline_runs {
            let mut pool = all.clone();
            rng.shuffle(&mut pool);
            let imgs = pool
                .iter()
                .take(BASELINE_IMAGES)
                .map(|&i| self.image(store, i))
                .collect::<Result<Vec<_>>>()?;
            out.extend(self.scorer.scores(label, &imgs)?);
        }
        Ok(out)
    }
}

impl LocalScorer for ClipRun {
    fn model_name(&self) -> String {
        self.model.clone()
    }

    fn recipe(&self) -> String {
        format!(
            "clip examples={} baseline={}x{BASELINE_IMAGES} seed={}",
            self.examples, self.baseline_runs, self.seed
        )
    }

    fn score(&self, store: &Store, f: u32, label: &str) -> Result<Outcome> {
        let top = store.top_examples(f)?;
        let imgs = top
            .iter()
            .take(self.examples)
            .map(|e| self.image(store, e.image))
            .collect::<Result<Vec<_>>>()?;
        let scores = self.scorer.scores(label, &imgs)?;
        let (avg, _) = mean_std(&scores);
        let base = self.baseline(store, f, label)?;
        let (base_mean, base_std) = mean_std(&base);
        Ok(Outcome {
            value: (!scores.is_empty()).then_some(avg),
            n: scores.len(),
            failures: 0,
            details: json!({
                "clip_scores": scores,
                "images": top.iter().take(self.examples).map(|e| e.image).collect::<Vec<_>>(),
                "baseline_mean": (!base.is_empty()).then_some(base_mean),
                "baseline_std": (!base.is_empty()).then_some(base_std),
                "baseline_n": base.len(),
                "over_baseline": (!base.is_empty() && !scores.is_empty()).then_some(avg - base_mean),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_spread() {
        let (m, s) = mean_std(&[1.0, 3.0]);
        assert_eq!((m, s), (2.0, 1.0));
        assert_eq!(mean_std(&[]), (0.0, 0.0));
    }
}
