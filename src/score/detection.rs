//! Detection for images (anchors §5.1, §5.8): the judge sees activating images, spread over the
//! feature's stored ranking, and non-activating ones, all without any overlay, and says which
//! fit the explanation.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};
use image::RgbImage;
use image::imageops::FilterType;

use super::judge::Sample;
use crate::explain::select::choose_examples;
use crate::heatmap::overlay::encode_png;
use crate::model::anyres::ImageLayout;
use crate::model::preprocess::load_image;
use crate::store::{Example, ImageRecord, Store};
use crate::util::rng::SeededRng;

/// How detection and fuzzing draw their samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOptions {
    /// Activating images, one from each equal-count slice of the stored ranking.
    pub positives: usize,
    /// Non-activating images.
    pub negatives: usize,
    /// Images per request (delphi's pipeline shows 5).
    pub per_prompt: usize,
    /// Seed of the negative draw, the fake highlights and the shuffle.
    pub seed: u64,
    /// Longest side of an image sent, in pixels.
    pub max_side: u32,
    /// Largest image decoded, in pixels.
    pub max_pixels: u64,
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self {
            positives: 10,
            negatives: 10,
            per_prompt: 5,
            seed: 42,
            max_side: 448,
            max_pixels: 40_000_000,
        }
    }
}

impl SampleOptions {
    /// The settings that change what the judge sees, for the prompt hash.
    pub fn recipe(&self) -> String {
        format!(
            "pos={} neg={} per_prompt={} seed={} side={}",
            self.positives, self.negatives, self.per_prompt, self.seed, self.max_side
        )
    }
}

/// An image of the store, decoded, with its record and token geometry.
pub struct Loaded {
    /// The image record.
    pub record: ImageRecord,
    /// Token geometry.
    pub layout: ImageLayout,
    /// The pixels.
    pub rgb: RgbImage,
}

/// Read image `i` of the store from the dataset at `root`.
pub fn load(store: &Store, root: &Path, i: u32, max_pixels: u64) -> Result<Loaded> {
    let record = store
        .image(i)?
        .with_context(|| format!("image {i} has no image record; rebuild the cache"))?;
    let layout = record.layout()?.clone();
    let rgb = load_image(&root.join(&record.path), max_pixels)
        .with_context(|| format!("image {i} of the dataset at {}", root.display()))?
        .to_rgb8();
    Ok(Loaded {
        record,
        layout,
        rgb,
    })
}

/// Shrink `img` to fit `max_side` (aspect kept).
pub fn fit(img: &RgbImage, max_side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if max_side == 0 || w.max(h) <= max_side {
        return img.clone();
    }
    let s = f64::from(max_side) / f64::from(w.max(h));
    let nw = ((f64::from(w) * s).round() as u32).max(1);
    let nh = ((f64::from(h) * s).round() as u32).max(1);
    image::imageops::resize(img, nw, nh, FilterType::Triangle)
}

/// `n` activating examples of `f`: the middle one of each of `n` equal-count slices of its
/// stored ranking (all of them when fewer are stored).
pub fn positives(store: &Store, f: u32, n: usize) -> Result<Vec<Example>> {
    let ranked = store.top_examples(f)?;
    let picks = choose_examples(ranked.len(), 0, n);
    Ok(picks.into_iter().map(|(i, _)| ranked[i].clone()).collect())
}

/// Up to `n` images where `f` is not among the stored examples or the image's top features,
/// drawn with `seed`; also whether they are surely inactive (every image where `f` fired is
/// among its stored examples).
pub fn negatives(store: &Store, f: u32, n: usize, seed: u64) -> Result<(Vec<u32>, bool)> {
    let top: HashSet<u32> = store.top_list(f)?.iter().map(|&(_, i)| i).collect();
    let fired = store.feature_stats(f)?.map_or(0, |s| s.fired_images);
    let mut pool = Vec::new();
    for rec in store.images() {
        let rec = rec?;
        if !top.contains(&rec.index) && !rec.top_features.iter().any(|&(g, _)| g == f) {
            pool.push(rec.index);
        }
    }
    SeededRng::for_name(seed, &format!("negatives/{f}")).shuffle(&mut pool);
    pool.truncate(n);
    pool.sort_unstable();
    Ok((pool, fired <= top.len() as u64))
}

/// The detection samples of `f`: activating and non-activating images, no overlay.
pub fn samples(
    store: &Store,
    root: &Path,
    f: u32,
    opts: &SampleOptions,
) -> Result<(Vec<Sample>, bool)> {
    let mut out = Vec::new();
    for ex in positives(store, f, opts.positives)? {
        let l = load(store, root, ex.image, opts.max_pixels)?;
        let png = encode_png(&fit(&l.rgb, opts.max_side))?;
        out.push(Sample {
            png,
            positive: true,
            image: ex.image,
        });
    }
    let (neg, exact) = negatives(store, f, opts.negatives, opts.seed)?;
    for i in neg {
        let l = load(store, root, i, opts.max_pixels)?;
        let png = encode_png(&fit(&l.rgb, opts.max_side))?;
        out.push(Sample {
            png,
            positive: false,
            image: i,
        });
    }
    Ok((out, exact))
}
