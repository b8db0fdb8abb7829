//! Where a label is in an image: the dataset's own ground-truth masks (a manifest whose objects
//! carry colour, shape and mask, or COCO-style label and segmentation, see [`super::coco`]), or a
//! grounding service over HTTP (docs/grounding.md).

use std::collections::{BTreeSet, HashMap};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use image::GrayImage;
use serde::{Deserialize, Serialize};

use super::coco::CocoTruth;
use crate::sae::evaluate::{ConceptKind, ImageTruth};
use crate::sample::shapes::{ManifestEntry, read_manifest};

/// A binary mask, row-major, one flag per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` flags.
    pub bits: Vec<bool>,
}

impl Mask {
    /// An empty mask.
    pub fn empty(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            bits: vec![false; width as usize * height as usize],
        }
    }

    /// Pixels set.
    pub fn count(&self) -> usize {
        self.bits.iter().filter(|&&b| b).count()
    }

    /// Nearest-neighbour resample to `w x h` (pixel centres map to pixel centres).
    pub fn resize(&self, w: u32, h: u32) -> Mask {
        if (w, h) == (self.width, self.height) || self.width == 0 || self.height == 0 {
            return Mask {
                width: w,
                height: h,
                ..self.clone()
            };
        }
        let pick = |i: u32, dst: u32, src: u32| {
            (((2 * u64::from(i) + 1) * u64::from(src)) / (2 * u64::from(dst))) as usize
        };
        let xs: Vec<usize> = (0..w).map(|x| pick(x, w, self.width)).collect();
        let mut bits = Vec::with_capacity(w as usize * h as usize);
        for y in 0..h {
            let row = pick(y, h, self.height) * self.width as usize;
            bits.extend(xs.iter().map(|&x| self.bits[row + x]));
        }
        Mask {
            width: w,
            height: h,
            bits,
        }
    }
}

/// Lower-case words of `text`, joined by single spaces and padded with spaces at both ends.
pub(super) fn words(text: &str) -> String {
    let w: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    format!(" {} ", w.join(" "))
}

/// Whether the padded word string names `name` (singular or with a plural `s`/`es`).
pub(super) fn names(padded: &str, name: &str) -> bool {
    let n = words(name);
    let n = n.trim();
    ["", "s", "es"]
        .iter()
        .any(|suffix| padded.contains(&format!(" {n}{suffix} ")))
}

/// The colours and shapes (or, for COCO-style ground truth, the object labels) a label names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Colours named (empty: any colour).
    pub colours: Vec<String>,
    /// Shapes named (empty: any shape).
    pub shapes: Vec<String>,
    /// COCO-style object labels named.
    pub labels: Vec<String>,
}

/// Ground-truth masks from a labelled manifest (the sample world's `manifest.jsonl`, or one with
/// COCO-style objects).
#[derive(Debug, Clone)]
pub struct GroundTruth {
    root: PathBuf,
    by_path: HashMap<String, ManifestEntry>,
    colours: BTreeSet<String>,
    shapes: BTreeSet<String>,
    coco: Option<CocoTruth>,
}

impl GroundTruth {
    /// Read the manifest at `path`; `None` when no entry has objects with masks.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let root = crate::dataset::manifest_folder(path);
        if let Some(coco) = CocoTruth::load(path)? {
            return Ok(Some(Self {
                root,
                by_path: HashMap::new(),
                colours: BTreeSet::new(),
                shapes: BTreeSet::new(),
                coco: Some(coco),
            }));
        }
        let entries = read_manifest(path)?;
        let (mut colours, mut shapes) = (BTreeSet::new(), BTreeSet::new());
        for o in entries.iter().flat_map(|e| &e.objects) {
            colours.insert(o.colour.to_lowercase());
            shapes.insert(o.shape.to_lowercase());
        }
        if colours.is_empty() {
            return Ok(None);
        }
        let by_path = entries.into_iter().map(|e| (e.path.clone(), e)).collect();
        Ok(Some(Self {
            root,
            by_path,
            colours,
            shapes,
            coco: None,
        }))
    }

    /// The colours and shapes (or COCO labels) of this dataset that `label` names; `None` if it
    /// names none.
    pub fn query(&self, label: &str) -> Option<Query> {
        if let Some(coco) = &self.coco {
            return coco.query(label);
        }
        let padded = words(label);
        let pick = |set: &BTreeSet<String>| -> Vec<String> {
            set.iter().filter(|n| names(&padded, n)).cloned().collect()
        };
        let q = Query {
            colours: pick(&self.colours),
            shapes: pick(&self.shapes),
            labels: Vec::new(),
        };
        (!q.colours.is_empty() || !q.shapes.is_empty()).then_some(q)
    }

    /// The union of the objects of image `path` (as recorded in the store) that match `q`;
    /// empty when none does.
    pub fn mask(&self, path: &str, q: &Query) -> Result<Mask> {
        if let Some(coco) = &self.coco {
            return coco.mask(path, q);
        }
        let entry = self.by_path.get(path).with_context(|| {
            format!(
                "image {path} is not in the ground-truth manifest under {}; pass the manifest the store was cached from",
                self.root.display()
            )
        })?;
        let truth = ImageTruth::from_manifest(entry, &self.root)?;
        let mut m = Mask::empty(truth.width, truth.height);
        for (kind, name, bits) in &truth.regions {
            if *kind != ConceptKind::Object {
                continue;
            }
            let hit = entry.objects.iter().any(|o| {
                o.label == *name
                    && (q.colours.is_empty() || q.colours.contains(&o.colour.to_lowercase()))
                    && (q.shapes.is_empty() || q.shapes.contains(&o.shape.to_lowercase()))
            });
            if hit {
                m.bits.iter_mut().zip(bits).for_each(|(a, &b)| *a |= b);
            }
        }
        Ok(m)
    }
}

/// What a grounding service answers (docs/grounding.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroundingReply {
    /// Boxes `[x0, y0, x1, y1]` in pixels of the image sent, end-exclusive.
    #[serde(default)]
    pub boxes: Vec<[f64; 4]>,
    /// Optional masks as base64 PNGs of the image's size (a pixel > 127 is inside).
    #[serde(default)]
    pub masks: Vec<String>,
}

impl GroundingReply {
    /// The union of the masks, or of the boxes when no mask came; empty when nothing was found.
    pub fn to_mask(&self, width: u32, height: u32) -> Result<Mask> {
        let mut m = Mask::empty(width, height);
        for (i, b64) in self.masks.iter().enumerate() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .with_context(|| format!("grounding mask {i} is not base64"))?;
            let img: GrayImage = image::ImageReader::new(Cursor::new(bytes))
                .with_guessed_format()?
                .decode()
                .with_context(|| format!("grounding mask {i} is not an image"))?
                .to_luma8();
            if img.dimensions() != (width, height) {
                bail!(
                    "grounding mask {i} is {}x{}, the image sent {width}x{height}",
                    img.width(),
                    img.height()
                );
            }
            m.bits
                .iter_mut()
                .zip(img.as_raw())
                .for_each(|(a, &v)| *a |= v > 127);
        }
        if self.masks.is_empty() {
            for b in &self.boxes {
                let clamp = |v: f64, hi: u32| v.round().clamp(0.0, f64::from(hi)) as usize;
                let (x0, x1) = (clamp(b[0], width), clamp(b[2], width));
                let (y0, y1) = (clamp(b[1], height), clamp(b[3], height));
                for y in y0..y1 {
                    let row = y * width as usize;
                    m.bits[row + x0..row + x1.max(x0)]
                        .iter_mut()
                        .for_each(|p| *p = true);
                }
            }
        }
        Ok(m)
    }
}

/// A grounding service: `POST {image, text}` → `{boxes, masks?}`.
#[derive(Debug, Clone)]
pub struct Grounding {
    http: reqwest::Client,
    url: String,
    host: String,
}

impl Grounding {
    /// A client for the service at `url` with a per-request `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self> {
        let parsed = reqwest::Url::parse(url)
            .with_context(|| format!("--grounding-url {url:?} is not a URL"))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => bail!("--grounding-url {url:?} names no host"),
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self {
            http,
            url: url.to_string(),
            host,
        })
    }

    /// `host[:port]` of the service (stored as the scorer's name).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Where `text` is in the PNG image `png` of `width x height` pixels.
    pub async fn ground(&self, png: &[u8], width: u32, height: u32, text: &str) -> Result<Mask> {
        let body = serde_json::json!({
            "image": base64::engine::general_purpose::STANDARD.encode(png),
            "text": text,
        });
        let resp = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach the grounding service {}", self.url))?;
        let status = resp.status();
        let text = resp.text().await.context("grounding answer broke off")?;
        if !status.is_success() {
            bail!(
                "grounding service {} answered HTTP {status}: {}",
                self.url,
                text.trim()
            );
        }
        let reply: GroundingReply = serde_json::from_str(&text).with_context(|| {
            format!(
                "grounding service {} answered something other than {{boxes, masks}}",
                self.url
            )
        })?;
        reply.to_mask(width, height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_truth() -> GroundTruth {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data/shapes/manifest.jsonl");
        GroundTruth::load(&path)
            .unwrap()
            .expect("the sample world has masks")
    }

    #[test]
    fn labels_name_colours_and_shapes_with_plurals() {
        let gt = sample_truth();
        let q = gt.query("The red crosses.").unwrap();
        assert_eq!(
            (q.colours, q.shapes),
            (vec!["red".into()], vec!["cross".into()])
        );
        let q = gt.query("cyan circles and stars").unwrap();
        assert_eq!(q.shapes, vec!["circle".to_string(), "star".to_string()]);
        assert!(gt.query("Honda vehicles").is_none());
        assert!(gt.query("redness").is_none(), "whole words only");
    }

    #[test]
    fn ground_truth_masks_are_the_matching_objects() {
        let gt = sample_truth();
        // shape-0000: red cross, cyan circle, yellow star (manifest bboxes).
        let path = "images/shape-0000.png";
        let cross = gt.mask(path, &gt.query("red cross").unwrap()).unwrap();
        assert_eq!((cross.width, cross.height), (336, 336));
        let n = cross.count();
        assert!(n > 1000 && n < 91 * 91, "{n}");
        let any_red = gt.mask(path, &gt.query("red").unwrap()).unwrap();
        assert_eq!(any_red, cross);
        let none = gt.mask(path, &gt.query("green square").unwrap()).unwrap();
        assert_eq!(none.count(), 0);
        let both = gt
            .mask(path, &gt.query("red cross or cyan circle").unwrap())
            .unwrap();
        assert!(both.count() > n);
        assert!(
            gt.mask("images/nope.png", &gt.query("red").unwrap())
                .is_err()
        );
    }

    #[test]
    fn boxes_and_masks_become_masks() {
        let r = GroundingReply {
            boxes: vec![[1.0, 0.0, 3.0, 2.0], [-5.0, 3.0, 1.2, 9.0]],
            masks: vec![],
        };
        let m = r.to_mask(4, 4).unwrap();
        let rows: Vec<String> = m
            .bits
            .chunks(4)
            .map(|r| r.iter().map(|&b| if b { '#' } else { '.' }).collect())
            .collect();
        assert_eq!(rows, [".##.", ".##.", "....", "#..."]);
        let img = GrayImage::from_fn(4, 4, |x, _| image::Luma([if x == 0 { 255 } else { 0 }]));
        let png = crate::score::encode_gray_png(&img).unwrap();
        let r = GroundingReply {
            boxes: vec![[0.0, 0.0, 4.0, 4.0]],
            masks: vec![base64::engine::general_purpose::STANDARD.encode(png)],
        };
        assert_eq!(r.to_mask(4, 4).unwrap().count(), 4, "masks win over boxes");
        assert!(r.to_mask(5, 4).is_err());
        let m = Mask {
            width: 2,
            height: 1,
            bits: vec![true, false],
        }
        .resize(4, 2);
        assert_eq!(m.bits, [true, true, false, false, true, true, false, false]);
    }
}
