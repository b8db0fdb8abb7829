//! Detection for images (anchors §5.1, §5.8): the judge sees activating images, spread over the
//! feature's activation range (its range sample, as delphi samples quantiles) or its top
//! ranking, and non-activating ones, all without any overlay, and says which fit the
//! explanation.

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

/// Where detection and fuzzing draw their activating images from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PositiveSource {
    /// The feature's range sample, spread over its deciles: weak activations as well as strong
    /// (the top ranking on a store that keeps no range sample).
    #[default]
    Range,
    /// The top ranking only, as the original system.
    Top,
}

impl PositiveSource {
    /// The name in recipes and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PositiveSource::Range => "range",
            PositiveSource::Top => "top",
        }
    }
}

/// How detection and fuzzing draw their samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOptions {
    /// Activating images, one from each equal-count slice of the ranked source.
    pub positives: usize,
    /// Where the activating images come from.
    pub positives_from: PositiveSource,
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
            positives_from: PositiveSource::default(),
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
            "pos={} from={} neg={} per_prompt={} seed={} side={}",
            self.positives,
            self.positives_from.as_str(),
            self.negatives,
            self.per_prompt,
            self.seed,
            self.max_side
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

/// `n` activating examples of `f`: the middle one of each of `n` equal-count slices of `from`
/// ranked by score (all of them when fewer are stored).
pub fn positives(store: &Store, f: u32, n: usize, from: PositiveSource) -> Result<Vec<Example>> {
    let ranked = match from {
        PositiveSource::Range => match store.range_examples(f)? {
            sampled if sampled.is_empty() => store.top_examples(f)?,
            sampled => sampled,
        },
        PositiveSource::Top => store.top_examples(f)?,
    };
    let picks = choose_examples(ranked.len(), 0, n);
    Ok(picks.into_iter().map(|(i, _)| ranked[i].clone()).collect())
}

/// Up to `n` images where `f` is not among the stored examples (top list and range sample) or
/// the image's top features, drawn with `seed`; also whether they are surely inactive (every
/// image where `f` fired is among its stored examples).
pub fn negatives(store: &Store, f: u32, n: usize, seed: u64) -> Result<(Vec<u32>, bool)> {
    let mut known: HashSet<u32> = store.top_list(f)?.iter().map(|&(_, i)| i).collect();
    known.extend(store.range_sample(f)?.iter().map(|&(_, i)| i));
    let fired = store.feature_stats(f)?.map_or(0, |s| s.fired_images);
    let mut pool = Vec::new();
    for rec in store.images() {
        let rec = rec?;
        if !known.contains(&rec.index) && !rec.top_features.iter().any(|&(g, _)| g == f) {
            pool.push(rec.index);
        }
    }
    SeededRng::for_name(seed, &format!("negatives/{f}")).shuffle(&mut pool);
    pool.truncate(n);
    pool.sort_unstable();
    Ok((pool, fired <= known.len() as u64))
}

/// The detection samples of `f`: activating and non-activating images, no overlay.
pub fn samples(
    store: &Store,
    root: &Path,
    f: u32,
    opts: &SampleOptions,
) -> Result<(Vec<Sample>, bool)> {
    let mut out = Vec::new();
    for ex in positives(store, f, opts.positives, opts.positives_from)? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::{build, manifest_of};

    #[test]
    fn positives_come_from_the_range_sample_or_the_top_list_and_negatives_avoid_both() {
        let tmp = tempfile::tempdir().unwrap();
        let m = crate::store::Manifest {
            range_sample: 8,
            ..manifest_of(6, 3)
        };
        let idx: Vec<u32> = (0..80).collect();
        let store = build(&tmp.path().join("a"), &m, 3, &idx, 10);
        let f = (0..6u32)
            .max_by_key(|&f| {
                store
                    .feature_stats(f)
                    .unwrap()
                    .map_or(0, |s| s.fired_images)
            })
            .unwrap();
        let images = |xs: &[Example]| xs.iter().map(|e| e.image).collect::<HashSet<_>>();
        let top = positives(&store, f, 10, PositiveSource::Top).unwrap();
        assert_eq!(images(&top), images(&store.top_examples(f).unwrap()));
        let ranged = positives(&store, f, 4, PositiveSource::Range).unwrap();
        let sampled: HashSet<u32> = store.range_sample(f).unwrap().iter().map(|e| e.1).collect();
        assert_eq!(ranged.len(), 4);
        assert!(images(&ranged).is_subset(&sampled));
        // Spread over the range: the weakest pick is below anything in the top list.
        let weakest = ranged.iter().map(|e| e.score).fold(f32::MAX, f32::min);
        assert!(top.iter().all(|e| e.score > weakest), "{weakest}");
        let (neg, exact) = negatives(&store, f, 100, 1).unwrap();
        assert!(
            neg.iter()
                .all(|i| !sampled.contains(i) && !images(&top).contains(i))
        );
        assert!(!exact, "feature {f} fired on more images than are stored");
        // A store cached without a range sample falls back to the top list.
        let old = crate::store::Manifest {
            range_sample: 0,
            ..m.clone()
        };
        let old = build(&tmp.path().join("b"), &old, 3, &idx, 10);
        let fallback = positives(&old, f, 10, PositiveSource::Range).unwrap();
        assert_eq!(images(&fallback), images(&top));
        assert_ne!(
            SampleOptions::default().recipe(),
            SampleOptions {
                positives_from: PositiveSource::Top,
                ..SampleOptions::default()
            }
            .recipe()
        );
    }
}
