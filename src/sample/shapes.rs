//! The shapes dataset: coloured geometric shapes on muted textured backgrounds, with one exact
//! mask per object and a JSONL manifest, generated deterministically from a seed.
//!
//! Every later stage (activation caching, heatmaps, explanation, IOU scoring, SAE training) is
//! tested on it, so labels and masks are exact: edges are crisp and backgrounds are never saturated.

mod manifest;
mod plan;
mod raster;

pub use manifest::{ManifestEntry, ManifestObject, manifest_text, read_manifest};
pub use plan::{
    Colour, IMAGE_SIZES, ImagePlan, MAX_OBJECT_SIDE, MIN_OBJECT_SIDE, PlannedObject, Shape,
    Texture, plan_shapes,
};
pub use raster::{Rendered, render};

use anyhow::{Context, Result};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use std::path::Path;

/// What to generate: a seed and an image count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapesSpec {
    /// Seed of every random choice; the same seed gives byte-identical files.
    pub seed: u64,
    /// Number of images.
    pub count: usize,
}

impl Default for ShapesSpec {
    fn default() -> Self {
        Self { seed: 0, count: 64 }
    }
}

/// What [`generate_shapes`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapesSummary {
    /// Images written.
    pub images: usize,
    /// Objects (and so masks) written.
    pub objects: usize,
    /// Total bytes of images, masks and manifest.
    pub bytes: u64,
}

/// Writes `images/`, `masks/` and `manifest.jsonl` under `out_dir`, overwriting files of the same
/// names (stale files from a larger earlier run are left alone, but the manifest lists only these).
pub fn generate_shapes(out_dir: &Path, spec: &ShapesSpec) -> Result<ShapesSummary> {
    let plans = plan_shapes(spec)?;
    for sub in ["images", "masks"] {
        let dir = out_dir.join(sub);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create dataset folder {}", dir.display()))?;
    }
    let mut bytes = 0u64;
    let mut objects = 0usize;
    let mut entries = Vec::with_capacity(plans.len());
    for plan in &plans {
        let rendered = render(plan)?;
        let path = format!("images/{}.png", plan.id);
        let (w, h) = (plan.width, plan.height);
        bytes += write_png(
            out_dir,
            &path,
            rendered.image.as_raw(),
            w,
            h,
            ExtendedColorType::Rgb8,
        )?;
        let mut listed = Vec::with_capacity(plan.objects.len());
        let parts = plan
            .objects
            .iter()
            .zip(&rendered.masks)
            .zip(&rendered.bboxes);
        for (k, ((obj, mask), bbox)) in parts.enumerate() {
            let mask_path = format!("masks/{}-{k}.png", plan.id);
            bytes += write_png(
                out_dir,
                &mask_path,
                mask.as_raw(),
                w,
                h,
                ExtendedColorType::L8,
            )?;
            listed.push(ManifestObject {
                colour: obj.colour.name().to_string(),
                shape: obj.shape.name().to_string(),
                label: obj.label(),
                mask: mask_path,
                bbox: *bbox,
            });
        }
        objects += listed.len();
        entries.push(ManifestEntry {
            id: plan.id.clone(),
            path,
            width: w,
            height: h,
            labels: listed.iter().map(|o| o.label.clone()).collect(),
            objects: listed,
        });
    }
    let text = manifest_text(&entries)?;
    let manifest = out_dir.join("manifest.jsonl");
    std::fs::write(&manifest, &text)
        .with_context(|| format!("cannot write {}", manifest.display()))?;
    bytes += text.len() as u64;
    Ok(ShapesSummary {
        images: plans.len(),
        objects,
        bytes,
    })
}

/// Encodes with fixed settings (so output depends only on pixels) and returns the bytes written.
fn write_png(
    root: &Path,
    rel: &str,
    data: &[u8],
    width: u32,
    height: u32,
    colour: ExtendedColorType,
) -> Result<u64> {
    let path = root.join(rel);
    let mut buf = Vec::new();
    PngEncoder::new_with_quality(&mut buf, CompressionType::Best, FilterType::Adaptive)
        .write_image(data, width, height, colour)
        .with_context(|| format!("cannot encode {}", path.display()))?;
    std::fs::write(&path, &buf).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(buf.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// Every file under `dir`, keyed by its relative path.
    fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(dir).expect("prefix").to_path_buf();
                    out.insert(rel, std::fs::read(&p).expect("read"));
                }
            }
        }
        out
    }

    fn generate(spec: &ShapesSpec) -> (tempfile::TempDir, ShapesSummary) {
        let dir = tempfile::tempdir().expect("tempdir");
        let summary = generate_shapes(dir.path(), spec).expect("generate");
        (dir, summary)
    }

    #[test]
    fn same_seed_gives_identical_bytes() {
        let spec = ShapesSpec { seed: 3, count: 8 };
        let (a, sa) = generate(&spec);
        let (b, sb) = generate(&spec);
        let (fa, fb) = (files(a.path()), files(b.path()));
        assert_eq!(sa, sb);
        assert_eq!(fa.len(), 1 + sa.images + sa.objects);
        assert_eq!(fa, fb);
        let total: u64 = fa.values().map(|v| v.len() as u64).sum();
        assert_eq!(total, sa.bytes);
        let (c, _) = generate(&ShapesSpec { seed: 4, count: 8 });
        let first = PathBuf::from("images/shape-0000.png");
        assert_ne!(fa[&first], files(c.path())[&first]);
    }

    #[test]
    fn masks_match_object_pixels() {
        let (dir, _) = generate(&ShapesSpec { seed: 0, count: 8 });
        let entries = read_manifest(&dir.path().join("manifest.jsonl")).expect("manifest");
        for entry in &entries {
            let img = image::open(entry.image_path(dir.path()))
                .expect("image")
                .to_rgb8();
            assert_eq!(img.dimensions(), (entry.width, entry.height));
            let mut covered = vec![false; (entry.width * entry.height) as usize];
            for obj in &entry.objects {
                let mask = image::open(obj.mask_path(dir.path())).expect("mask");
                assert_eq!(mask.color(), image::ColorType::L8);
                let mask = mask.to_luma8();
                assert_eq!(mask.dimensions(), img.dimensions());
                let colour = Colour::ALL
                    .iter()
                    .find(|c| c.name() == obj.colour)
                    .expect("colour");
                let mut bbox = [u32::MAX, u32::MAX, 0, 0];
                for (x, y, m) in mask.enumerate_pixels() {
                    match m.0[0] {
                        255 => {
                            assert_eq!(
                                img.get_pixel(x, y).0,
                                colour.rgb(),
                                "{} at {x},{y}",
                                obj.mask
                            );
                            let i = (y * entry.width + x) as usize;
                            assert!(!covered[i], "masks of {} overlap", entry.id);
                            covered[i] = true;
                            bbox = [
                                bbox[0].min(x),
                                bbox[1].min(y),
                                bbox[2].max(x + 1),
                                bbox[3].max(y + 1),
                            ];
                        }
                        0 => {}
                        v => panic!("{} holds value {v}", obj.mask),
                    }
                }
                assert_eq!(bbox, obj.bbox, "{}", obj.mask);
                let (bw, bh) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
                assert!(bw >= 40 && bh >= 40, "{} is only {bw}x{bh}", obj.mask);
            }
            // Everything outside the masks is muted background, never an object colour.
            for (x, y, p) in img.enumerate_pixels() {
                if !covered[(y * entry.width + x) as usize] {
                    let spread = p.0.iter().max().unwrap_or(&0) - p.0.iter().min().unwrap_or(&0);
                    assert!(spread <= 30, "{} pixel {x},{y} is {:?}", entry.id, p.0);
                }
            }
        }
    }

    #[test]
    fn manifest_round_trips() {
        let (dir, summary) = generate(&ShapesSpec { seed: 0, count: 8 });
        let path = dir.path().join("manifest.jsonl");
        let entries = read_manifest(&path).expect("manifest");
        assert_eq!(entries.len(), summary.images);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(manifest_text(&entries).expect("encode"), text);
        let plans = plan_shapes(&ShapesSpec { seed: 0, count: 8 }).expect("plan");
        for (entry, plan) in entries.iter().zip(&plans) {
            assert_eq!(entry.id, plan.id);
            assert_eq!(entry.path, format!("images/{}.png", plan.id));
            assert_eq!((entry.width, entry.height), (plan.width, plan.height));
            let labels: Vec<String> = plan.objects.iter().map(PlannedObject::label).collect();
            assert_eq!(entry.labels, labels);
            let objs: Vec<&str> = entry.objects.iter().map(|o| o.label.as_str()).collect();
            assert_eq!(objs, labels.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let first = text.lines().next().expect("a line");
        assert!(
            first.starts_with(r#"{"id":"shape-0000","path":"images/shape-0000.png","width":336"#)
        );
    }

    #[test]
    fn full_dataset_is_small_and_has_required_sizes() {
        let (dir, summary) = generate(&ShapesSpec::default());
        assert_eq!((summary.images, summary.objects), (64, 128));
        eprintln!("shapes dataset, count 64: {} bytes", summary.bytes);
        assert!(
            summary.bytes <= 3 * 1024 * 1024,
            "dataset is {} bytes",
            summary.bytes
        );
        let entries = read_manifest(&dir.path().join("manifest.jsonl")).expect("manifest");
        for size in [(336, 336), (672, 336), (336, 1008), (500, 375)] {
            assert!(
                entries.iter().any(|e| (e.width, e.height) == size),
                "{size:?} missing"
            );
        }
    }
}
