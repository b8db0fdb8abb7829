//! What the screens show, read from the store and image files into plain values.
//!
//! Loading happens off the UI task (the effect runner calls these in `spawn_blocking`); the
//! results travel back as events, so `update` and rendering stay free of I/O.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use image::RgbImage;

use crate::heatmap::overlay::{OverlayStyle, Ramp, render_overlay};
use crate::heatmap::{ActivationField, Source, Upsample, activation_field};
use crate::model::anyres::ImageLayout;
use crate::model::anyres::TokenKind;
use crate::session::encode::kind_of;
use crate::store::{
    BandExample, Example, Explanation, FeatureStats, ImageRecord, Manifest, PositionRow, Score,
    Store,
};

/// Longest side of a grid thumbnail, in pixels.
pub const THUMB_SIDE: u32 = 256;
/// Longest side of the image screen's picture.
pub const LARGE_SIDE: u32 = 512;
/// Longest side of the full-size example view (never more than the image itself).
pub const FULL_SIDE: u32 = 1344;
/// Decoded images the [`ImageCache`] keeps before it starts over.
pub const IMAGE_CACHE_LEN: usize = 512;
/// Threads that decode a feature's example images.
const LOAD_THREADS: usize = 4;

/// One row of the features table.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    /// Feature index.
    pub id: u32,
    /// Fraction of scored tokens where it fired.
    pub density: f64,
    /// Largest activation seen.
    pub max: f32,
    /// Images where it fired.
    pub images: u64,
    /// The newest machine explanation, when one has been written.
    pub explanation: Option<String>,
    /// A label a person wrote, shown instead of the explanation when present.
    pub label: Option<String>,
    /// The newest explanation score, when scored.
    pub score: Option<f32>,
}

impl FeatureRow {
    /// What the table shows: the human label (marked) or the machine explanation.
    pub fn shown_text(&self) -> Option<String> {
        match (&self.label, &self.explanation) {
            (Some(l), _) => Some(format!("{HUMAN_MARK}{l}")),
            (None, e) => e.clone(),
        }
    }
}

/// Mark before a human label, telling it from a machine explanation.
pub const HUMAN_MARK: &str = "✎ ";

/// Every feature of the store, by id, with its newest explanation, label and score.
pub fn feature_rows(store: &Store) -> Result<Vec<FeatureRow>> {
    let total = store.progress()?.tokens;
    let mut expl: HashMap<u32, (u64, String)> = HashMap::new();
    for e in store.all_explanations()? {
        let slot = expl.entry(e.feature).or_insert((0, String::new()));
        if e.created_unix >= slot.0 {
            *slot = (e.created_unix, e.text);
        }
    }
    let mut scores: HashMap<u32, (u64, f32)> = HashMap::new();
    for s in store.all_scores()? {
        let Some(v) = s.value else { continue };
        let slot = scores.entry(s.feature).or_insert((0, 0.0));
        if s.created_unix >= slot.0 {
            *slot = (s.created_unix, v as f32);
        }
    }
    let labels: HashMap<u32, String> = store.labels()?.into_iter().collect();
    store
        .features()
        .map(|r| {
            let (id, s) = r?;
            Ok(FeatureRow {
                id,
                density: s.density(total),
                max: s.max,
                images: s.fired_images,
                explanation: expl.remove(&id).map(|e| e.1),
                label: labels.get(&id).cloned(),
                score: scores.get(&id).map(|s| s.1),
            })
        })
        .collect()
}

/// Shrunk images by (file, longest side).
type ImageMap = HashMap<(PathBuf, u32), Arc<RgbImage>>;

/// Decoded, shrunk images shared by every feature load (most images are examples of many
/// features), so switching features rarely decodes a file again.
#[derive(Debug, Clone, Default)]
pub struct ImageCache {
    map: Arc<Mutex<ImageMap>>,
}

impl ImageCache {
    /// `path` shrunk to fit `side`, read once.
    pub fn get(&self, path: &Path, side: u32) -> Result<Arc<RgbImage>> {
        let key = (path.to_path_buf(), side);
        if let Some(img) = self.map.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(img);
        }
        let img = Arc::new(read_image(path, side)?);
        if let Ok(mut m) = self.map.lock() {
            // A plain reset keeps the bound without bookkeeping; a screenful reloads quickly.
            if m.len() >= IMAGE_CACHE_LEN {
                m.clear();
            }
            m.insert(key, img.clone());
        }
        Ok(img)
    }
}

/// Folder that image paths in the store are relative to.
pub fn dataset_root(manifest: &Manifest) -> PathBuf {
    crate::dataset::store_image_root(&manifest.dataset)
}

/// An image (downscaled) with one feature's activation field at the same size.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    /// Caption (image id), never a path.
    pub label: String,
    /// The image, or black where the file could not be read.
    pub rgb: RgbImage,
    /// The activation field, same size as `rgb`.
    pub field: ActivationField,
    /// Why the image could not be read, if it could not.
    pub missing: Option<String>,
}

impl Picture {
    /// The overlay as drawn: `style` over the image, scaled to `scale_max`.
    pub fn overlay(&self, style: &OverlayStyle, ramp: &Ramp, scale_max: Option<f32>) -> RgbImage {
        render_overlay(&self.rgb, &self.field, style, ramp, scale_max)
    }
}

/// Size fitting `(w, h)` into a `side` square, keeping the aspect ratio (each side ≥ 1).
pub fn fit(w: u32, h: u32, side: u32) -> (u32, u32) {
    let s = (f64::from(side) / f64::from(w.max(h).max(1))).min(1.0);
    (
        ((f64::from(w) * s).round() as u32).max(1),
        ((f64::from(h) * s).round() as u32).max(1),
    )
}

/// The activation field of `acts` rendered directly at `w x h` (the geometry scales linearly).
pub fn field_at(layout: &ImageLayout, acts: &[(u32, f32)], w: u32, h: u32) -> ActivationField {
    let mut small = layout.clone();
    small.original = (h, w);
    activation_field(&small, acts, Source::Combined, Upsample::Bilinear)
}

/// Read an image file and shrink it to fit `side`; `Err` says why it could not be read.
pub fn read_image(path: &Path, side: u32) -> Result<RgbImage> {
    let img = image::open(path).with_context(|| format!("cannot read image {}", path.display()))?;
    let (w, h) = fit(img.width(), img.height(), side);
    let rgb = img.into_rgb8();
    if (w, h) == rgb.dimensions() {
        return Ok(rgb);
    }
    // Box-filter shrinking: as sharp as a triangle filter when shrinking, several times faster.
    Ok(image::imageops::thumbnail(&rgb, w, h))
}

/// A picture of `path` (shown as `label`) with `acts` over it, fitted into `side`.
pub fn picture(
    path: &Path,
    label: String,
    layout: &ImageLayout,
    acts: &[(u32, f32)],
    side: u32,
) -> Picture {
    picture_cached(path, label, layout, acts, side, &ImageCache::default())
}

/// [`picture`] reading the image through `cache`.
pub fn picture_cached(
    path: &Path,
    label: String,
    layout: &ImageLayout,
    acts: &[(u32, f32)],
    side: u32,
    cache: &ImageCache,
) -> Picture {
    let (w, h) = fit(layout.original.1, layout.original.0, side);
    let (rgb, missing) = match cache.get(path, side) {
        Ok(img) if img.dimensions() == (w, h) => (RgbImage::clone(&img), None),
        Ok(img) => (
            image::imageops::resize(img.as_ref(), w, h, image::imageops::FilterType::Triangle),
            None,
        ),
        Err(e) => (RgbImage::new(w, h), Some(format!("{e:#}"))),
    };
    Picture {
        label,
        field: field_at(layout, acts, w, h),
        rgb,
        missing,
    }
}

/// One top example of a feature.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleView {
    /// Dataset image index.
    pub image: u32,
    /// Ranking score.
    pub score: f32,
    /// Largest activation on the image.
    pub max: f32,
    /// The kind of the strongest position (`None`: a text position, see
    /// [`crate::session::encode::kind_of`]); newline and text positions have no pixels.
    pub peak: Option<TokenKind>,
    /// The thumbnail with its heatmap.
    pub picture: Picture,
}

/// An example of a feature's range sample, with the activation band it falls in.
#[derive(Debug, Clone, PartialEq)]
pub struct BandedExample {
    /// Band from 0 (weakest; the decile with ten bands).
    pub band: usize,
    /// Bands the sample is split into.
    pub bands: usize,
    /// Lowest and highest score of the band.
    pub edges: (f32, f32),
    /// The example.
    pub view: ExampleView,
}

/// Which of a feature's example lists the screen shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExampleSet {
    /// Its top examples.
    #[default]
    Top,
    /// Examples across its range, by band.
    Range,
}

impl FeatureDetail {
    /// The examples of `set`, in the order the grid shows them.
    pub fn examples_of(&self, set: ExampleSet) -> Vec<&ExampleView> {
        match set {
            ExampleSet::Top => self.examples.iter().collect(),
            ExampleSet::Range => self.range.iter().map(|b| &b.view).collect(),
        }
    }
}

/// A range-sample example as read from the store, with its band.
struct RangeEntry {
    band: usize,
    bands: usize,
    edges: (f32, f32),
    example: Example,
}

/// Feature `f`'s range-sample examples, strongest band first (each band strongest first).
fn banded_examples(store: &Store, f: u32) -> Result<Vec<RangeEntry>> {
    let bands = store.range_bands(f)?;
    let count = bands.len();
    let mut out = Vec::new();
    for b in bands.iter().rev() {
        for &BandExample { image, .. } in &b.examples {
            let example = store.example(f, image)?.with_context(|| {
                format!("feature {f}: the range-sample example on image {image} is not stored")
            })?;
            out.push(RangeEntry {
                band: b.band,
                bands: count,
                edges: (b.low, b.high),
                example,
            });
        }
    }
    Ok(out)
}

/// Everything the feature screen shows about one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDetail {
    /// Feature index.
    pub id: u32,
    /// Its statistics (histogram included); `None` if it never fired.
    pub stats: Option<FeatureStats>,
    /// Top examples, best first.
    pub examples: Vec<ExampleView>,
    /// Examples across its range (its range sample), strongest band first.
    pub range: Vec<BandedExample>,
    /// Images in the feature's range sample, and the images it fired on.
    pub range_of: (usize, u64),
    /// Where it fires by kind of position (density and mean), when the store counted it.
    pub by_position: Option<Vec<PositionRow>>,
    /// Its machine explanations, newest first.
    pub explanations: Vec<Explanation>,
    /// Its scores, newest first.
    pub scores: Vec<Score>,
}

/// Load a feature's statistics and top examples with their thumbnails.
pub fn load_feature(store: &Store, f: u32, side: u32) -> Result<FeatureDetail> {
    load_feature_cached(store, f, side, &ImageCache::default())
}

/// [`load_feature`] reading images through `cache`.
pub fn load_feature_cached(
    store: &Store,
    f: u32,
    side: u32,
    cache: &ImageCache,
) -> Result<FeatureDetail> {
    let root = dataset_root(store.manifest());
    let stats = store.feature_stats(f)?;
    let top = store.top_examples(f)?;
    let banded = banded_examples(store, f)?;
    let mut jobs = Vec::new();
    for ex in top.iter().chain(banded.iter().map(|b| &b.example)) {
        let rec = store.image(ex.image)?.with_context(|| {
            format!("feature {f}: image {} has no record in the store", ex.image)
        })?;
        let layout = rec.layout()?.clone();
        jobs.push((ex.clone(), rec, layout));
    }
    // Every example, not a first page: decoding is spread over a few threads, and most images
    // are in the cache already when the next feature opens.
    let per_thread = jobs.len().div_ceil(LOAD_THREADS).max(1);
    let examples = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(per_thread)
            .map(|chunk| {
                let root = &root;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(ex, rec, layout)| example_view(root, ex, rec, layout, side, cache))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect::<Vec<_>>()
    });
    if examples.len() != jobs.len() {
        anyhow::bail!("feature {f}: an example thumbnail could not be drawn");
    }
    let mut examples = examples.into_iter();
    let top: Vec<ExampleView> = examples.by_ref().take(top.len()).collect();
    let range = banded
        .iter()
        .zip(examples)
        .map(|(b, view)| BandedExample {
            band: b.band,
            bands: b.bands,
            edges: b.edges,
            view,
        })
        .collect::<Vec<_>>();
    let fired = stats.as_ref().map_or(0, |s| s.fired_images);
    let scored = store.progress()?.scored_by_position;
    let by_position = stats
        .as_ref()
        .and_then(|s| s.by_position)
        .zip(scored)
        .map(|(tallies, scored)| tallies.table(&scored));
    Ok(FeatureDetail {
        id: f,
        range_of: (range.len(), fired),
        by_position,
        stats,
        examples: top,
        range,
        explanations: store.explanations_of(f)?,
        scores: store.scores_of(f)?,
    })
}

/// One example's view: its thumbnail with the heatmap, and where its peak is.
fn example_view(
    root: &Path,
    ex: &Example,
    rec: &ImageRecord,
    layout: &ImageLayout,
    side: u32,
    cache: &ImageCache,
) -> ExampleView {
    let acts: Vec<(u32, f32)> = ex
        .tokens
        .iter()
        .map(|&(t, v)| (u32::from(t), v.to_f32()))
        .collect();
    let path = root.join(&rec.path);
    let picture = picture_cached(&path, rec.id.clone(), layout, &acts, side, cache);
    let strongest = ex
        .tokens
        .iter()
        .max_by(|a, b| a.1.to_f32().total_cmp(&b.1.to_f32()));
    ExampleView {
        image: ex.image,
        score: ex.score,
        max: ex.max,
        peak: strongest.map_or(Some(TokenKind::Base), |&(t, _)| kind_of(layout, t)),
        picture,
    }
}

/// Example `index` of feature `f` as a picture of up to `side` pixels (the full-size view).
pub fn load_example(
    store: &Store,
    f: u32,
    set: ExampleSet,
    index: usize,
    side: u32,
) -> Result<Picture> {
    let ex = match set {
        ExampleSet::Top => store.top_examples(f)?.into_iter().nth(index),
        ExampleSet::Range => banded_examples(store, f)?
            .into_iter()
            .nth(index)
            .map(|b| b.example),
    };
    let ex = ex.with_context(|| format!("feature {f} has no example #{}", index + 1))?;
    let rec = store
        .image(ex.image)?
        .with_context(|| format!("feature {f}: image {} has no record in the store", ex.image))?;
    let layout = rec.layout()?.clone();
    let acts: Vec<(u32, f32)> = ex
        .tokens
        .iter()
        .map(|&(t, v)| (u32::from(t), v.to_f32()))
        .collect();
    let path = dataset_root(store.manifest()).join(&rec.path);
    Ok(picture(&path, rec.id, &layout, &acts, side))
}

/// A dataset image of the store: its file path and display id.
pub fn dataset_image(store: &Store, index: u32) -> Result<(PathBuf, String)> {
    let rec = store
        .image(index)?
        .with_context(|| format!("image {index} is not in the store"))?;
    Ok((dataset_root(store.manifest()).join(&rec.path), rec.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_top_example_is_loaded_not_a_first_page() {
        let dir = tempfile::tempdir().unwrap();
        // 8 latents, 40 kept per feature, 40 images: most features keep far more than 16.
        let m = crate::store::testutil::manifest_of(8, 40);
        let indices: Vec<u32> = (0..40).collect();
        let store = crate::store::testutil::build(dir.path(), &m, 3, &indices, 10);
        let (f, kept) = (0..8)
            .map(|f| (f, store.top_examples(f).unwrap().len()))
            .max_by_key(|&(_, n)| n)
            .unwrap();
        assert!(kept > 16, "the synthetic store keeps {kept}");
        let d = load_feature(&store, f, 32).unwrap();
        assert_eq!(d.examples.len(), kept);
        let ranks: Vec<u32> = d.examples.iter().map(|e| e.image).collect();
        let stored: Vec<u32> = store
            .top_examples(f)
            .unwrap()
            .iter()
            .map(|e| e.image)
            .collect();
        assert_eq!(ranks, stored, "in the store's order");
    }

    #[test]
    fn fit_keeps_aspect_and_never_enlarges() {
        assert_eq!(fit(672, 336, 192), (192, 96));
        assert_eq!(fit(100, 50, 192), (100, 50));
        assert_eq!(fit(1, 5000, 100), (1, 100));
    }

    #[test]
    fn field_at_thumb_size_matches_a_downscaled_full_field() {
        let layout = ImageLayout::new((336, 672), &[(336, 672), (672, 336)], 336, 14).unwrap();
        let acts = [(5u32, 2.0f32), (700, 1.0)];
        let small = field_at(&layout, &acts, 96, 48);
        assert_eq!((small.width, small.height), (96, 48));
        let full = activation_field(&layout, &acts, Source::Combined, Upsample::Bilinear)
            .downscale(96, 48);
        let diff: f32 = small
            .values
            .iter()
            .zip(&full.values)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / (96.0 * 48.0);
        assert!(small.max() > 0.5 && diff < 0.05, "mean diff {diff}");
    }
}
