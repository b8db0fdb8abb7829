//! IOU scoring, as the original's segment scorer: the label's mask in each top image against the
//! feature's binarised activation map; a failed image (label not found, grounding error) scores
//! −1 in the list and counts as 0 in the mean, and failures are reported apart.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use image::imageops::FilterType;
use serde::Serialize;

use super::masks::{GroundTruth, Grounding, Mask};
use crate::heatmap::overlay::{SEED_DARKEN, encode_png, seed_mask};
use crate::heatmap::{MaskRule, Source, Upsample, activation_field, binary_mask};
use crate::model::anyres::ImageLayout;
use crate::model::preprocess::load_image;
use crate::store::{Example, Store};

/// How an activation map becomes the binary map `S`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// The original's rule: the base view's mask squashed to one view square, `mask < 224`
    /// (any pixel with bilinear weight on an active cell); ground truth squashed alike.
    Original,
    /// A rule on the per-pixel field over all views (base and high-resolution tiles) at the
    /// image's own size.
    Field(MaskRule),
}

impl FromStr for Threshold {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let bad = || {
            format!(
                "--threshold {s:?}: use original, any, a fraction of the max like 0.3, or abs:VALUE"
            )
        };
        Ok(match t {
            "original" => Self::Original,
            "any" => Self::Field(MaskRule::AnyPositive),
            _ => match t.strip_prefix("abs:") {
                Some(v) => Self::Field(MaskRule::Absolute(v.parse().with_context(bad)?)),
                None => {
                    let f: f32 = t.parse().with_context(bad)?;
                    if !(0.0..=1.0).contains(&f) {
                        bail!("{}", bad());
                    }
                    Self::Field(MaskRule::FractionOfMax(f))
                }
            },
        })
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Original => f.write_str("original"),
            Self::Field(MaskRule::AnyPositive) => f.write_str("any"),
            Self::Field(MaskRule::FractionOfMax(x)) => write!(f, "{x}"),
            Self::Field(MaskRule::Absolute(x)) => write!(f, "abs:{x}"),
        }
    }
}

/// `|a ∧ b| / |a ∨ b|`; 0 when both are empty.
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    let (mut inter, mut union) = (0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        inter += u64::from(x && y);
        union += u64::from(x || y);
    }
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// The binary activation map `S` of one example under `t`.
pub fn activation_mask(layout: &ImageLayout, ex: &Example, t: Threshold) -> Mask {
    let acts: Vec<(u32, f32)> = ex
        .tokens
        .iter()
        .map(|&(i, v)| (u32::from(i), v.to_f32()))
        .collect();
    match t {
        Threshold::Original => {
            let m = seed_mask(layout, &acts);
            Mask {
                width: m.width(),
                height: m.height(),
                bits: m.as_raw().iter().map(|&v| v < SEED_DARKEN).collect(),
            }
        }
        Threshold::Field(rule) => {
            let field = activation_field(layout, &acts, Source::Combined, Upsample::Bilinear);
            Mask {
                width: field.width,
                height: field.height,
                bits: binary_mask(&field, rule),
            }
        }
    }
}

/// One top image's result.
#[derive(Debug, Clone, Serialize)]
pub struct ImageIou {
    /// Dataset index.
    pub image: u32,
    /// IOU, or −1 when the image failed.
    pub iou: f64,
    /// `|S|` over the map's pixels.
    pub active_fraction: f64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// The original's per-feature numbers: mean IOU with failures as 0, failures, mean `|S|`
/// fraction over the successful images.
pub fn summarize(images: &[ImageIou]) -> (f64, usize, f64) {
    if images.is_empty() {
        return (0.0, 0, 0.0);
    }
    let ok: Vec<&ImageIou> = images.iter().filter(|i| i.failure.is_none()).collect();
    let failures = images.len() - ok.len();
    // The original adds the failures' −1 back: (Σ iou_scores + bad_cases) / k.
    let listed: f64 = images.iter().map(|i| i.iou).sum();
    let mean = (listed + failures as f64) / images.len() as f64;
    let active = if ok.is_empty() {
        0.0
    } else {
        ok.iter().map(|i| i.active_fraction).sum::<f64>() / ok.len() as f64
    };
    (mean, failures, active)
}

/// Where target masks come from.
#[derive(Debug, Clone)]
pub enum MaskSource {
    /// The dataset's own ground truth.
    Truth(GroundTruth),
    /// A grounding service.
    Service(Grounding),
}

/// An IOU scorer for one store.
#[derive(Debug, Clone)]
pub struct IouScorer {
    /// Target masks.
    pub source: MaskSource,
    /// The `S` rule.
    pub threshold: Threshold,
    /// Top images per feature (the original uses 5).
    pub examples: usize,
    /// Folder the store's image paths are relative to.
    pub root: PathBuf,
    /// Largest image decoded, in pixels.
    pub max_pixels: u64,
}

impl IouScorer {
    /// Name stored as the score's model.
    pub fn model_name(&self) -> String {
        match &self.source {
            MaskSource::Truth(_) => "ground-truth".into(),
            MaskSource::Service(g) => format!("grounding@{}", g.host()),
        }
    }

    /// What the score depends on besides the label, for the prompt hash.
    pub fn recipe(&self) -> String {
        format!(
            "iou threshold={} examples={}",
            self.threshold, self.examples
        )
    }

    /// Score `label` on the top images of feature `f`.
    pub async fn score(&self, store: &Store, f: u32, label: &str) -> Result<Vec<ImageIou>> {
        let top = store.top_examples(f)?;
        let query = match &self.source {
            MaskSource::Truth(gt) => Some(gt.query(label)),
            MaskSource::Service(_) => None,
        };
        let mut out = Vec::new();
        for ex in top.iter().take(self.examples) {
            let rec = store.image(ex.image)?.with_context(|| {
                format!(
                    "feature {f}: image {} has no image record; rebuild the cache",
                    ex.image
                )
            })?;
            let layout = rec.layout()?.clone();
            let s = activation_mask(&layout, ex, self.threshold);
            let active_fraction = s.count() as f64 / s.bits.len().max(1) as f64;
            let target = match (&self.source, &query) {
                (MaskSource::Truth(_), Some(None)) => Err(format!(
                    "label {label:?} names nothing the dataset's ground truth holds (colour, shape or object label)"
                )),
                (MaskSource::Truth(gt), Some(Some(q))) => gt
                    .mask(&rec.path, q)
                    .map(|m| m.resize(s.width, s.height))
                    .map_err(|e| format!("{e:#}")),
                (MaskSource::Service(g), _) => {
                    let img = load_image(&self.root.join(&rec.path), self.max_pixels)
                        .with_context(|| format!("feature {f}: image {}", ex.image))?
                        .to_rgb8();
                    // The original grounds the image squashed to the mask's size.
                    let img =
                        image::imageops::resize(&img, s.width, s.height, FilterType::CatmullRom);
                    let png = encode_png(&img)?;
                    g.ground(&png, s.width, s.height, label)
                        .await
                        .map_err(|e| format!("{e:#}"))
                }
                (MaskSource::Truth(_), None) => unreachable!("queries are made for ground truth"),
            };
            let row = match target {
                Ok(g) if g.count() > 0 => ImageIou {
                    image: ex.image,
                    iou: iou(&s.bits, &g.bits),
                    active_fraction,
                    failure: None,
                },
                Ok(_) => ImageIou {
                    image: ex.image,
                    iou: -1.0,
                    active_fraction,
                    failure: Some(format!("{label:?} not found in the image")),
                },
                Err(why) => ImageIou {
                    image: ex.image,
                    iou: -1.0,
                    active_fraction,
                    failure: Some(why),
                },
            };
            out.push(row);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn hand_computed_iou_and_the_originals_mean() {
        // S = 2x2 block in a 4x4 image, G = the right half: |S∧G| = 2, |S∨G| = 10.
        let s: Vec<bool> = (0..16).map(|i| (i % 4) < 2 && i / 4 < 2).collect();
        let s2: Vec<bool> = (0..16)
            .map(|i| (i % 4) >= 1 && (i % 4) <= 2 && i / 4 < 2)
            .collect();
        let g: Vec<bool> = (0..16).map(|i| (i % 4) >= 2).collect();
        assert_eq!(iou(&s, &g), 0.0);
        assert!((iou(&s2, &g) - 0.2).abs() < 1e-12);
        assert_eq!(iou(&g, &g), 1.0);
        assert_eq!(iou(&[false; 4], &[false; 4]), 0.0);
        let row = |iou, fail: bool| ImageIou {
            image: 0,
            iou,
            active_fraction: 0.5,
            failure: fail.then(|| "x".to_string()),
        };
        // [0.2, 1.0, −1, −1] → (0.2 + 1.0 − 2 + 2) / 4 = 0.3, 2 failures.
        let (mean, failures, active) = summarize(&[
            row(0.2, false),
            row(1.0, false),
            row(-1.0, true),
            row(-1.0, true),
        ]);
        assert!((mean - 0.3).abs() < 1e-12 && failures == 2 && active == 0.5);
        assert_eq!(summarize(&[]).0, 0.0);
    }

    #[test]
    fn thresholds_parse_and_print() {
        for t in ["original", "any", "0.3", "abs:1.5"] {
            assert_eq!(t.parse::<Threshold>().unwrap().to_string(), t);
        }
        assert!("1.5".parse::<Threshold>().is_err());
        assert!(
            "half"
                .parse::<Threshold>()
                .unwrap_err()
                .to_string()
                .contains("abs:")
        );
    }

    #[test]
    fn activation_masks_follow_the_rule() {
        // 336x336 image, 24x24 base grid of 14 px cells; cells 0 and 1 of row 0 active.
        let layout =
            ImageLayout::new((336, 336), &[(336, 672), (672, 336), (672, 672)], 336, 14).unwrap();
        let ex = Example {
            image: 0,
            score: 2.0,
            max: 2.0,
            mean_base: 0.0,
            tokens: vec![(0, f16::from_f32(2.0)), (1, f16::from_f32(0.5))],
        };
        let orig = activation_mask(&layout, &ex, Threshold::Original);
        assert_eq!((orig.width, orig.height), (336, 336));
        // Two 14 px cells dilated by about half a cell to the right and below.
        let n = orig.count();
        assert!(n > 28 * 14 && n < 42 * 21, "{n}");
        let half = activation_mask(&layout, &ex, "0.9".parse().unwrap());
        let any = activation_mask(&layout, &ex, "any".parse().unwrap());
        assert!(half.count() > 0 && half.count() < any.count());
        assert!(!half.bits[20], "cell 1 (0.5) is below 0.9 of the max");
    }

    #[tokio::test]
    async fn sample_world_iou_against_ground_truth() {
        let tmp = tempfile::tempdir().unwrap();
        // One image, shape-0000: a red cross, a cyan circle and a yellow star.
        let store = crate::score::testworld::sample_store(tmp.path(), 1, "red");
        let root = crate::score::testworld::shapes_root();
        let gt = GroundTruth::load(&root.join("manifest.jsonl"))
            .unwrap()
            .unwrap();
        let mut scorer = IouScorer {
            source: MaskSource::Truth(gt),
            threshold: Threshold::Original,
            examples: 5,
            root,
            max_pixels: 1 << 30,
        };
        let on = |rows: &[ImageIou]| (rows.len(), rows[0].iou, rows[0].failure.is_some());
        let cross = scorer.score(&store, 1, "Red crosses").await.unwrap();
        let (n, v, failed) = on(&cross);
        assert!(n == 1 && !failed && v > 0.5, "{cross:?}");
        let circle = scorer.score(&store, 1, "the cyan circle").await.unwrap();
        assert!(on(&circle).1 < 0.05 && !on(&circle).2, "{circle:?}");
        // Not in the image, or naming nothing the dataset knows: failures, IOU listed as −1.
        for label in ["green things", "Honda vehicles"] {
            let rows = scorer.score(&store, 1, label).await.unwrap();
            assert_eq!((on(&rows).1, on(&rows).2), (-1.0, true), "{label}");
            assert_eq!(summarize(&rows), (0.0, 1, 0.0), "no successful image");
        }
        // The field rule at the image's own size fits tighter than the original's dilation.
        scorer.threshold = "0.5".parse().unwrap();
        let tight = scorer.score(&store, 1, "red cross").await.unwrap();
        assert!(
            tight[0].iou > 0.5 && tight[0].active_fraction < cross[0].active_fraction,
            "{tight:?}"
        );
        assert!(
            scorer.score(&store, 3, "red").await.unwrap().is_empty(),
            "never fired"
        );
    }
}
