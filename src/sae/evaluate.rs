//! Checking SAE features against ground-truth masks: for each feature, its top images' binarised
//! activation maps are compared (IOU) with every labelled region — an object class
//! (`red circle`), a colour's union (`red`) or a shape's union (`circle`) — and the best region
//! names the feature.
//!
//! A map is one token grid of the image (the base view or the high-resolution map), upsampled to
//! the image's pixels (nearest or bilinear, see [`maps`]) and cut at a fraction of its maximum.

mod maps;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::heatmap::Upsample;
use crate::model::anyres::ImageLayout;
use crate::sample::shapes::ManifestEntry;
use maps::ImageMaps;

/// Which token grid draws a feature's activation map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MapGrid {
    /// The `g x g` base view (what the original system draws).
    Base,
    /// The unpadded high-resolution map (finer).
    HighRes,
    /// Per feature, the grid holding more of its activation over the dataset.
    Auto,
}

/// How a feature's top images are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ImageRank {
    /// By the mean activation over the grid's cells, zeros included (the original's ranking).
    Mean,
    /// By the largest activation in the grid.
    Max,
}

crate::util::choice::choice!(MapGrid, "map grid" { Base => "base", HighRes => "highres", Auto => "auto" });
crate::util::choice::choice!(ImageRank, "image ranking" { Mean => "mean", Max => "max" });

/// Settings of the evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOptions {
    /// Grid of the activation map.
    pub grid: MapGrid,
    /// Images per feature.
    pub top_images: usize,
    /// How images are ranked for a feature.
    pub rank: ImageRank,
    /// Upsampling of the grid to pixels.
    pub upsample: Upsample,
    /// A pixel is active when its value exceeds this fraction of the image's maximum.
    pub threshold: f32,
    /// Mean IOU at which a feature counts as matching its region.
    pub pass_iou: f64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            grid: MapGrid::Auto,
            top_images: 10,
            rank: ImageRank::Max,
            upsample: Upsample::Bilinear,
            threshold: 0.5,
            pass_iou: 0.5,
        }
    }
}

/// What a labelled region is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConceptKind {
    /// One (colour, shape) class.
    Object,
    /// Every object of one colour.
    Colour,
    /// Every object of one shape.
    Shape,
}

/// Ground truth of one image: labelled binary masks at its resolution.
#[derive(Debug, Clone)]
pub struct ImageTruth {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `(kind, name, row-major mask)` per region.
    pub regions: Vec<(ConceptKind, String, Vec<bool>)>,
}

impl ImageTruth {
    /// Regions from objects `(colour, shape, mask)`: each class, colour and shape as a union.
    pub fn from_objects(
        width: u32,
        height: u32,
        objects: &[(String, String, Vec<bool>)],
    ) -> Result<Self> {
        let len = width as usize * height as usize;
        let mut unions: BTreeMap<(ConceptKind, String), Vec<bool>> = BTreeMap::new();
        for (colour, shape, mask) in objects {
            if mask.len() != len {
                bail!(
                    "mask of {colour} {shape} has {} pixels, the image {width}x{height}",
                    mask.len()
                );
            }
            for key in [
                (ConceptKind::Object, format!("{colour} {shape}")),
                (ConceptKind::Colour, colour.clone()),
                (ConceptKind::Shape, shape.clone()),
            ] {
                let u = unions.entry(key).or_insert_with(|| vec![false; len]);
                u.iter_mut().zip(mask).for_each(|(a, &b)| *a |= b);
            }
        }
        let regions = unions.into_iter().map(|((k, n), m)| (k, n, m)).collect();
        Ok(Self {
            width,
            height,
            regions,
        })
    }

    /// Read the object masks of a manifest entry (greyscale, > 127 is inside).
    pub fn from_manifest(entry: &ManifestEntry, root: &Path) -> Result<Self> {
        let mut objects = Vec::with_capacity(entry.objects.len());
        for obj in &entry.objects {
            let path = obj.mask_path(root);
            let img = image::open(&path)
                .with_context(|| format!("cannot read mask {}", path.display()))?
                .to_luma8();
            if img.dimensions() != (entry.width, entry.height) {
                bail!(
                    "mask {} is {}x{} but image {} is {}x{}",
                    path.display(),
                    img.width(),
                    img.height(),
                    entry.id,
                    entry.width,
                    entry.height
                );
            }
            let mask = img.as_raw().iter().map(|&v| v > 127).collect();
            objects.push((obj.colour.clone(), obj.shape.clone(), mask));
        }
        Self::from_objects(entry.width, entry.height, &objects)
    }
}

/// One image's sparse activations on its image tokens.
#[derive(Debug, Clone)]
pub struct ImageActivations {
    /// Token geometry of the image.
    pub layout: ImageLayout,
    /// Its labelled regions.
    pub truth: ImageTruth,
    /// `(token, latent, value)`: token indexes `layout.tokens()`.
    pub acts: Vec<(u32, u32, f32)>,
}

/// How one feature matches the regions of its top images.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureScore {
    /// Latent index.
    pub feature: u32,
    /// Grid its maps were drawn on.
    pub grid: MapGrid,
    /// Its top images (indices into the input), best first; only images it fires in.
    pub images: Vec<usize>,
    /// Best region of each kind present in those images: `(kind, name, mean IOU, IOU per image)`.
    pub best: Vec<(ConceptKind, String, f64, Vec<f64>)>,
}

impl FeatureScore {
    /// Best region among `kinds`, if any.
    pub fn best_of(&self, kinds: &[ConceptKind]) -> Option<(ConceptKind, &str, f64)> {
        self.best
            .iter()
            .filter(|(k, ..)| kinds.contains(k))
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(k, n, v, _)| (*k, n.as_str(), *v))
    }
}

/// One image where a feature fires: (image, `(cell, value)` pairs, largest value, mean over the
/// grid's cells).
type Hit = (usize, Vec<(u32, f32)>, f32, f32);

/// Score every feature that fires in the grid of some image; features that never do are left out.
pub fn score_features(
    images: &[ImageActivations],
    opts: &EvalOptions,
) -> Result<Vec<FeatureScore>> {
    let grids = match opts.grid {
        MapGrid::Auto => vec![MapGrid::Base, MapGrid::HighRes],
        g => vec![g],
    };
    let maps: Vec<Vec<ImageMaps>> = grids
        .iter()
        .map(|&g| {
            images
                .iter()
                .enumerate()
                .map(|(i, im)| {
                    ImageMaps::new(&im.layout, &im.truth, g).with_context(|| format!("image {i}"))
                })
                .collect::<Result<_>>()
        })
        .collect::<Result<_>>()?;
    // Per feature and grid: the images it fires in, and its total activation.
    let mut per_feature: BTreeMap<u32, Vec<(Vec<Hit>, f64)>> = BTreeMap::new();
    for (gi, grid_maps) in maps.iter().enumerate() {
        for (i, (im, c)) in images.iter().zip(grid_maps).enumerate() {
            let mut by_latent: BTreeMap<u32, Vec<(u32, f32)>> = BTreeMap::new();
            for &(tok, latent, v) in &im.acts {
                if let Some(Some(cell)) = c.of_token.get(tok as usize)
                    && v > 0.0
                {
                    by_latent.entry(latent).or_default().push((*cell, v));
                }
            }
            for (latent, acts) in by_latent {
                let max = acts.iter().map(|a| a.1).fold(0.0f32, f32::max);
                let mass: f64 = acts.iter().map(|a| f64::from(a.1)).sum();
                let mean = (mass / c.cells().max(1) as f64) as f32;
                let slot = &mut per_feature
                    .entry(latent)
                    .or_insert_with(|| vec![(Vec::new(), 0.0); grids.len()])[gi];
                slot.0.push((i, acts, max, mean));
                slot.1 += mass;
            }
        }
    }
    let slots = opts.top_images.min(images.len()).max(1) as f64;
    let mut out = Vec::with_capacity(per_feature.len());
    for (feature, per_grid) in per_feature {
        // The first grid with the most mass (ties keep the base view).
        let gi = (0..per_grid.len())
            .rev()
            .max_by(|&a, &b| per_grid[a].1.total_cmp(&per_grid[b].1))
            .unwrap_or(0);
        let cells = &maps[gi];
        let mut hits = per_grid
            .into_iter()
            .nth(gi)
            .map(|g| g.0)
            .unwrap_or_default();
        let key = |h: &Hit| match opts.rank {
            ImageRank::Max => h.2,
            ImageRank::Mean => h.3,
        };
        hits.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.0.cmp(&b.0)));
        hits.truncate(opts.top_images);
        // IOUs per region name over the top images; absent regions count 0.
        let mut ious: BTreeMap<(ConceptKind, String), Vec<f64>> = BTreeMap::new();
        for (slot, (i, acts, max, _)) in hits.iter().enumerate() {
            let c = &cells[*i];
            let truth = &images[*i].truth;
            let (s_area, inter) = c.overlaps(truth, acts, opts.threshold * max, opts.upsample);
            for (r, (kind, name, _)) in truth.regions.iter().enumerate() {
                let union = s_area + c.region_area[r] - inter[r];
                let iou = if union == 0 {
                    0.0
                } else {
                    inter[r] as f64 / union as f64
                };
                let row = ious
                    .entry((*kind, name.clone()))
                    .or_insert_with(|| vec![0.0; hits.len()]);
                row[slot] = iou;
            }
        }
        let mut best: BTreeMap<ConceptKind, (String, f64, Vec<f64>)> = BTreeMap::new();
        for ((kind, name), row) in ious {
            let mean = row.iter().sum::<f64>() / slots;
            if best.get(&kind).is_none_or(|b| mean > b.1) {
                best.insert(kind, (name, mean, row));
            }
        }
        out.push(FeatureScore {
            feature,
            grid: grids[gi],
            images: hits.iter().map(|h| h.0).collect(),
            best: best
                .into_iter()
                .map(|(k, (n, v, row))| (k, n, v, row))
                .collect(),
        });
    }
    Ok(out)
}

/// Counts of features whose best region reaches the pass IOU.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSummary {
    /// Features that fire in the grid of some image.
    pub scored: usize,
    /// Features matching an object class or a colour.
    pub object_or_colour: usize,
    /// Features matching an object class.
    pub object: usize,
    /// Features matching a colour.
    pub colour: usize,
    /// Features matching a shape.
    pub shape: usize,
    /// `(feature, kind, region, mean IOU)` of the object-or-colour matches, best first.
    pub matches: Vec<(u32, ConceptKind, String, f64)>,
}

/// Summarise scores at `pass_iou`.
pub fn summarize(scores: &[FeatureScore], pass_iou: f64) -> EvalSummary {
    let passing = |kinds: &[ConceptKind]| {
        scores
            .iter()
            .filter(|s| s.best_of(kinds).is_some_and(|b| b.2 >= pass_iou))
            .count()
    };
    let oc = [ConceptKind::Object, ConceptKind::Colour];
    let mut matches: Vec<_> = scores
        .iter()
        .filter_map(|s| {
            s.best_of(&oc)
                .filter(|b| b.2 >= pass_iou)
                .map(|(k, n, v)| (s.feature, k, n.to_string(), v))
        })
        .collect();
    matches.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(&b.0)));
    EvalSummary {
        scored: scores.len(),
        object_or_colour: passing(&oc),
        object: passing(&[ConceptKind::Object]),
        colour: passing(&[ConceptKind::Colour]),
        shape: passing(&[ConceptKind::Shape]),
        matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::anyres::TokenKind;

    /// A 28x28 image whose base grid is 2x2 cells of 14 px and high-res grid 2x2 as well.
    fn layout() -> ImageLayout {
        ImageLayout::new((28, 28), &[(28, 56), (56, 28), (56, 56)], 28, 14).unwrap()
    }

    fn mask(f: impl Fn(usize, usize) -> bool) -> Vec<bool> {
        (0..28 * 28).map(|i| f(i % 28, i / 28)).collect()
    }

    fn truth(objects: &[(&str, &str, Vec<bool>)]) -> ImageTruth {
        let objs: Vec<_> = objects
            .iter()
            .map(|(c, s, m)| (c.to_string(), s.to_string(), m.clone()))
            .collect();
        ImageTruth::from_objects(28, 28, &objs).unwrap()
    }

    fn best(s: &FeatureScore, kind: ConceptKind) -> (String, f64) {
        let (_, n, v) = s.best_of(&[kind]).unwrap();
        (n.to_string(), v)
    }

    #[test]
    fn hand_made_maps_score_as_expected() {
        let l = layout();
        assert_eq!(l.base_tokens(), 4);
        // Image A: a red square on the left half; image B: a blue circle filling the right half.
        let a = truth(&[("red", "square", mask(|x, _| x < 14))]);
        let b = truth(&[("blue", "circle", mask(|x, _| x >= 14))]);
        // Base tokens 0..4 are cells (0,0), (0,1), (1,0), (1,1).
        let acts_a = vec![
            (0, 0, 1.0),
            (2, 0, 1.0), // feature 0: the left column, exactly the square
            (0, 1, 2.0), // feature 1: one cell of it: IOU 0.5
            (0, 2, 1.0),
            (1, 2, 1.0),
            (2, 2, 1.0),
            (3, 2, 1.0), // feature 2: everything: IOU 0.5
            (0, 3, 1.0),
            (2, 3, 0.1), // feature 3: the weak cell drops out at threshold 0.5
        ];
        let acts_b = vec![(1, 0, 0.5), (3, 0, 0.5)]; // feature 0 also covers B's circle, weaker
        let images = vec![
            ImageActivations {
                layout: l.clone(),
                truth: a,
                acts: acts_a,
            },
            ImageActivations {
                layout: l.clone(),
                truth: b,
                acts: acts_b,
            },
        ];
        let opts = EvalOptions {
            top_images: 1,
            threshold: 0.5,
            upsample: Upsample::Nearest,
            ..Default::default()
        };
        let scores = score_features(&images, &opts).unwrap();
        assert_eq!(
            scores.iter().map(|s| s.feature).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(scores[0].images, vec![0]);
        assert_eq!(
            best(&scores[0], ConceptKind::Object),
            ("red square".into(), 1.0)
        );
        assert_eq!(best(&scores[0], ConceptKind::Colour), ("red".into(), 1.0));
        assert_eq!(best(&scores[1], ConceptKind::Colour).1, 0.5);
        assert_eq!(best(&scores[2], ConceptKind::Shape).1, 0.5);
        assert_eq!(best(&scores[3], ConceptKind::Object).1, 0.5);
        let s = summarize(&scores, 0.5);
        assert_eq!((s.scored, s.object_or_colour, s.colour), (4, 4, 4));
        assert_eq!(s.matches[0].0, 0);
        assert_eq!(summarize(&scores, 0.75).object_or_colour, 1);

        // With both images ranked, feature 0 covers each image's region once: mean 0.5 for either.
        let two = EvalOptions {
            top_images: 2,
            ..opts
        };
        let scores = score_features(&images, &two).unwrap();
        assert_eq!(scores[0].images, vec![0, 1]);
        assert_eq!(best(&scores[0], ConceptKind::Colour).1, 0.5);
        // Features seen in one image only have the empty slot count as 0.
        assert_eq!(best(&scores[1], ConceptKind::Colour).1, 0.25);
        // Threshold 0 keeps the weak cell of feature 3: both left cells, IOU 1.
        let zero = EvalOptions {
            threshold: 0.0,
            ..opts
        };
        assert_eq!(
            best(
                &score_features(&images, &zero).unwrap()[3],
                ConceptKind::Object
            )
            .1,
            1.0
        );
    }

    /// Pixel-by-pixel IOU for irregular masks and both grids, against the cell sums.
    #[test]
    fn cell_sums_equal_pixel_counts() {
        let l = ImageLayout::new((30, 50), &[(28, 56), (56, 28), (56, 56)], 28, 14).unwrap();
        let (w, h) = (50usize, 30usize);
        let disc: Vec<bool> = (0..w * h)
            .map(|i| ((i % w) as f32 - 17.3).hypot((i / w) as f32 - 12.6) < 9.1)
            .collect();
        let t = ImageTruth::from_objects(50, 30, &[("red".into(), "circle".into(), disc.clone())])
            .unwrap();
        let tokens = l.tokens();
        for grid in [MapGrid::Base, MapGrid::HighRes] {
            let kind = if grid == MapGrid::Base {
                TokenKind::Base
            } else {
                TokenKind::HighRes
            };
            let cells: Vec<usize> = (0..tokens.len())
                .filter(|&i| tokens[i].kind == kind)
                .collect();
            let active: Vec<usize> = cells.iter().copied().step_by(2).collect();
            let acts = active.iter().map(|&t| (t as u32, 5, 1.0)).collect();
            let im = ImageActivations {
                layout: l.clone(),
                truth: t.clone(),
                acts,
            };
            let opts = EvalOptions {
                grid,
                top_images: 1,
                upsample: Upsample::Nearest,
                ..Default::default()
            };
            let got = best(
                &score_features(&[im], &opts).unwrap()[0],
                ConceptKind::Object,
            )
            .1;
            let (mut inter, mut union) = (0, 0);
            for y in 0..h {
                for x in 0..w {
                    let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
                    let on = active.iter().any(|&t| {
                        let r = tokens[t].rect.unwrap();
                        r.x0 <= cx && cx < r.x1 && r.y0 <= cy && cy < r.y1
                    });
                    inter += (on && disc[y * w + x]) as u32;
                    union += (on || disc[y * w + x]) as u32;
                }
            }
            let want = inter as f64 / union as f64;
            assert!((got - want).abs() < 1e-12, "{grid:?}: {got} vs {want}");
            assert!(want > 0.05 && want < 0.95, "{want}");
        }
    }

    #[test]
    fn images_rank_by_mean_or_max() {
        // Feature 9: one strong cell in image 0, every cell moderately in image 1.
        let t = truth(&[("red", "square", mask(|x, _| x < 14))]);
        let images = vec![
            ImageActivations {
                layout: layout(),
                truth: t.clone(),
                acts: vec![(0, 9, 3.0)],
            },
            ImageActivations {
                layout: layout(),
                truth: t,
                acts: (0..4).map(|c| (c, 9, 1.0)).collect(),
            },
        ];
        for (rank, first) in [(ImageRank::Max, 0), (ImageRank::Mean, 1)] {
            let opts = EvalOptions {
                rank,
                ..Default::default()
            };
            assert_eq!(
                score_features(&images, &opts).unwrap()[0].images[0],
                first,
                "{rank:?}"
            );
        }
    }

    #[test]
    fn auto_grid_follows_where_a_feature_fires() {
        let l = layout();
        // High-res tokens: 4, 5, newline 6, 7, 8, newline 9; the left column is 4 and 7.
        assert_eq!(l.num_image_tokens(), 10);
        let a = truth(&[("red", "square", mask(|x, _| x < 14))]);
        let acts = vec![
            (0, 0, 1.0),
            (2, 0, 1.0),
            (4, 7, 1.0),
            (7, 7, 1.0),
            (0, 7, 0.1),
        ];
        let im = ImageActivations {
            layout: l,
            truth: a,
            acts,
        };
        let opts = EvalOptions {
            grid: MapGrid::Auto,
            top_images: 1,
            upsample: Upsample::Nearest,
            ..Default::default()
        };
        let scores = score_features(&[im], &opts).unwrap();
        assert_eq!((scores[0].feature, scores[0].grid), (0, MapGrid::Base));
        assert_eq!((scores[1].feature, scores[1].grid), (7, MapGrid::HighRes));
        assert_eq!(best(&scores[1], ConceptKind::Object).1, 1.0);
    }

    /// One active base cell of a 2x2 grid (centres at 7 and 21 px): the bilinear map is
    /// `(1 - u)(1 - v)` around that centre, counted here from the definition.
    #[test]
    fn bilinear_map_spreads_one_pitch_around_a_cell() {
        let quadrant = mask(|x, y| x < 14 && y < 14);
        let t = truth(&[("red", "square", quadrant.clone())]);
        for (threshold, cut) in [(0.0f32, 0.0f32), (0.5, 0.5)] {
            let im = ImageActivations {
                layout: layout(),
                truth: t.clone(),
                acts: vec![(0, 3, 2.0)],
            };
            let opts = EvalOptions {
                top_images: 1,
                threshold,
                ..Default::default()
            };
            assert_eq!(opts.upsample, Upsample::Bilinear);
            let got = best(
                &score_features(&[im], &opts).unwrap()[0],
                ConceptKind::Object,
            )
            .1;
            let w = |p: usize| 1.0 - ((p as f32 + 0.5 - 7.0) / 14.0).clamp(0.0, 1.0);
            let (mut inter, mut union) = (0, 0);
            for y in 0..28 {
                for x in 0..28 {
                    let on = w(x) * w(y) > cut;
                    inter += (on && quadrant[y * 28 + x]) as u32;
                    union += (on || quadrant[y * 28 + x]) as u32;
                }
            }
            let want = inter as f64 / union as f64;
            assert!(
                (got - want).abs() < 1e-12,
                "threshold {threshold}: {got} vs {want}"
            );
        }
        // Threshold 0: 21 x 21 pixels are lit, the 14 x 14 quadrant among them.
        let im = ImageActivations {
            layout: layout(),
            truth: t,
            acts: vec![(0, 3, 2.0)],
        };
        let opts = EvalOptions {
            top_images: 1,
            threshold: 0.0,
            ..Default::default()
        };
        let got = best(
            &score_features(&[im], &opts).unwrap()[0],
            ConceptKind::Object,
        )
        .1;
        assert!((got - 196.0 / 441.0).abs() < 1e-12, "{got}");
    }

    #[test]
    fn mismatched_masks_are_reported() {
        let err = ImageTruth::from_objects(4, 4, &[("red".into(), "star".into(), vec![false; 15])])
            .unwrap_err();
        assert!(err.to_string().contains("15 pixels"), "{err}");
        let im = ImageActivations {
            layout: layout(),
            truth: ImageTruth::from_objects(4, 4, &[]).unwrap(),
            acts: vec![],
        };
        let err = format!(
            "{:#}",
            score_features(&[im], &EvalOptions::default()).unwrap_err()
        );
        assert!(err.contains("image 0") && err.contains("4x4"), "{err}");
    }
}
