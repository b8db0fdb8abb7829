//! Which of a feature's cached examples go to the explainer, and the evidence images drawn
//! for them (the original system's darkening mask, or a colour heatmap).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::RgbImage;
use image::imageops::FilterType;

use crate::heatmap::overlay::{
    OverlayStyle, Ramp, encode_png, render_overlay, seed_activation_image,
};
use crate::heatmap::{Source, Upsample, activation_field};
use crate::model::anyres::ImageLayout;
use crate::model::preprocess::load_image;
use crate::store::{Example, Store};

/// How an evidence image shows where the feature fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvidenceStyle {
    /// The original system's look: the base view squashed to one view square, inactive
    /// cells darkened to 12 % brightness.
    #[default]
    Mask,
    /// A colour ramp over the whole image (base view and high-resolution tiles), one scale
    /// shared by all images of the feature.
    Heat,
}

crate::util::choice::choice!(EvidenceStyle, "evidence style" { Mask => "mask", Heat => "heat" });

/// Opacity of the heat overlay at the shared maximum (the original's value before it moved to masks).
const HEAT_ALPHA: f32 = 0.65;

/// What evidence a feature is explained from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceOptions {
    /// Drawing style.
    pub style: EvidenceStyle,
    /// Top examples by the store's ranking (the original sends 5).
    pub examples: usize,
    /// Extra examples, one from each of this many equal-count slices of the rest of the stored
    /// top-N list (weaker activations), to show the feature's range.
    pub extra_quantiles: usize,
    /// Longest side of a heat image in pixels (mask images are one view square).
    pub max_side: u32,
    /// Largest image decoded, in pixels.
    pub max_pixels: u64,
}

impl Default for EvidenceOptions {
    fn default() -> Self {
        Self {
            style: EvidenceStyle::Mask,
            examples: 5,
            extra_quantiles: 0,
            max_side: 672,
            max_pixels: 40_000_000,
        }
    }
}

impl EvidenceOptions {
    /// The settings that change what the explainer sees, for the prompt hash.
    pub fn recipe(&self) -> String {
        let side = if self.style == EvidenceStyle::Heat {
            self.max_side
        } else {
            0
        };
        format!(
            "style={} top={} extra={} side={side}",
            self.style, self.examples, self.extra_quantiles
        )
    }
}

/// Why an example was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Pick {
    /// Rank among the top examples, from 0.
    Top(usize),
    /// Slice of the weaker examples, from 0 (the strongest slice).
    Quantile(usize),
}

/// Indices into `ranked` (best first) of the examples to show: the first `top`, then the middle
/// example of each of `extra` equal-count slices of the rest (fewer when fewer remain).
pub fn choose_examples(ranked_len: usize, top: usize, extra: usize) -> Vec<(usize, Pick)> {
    let top = top.min(ranked_len);
    let mut out: Vec<(usize, Pick)> = (0..top).map(|i| (i, Pick::Top(i))).collect();
    let rest = ranked_len - top;
    let k = extra.min(rest);
    for j in 0..k {
        let (start, end) = (j * rest / k, (j + 1) * rest / k);
        out.push((top + start + (end - start) / 2, Pick::Quantile(j)));
    }
    out
}

/// One image as sent to the explainer.
#[derive(Debug, Clone)]
pub struct EvidenceImage {
    /// Dataset index of the image.
    pub image: u32,
    /// Why it was chosen.
    pub pick: Pick,
    /// The example's ranking score.
    pub score: f32,
    /// The feature's largest activation on the image.
    pub max: f32,
    /// PNG width in pixels.
    pub width: u32,
    /// PNG height in pixels.
    pub height: u32,
    /// The PNG bytes.
    pub png: Vec<u8>,
}

/// Folder the store's image paths are relative to: the dataset recorded in the manifest (a
/// folder, or the folder of a `.jsonl` manifest), or `override_path` when given. A relative
/// recorded path is tried from the working directory, then from the store's parent folder.
pub fn dataset_root(
    recorded: &str,
    store_dir: &Path,
    override_path: Option<&Path>,
) -> Result<PathBuf> {
    let as_root = |p: &Path| -> PathBuf {
        if let Some(root) = crate::dataset::parquet_image_root(p) {
            return root;
        }
        let is_manifest = p.is_file() || p.extension().is_some_and(|e| e == "jsonl");
        if is_manifest {
            p.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            p.to_path_buf()
        }
    };
    if let Some(p) = override_path {
        let root = as_root(p);
        if !root.is_dir() {
            bail!("--dataset {}: no such dataset folder", p.display());
        }
        return Ok(root);
    }
    let rec = Path::new(recorded);
    let mut tried = vec![rec.to_path_buf()];
    if rec.is_relative()
        && let Some(parent) = store_dir.parent()
    {
        tried.push(parent.join(rec));
    }
    for candidate in &tried {
        let root = as_root(candidate);
        if root.is_dir() {
            return Ok(root);
        }
    }
    bail!(
        "the store was cached from dataset {recorded:?}, which is not found here (tried {}); \
         pass --dataset with the dataset's folder or manifest",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Shrink `img` to fit `max_side` (aspect kept); smaller images are returned as they are.
fn fit(img: RgbImage, max_side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let longest = w.max(h);
    if max_side == 0 || longest <= max_side {
        return img;
    }
    let s = f64::from(max_side) / f64::from(longest);
    let (nw, nh) = (
        ((f64::from(w) * s).round() as u32).max(1),
        ((f64::from(h) * s).round() as u32).max(1),
    );
    image::imageops::resize(&img, nw, nh, FilterType::Triangle)
}

/// Draw one example as its evidence image.
pub fn draw_example(
    img: RgbImage,
    layout: &ImageLayout,
    ex: &Example,
    opts: &EvidenceOptions,
    scale_max: f32,
) -> RgbImage {
    let acts: Vec<(u32, f32)> = ex
        .tokens
        .iter()
        .map(|&(t, v)| (u32::from(t), v.to_f32()))
        .collect();
    match opts.style {
        EvidenceStyle::Mask => seed_activation_image(&img, layout, &acts),
        EvidenceStyle::Heat => {
            let field = activation_field(layout, &acts, Source::Combined, Upsample::Bilinear);
            let style = OverlayStyle::Heat { alpha: HEAT_ALPHA };
            render_overlay(
                &fit(img, opts.max_side),
                &field,
                &style,
                &Ramp::inferno(),
                Some(scale_max),
            )
        }
    }
}

/// The evidence images of feature `f`, strongest first (empty if it never fired).
pub fn render_evidence(
    store: &Store,
    root: &Path,
    f: u32,
    opts: &EvidenceOptions,
) -> Result<Vec<EvidenceImage>> {
    let ranked = store.top_examples(f)?;
    let chosen = choose_examples(ranked.len(), opts.examples, opts.extra_quantiles);
    let scale_max = chosen
        .iter()
        .map(|&(i, _)| ranked[i].max)
        .fold(0.0f32, f32::max);
    let mut out = Vec::with_capacity(chosen.len());
    for (i, pick) in chosen {
        let ex = &ranked[i];
        let rec = store.image(ex.image)?.with_context(|| {
            format!(
                "feature {f}: image {} is a top example but has no image record; rebuild the cache",
                ex.image
            )
        })?;
        let layout = rec.layout()?.clone();
        let path = root.join(&rec.path);
        let img = load_image(&path, opts.max_pixels)
            .with_context(|| {
                format!(
                    "feature {f}: image {} of the dataset at {}",
                    ex.image,
                    root.display()
                )
            })?
            .to_rgb8();
        if img.dimensions() != (rec.width, rec.height) {
            bail!(
                "image {} ({}) is {}x{} now but was {}x{} when cached; the dataset changed, re-run the cache",
                ex.image,
                path.display(),
                img.width(),
                img.height(),
                rec.width,
                rec.height
            );
        }
        let drawn = draw_example(img, &layout, ex, opts, scale_max);
        let png = encode_png(&drawn)?;
        out.push(EvidenceImage {
            image: ex.image,
            pick,
            score: ex.score,
            max: ex.max,
            width: drawn.width(),
            height: drawn.height(),
            png,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn top_then_one_from_each_weaker_slice() {
        let picks = choose_examples(50, 5, 3);
        let idx: Vec<usize> = picks.iter().map(|p| p.0).collect();
        // Rest is 45 long: slices [0,15) [15,30) [30,45) → middles 7, 22, 37, offset by 5.
        assert_eq!(idx, vec![0, 1, 2, 3, 4, 12, 27, 42]);
        assert_eq!(picks[5].1, Pick::Quantile(0));
        assert_eq!(
            choose_examples(3, 5, 2),
            vec![(0, Pick::Top(0)), (1, Pick::Top(1)), (2, Pick::Top(2))]
        );
        assert_eq!(
            choose_examples(7, 5, 4).len(),
            7,
            "only two left for four slices"
        );
        assert!(choose_examples(0, 5, 2).is_empty());
    }

    #[test]
    fn styles_parse_and_recipes_differ() {
        assert_eq!(
            "heat".parse::<EvidenceStyle>().unwrap(),
            EvidenceStyle::Heat
        );
        assert!(
            "blur"
                .parse::<EvidenceStyle>()
                .unwrap_err()
                .to_string()
                .contains("mask")
        );
        let a = EvidenceOptions::default();
        let b = EvidenceOptions {
            extra_quantiles: 2,
            ..a.clone()
        };
        let c = EvidenceOptions {
            max_side: 100,
            ..a.clone()
        };
        assert_ne!(a.recipe(), b.recipe());
        assert_eq!(a.recipe(), c.recipe(), "max_side does not matter for masks");
    }

    #[test]
    fn dataset_root_from_manifest_folder_or_override() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = tmp.path().join("ds");
        std::fs::create_dir_all(&ds).unwrap();
        std::fs::write(ds.join("manifest.jsonl"), "").unwrap();
        let store = tmp.path().join("store");
        let m = ds.join("manifest.jsonl");
        assert_eq!(
            dataset_root(&m.display().to_string(), &store, None).unwrap(),
            ds
        );
        assert_eq!(
            dataset_root(&ds.display().to_string(), &store, None).unwrap(),
            ds
        );
        // Relative to the store's parent when not found from the working directory.
        assert_eq!(
            dataset_root("ds/manifest.jsonl", &store, None).unwrap(),
            tmp.path().join("ds")
        );
        let err = dataset_root("gone/x.jsonl", &store, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--dataset") && err.contains("gone"), "{err}");
        assert_eq!(dataset_root("gone", &store, Some(&m)).unwrap(), ds);
        assert!(dataset_root("gone", &store, Some(&tmp.path().join("nope"))).is_err());
    }

    #[test]
    fn mask_is_one_view_square_and_heat_fits_max_side() {
        let layout =
            ImageLayout::new((30, 80), &[(56, 112), (112, 56), (112, 112)], 56, 14).unwrap();
        let img = RgbImage::from_pixel(80, 30, image::Rgb([200, 100, 50]));
        let ex = Example {
            image: 0,
            score: 1.0,
            max: 2.0,
            mean_base: 0.1,
            tokens: vec![(0, f16::from_f32(2.0)), (5, f16::from_f32(1.0))],
        };
        let opts = EvidenceOptions::default();
        let m = draw_example(img.clone(), &layout, &ex, &opts, 2.0);
        assert_eq!(m.dimensions(), (56, 56));
        // Cell 0 is lit (top-left keeps its colour), cell 15 is dark.
        assert_eq!(m.get_pixel(0, 0).0[0], 200);
        assert!(m.get_pixel(55, 55).0[0] < 40);
        let heat = EvidenceOptions {
            style: EvidenceStyle::Heat,
            max_side: 40,
            ..opts
        };
        let h = draw_example(img.clone(), &layout, &ex, &heat, 2.0);
        assert_eq!(h.dimensions(), (40, 15));
        assert_ne!(
            h.get_pixel(0, 0),
            img.get_pixel(0, 0),
            "the hot corner is coloured"
        );
        assert_eq!(
            h.get_pixel(39, 14).0,
            [200, 100, 50],
            "cold pixels are untouched"
        );
    }
}
