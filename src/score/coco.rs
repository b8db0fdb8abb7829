//! COCO-style ground truth in a manifest: objects with a `label` (or `category`) and a
//! `segmentation` (polygons, or run-length encoding plain or compressed) or a `bbox`
//! `[x, y, w, h]`, rasterised into [`Mask`]s for IOU scoring.
//!
//! Polygons are filled at pixel centres `(x + 0.5, y + 0.5)` with the even-odd rule, one
//! object's polygons unioned. A centre lying exactly on an edge counts as inside when that edge
//! is the pixel's right or bottom side, which is how pycocotools resolves such ties; pycocotools
//! traces edges on a five-times finer grid, so an edge passing within a fifth of a pixel of a
//! centre may still land one pixel apart. Run lengths are column-major, starting with a run of
//! zeros, as COCO stores them.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

use super::masks::{Mask, Query, names, words};

/// Run counts of a COCO RLE: a list of integers, or pycocotools' compressed string.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Counts {
    /// Uncompressed run lengths.
    Raw(Vec<u64>),
    /// The compressed string form (six-bit groups offset by 48, deltas from the third run on).
    Compressed(String),
}

/// A COCO segmentation: polygons `[[x0, y0, x1, y1, ...], ...]` or RLE `{size: [h, w], counts}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Segmentation {
    /// Polygons in pixel coordinates (corners at integers).
    Polygons(Vec<Vec<f64>>),
    /// Run-length encoding of a `size = [height, width]` mask.
    Rle {
        /// `[height, width]`.
        size: [u32; 2],
        /// The runs.
        counts: Counts,
    },
}

/// One COCO-style object of a manifest entry.
#[derive(Debug, Clone, Deserialize)]
struct CocoObject {
    label: Option<String>,
    category: Option<String>,
    segmentation: Option<Segmentation>,
    bbox: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Deserialize)]
struct CocoEntry {
    path: String,
    width: u32,
    height: u32,
    #[serde(default)]
    objects: Vec<CocoObject>,
}

/// Where one object is, ready to rasterise.
#[derive(Debug, Clone)]
enum Region {
    Seg(Segmentation),
    Bbox([f64; 4]),
}

/// Decode pycocotools' compressed RLE string into run lengths.
pub fn decode_counts(s: &str) -> Result<Vec<u64>> {
    let bytes = s.as_bytes();
    let mut runs: Vec<u64> = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        let (mut x, mut shift) = (0i64, 0u32);
        loop {
            let Some(&b) = bytes.get(p) else {
                bail!("compressed RLE {s:?} ends inside a number");
            };
            if !(48..48 + 64).contains(&b) || shift > 55 {
                bail!("compressed RLE {s:?} has a bad character at {p}");
            }
            let c = i64::from(b - 48);
            x |= (c & 0x1f) << shift;
            shift += 5;
            p += 1;
            if c & 0x20 == 0 {
                // The last group's bit 4 is the sign: extend it.
                if c & 0x10 != 0 {
                    x |= -1i64 << shift;
                }
                break;
            }
        }
        // From the third run on, each is stored as the difference to the run two back.
        if runs.len() > 2 {
            x = i64::try_from(runs[runs.len() - 2])
                .ok()
                .and_then(|r| x.checked_add(r))
                .with_context(|| format!("compressed RLE {s:?} has a run too long"))?;
        }
        let run = u64::try_from(x)
            .with_context(|| format!("compressed RLE {s:?} decodes to a negative run"))?;
        runs.push(run);
    }
    Ok(runs)
}

/// The mask of column-major run lengths (zeros first) of a `width x height` image.
pub fn rle_mask(runs: &[u64], width: u32, height: u32) -> Result<Mask> {
    let total = u64::from(width) * u64::from(height);
    let sum = runs.iter().try_fold(0u64, |a, &r| a.checked_add(r));
    if sum != Some(total) {
        bail!(
            "RLE runs add up to {} pixels, the mask {width}x{height} has {total}",
            sum.map_or("too many".into(), |s| s.to_string())
        );
    }
    let mut m = Mask::empty(width, height);
    let (w, h) = (width as usize, height as usize);
    let mut at = 0usize;
    for (i, &run) in runs.iter().enumerate() {
        if i % 2 == 1 {
            for k in at..at + run as usize {
                // Column-major index k is pixel (x = k / h, y = k % h).
                m.bits[(k % h) * w + k / h] = true;
            }
        }
        at += run as usize;
    }
    Ok(m)
}

/// Fill polygon `xy` (flat `x, y` pairs) into `m` at pixel centres, even-odd.
fn fill_polygon(m: &mut Mask, xy: &[f64]) {
    let pts: Vec<(f64, f64)> = xy.chunks_exact(2).map(|c| (c[0], c[1])).collect();
    let w = m.width as usize;
    let mut xs = Vec::new();
    for y in 0..m.height as usize {
        let cy = y as f64 + 0.5;
        xs.clear();
        for (i, &(x0, y0)) in pts.iter().enumerate() {
            let (x1, y1) = pts[(i + 1) % pts.len()];
            // Half-open in y so a vertex on the scanline is counted once, and a centre on a
            // bottom edge is inside.
            if (y0 < cy) != (y1 < cy) {
                xs.push(x0 + (cy - y0) * (x1 - x0) / (y1 - y0));
            }
        }
        xs.sort_by(f64::total_cmp);
        for span in xs.chunks_exact(2) {
            // Centres with span[0] < cx <= span[1]: a centre on the right edge is inside.
            let first = (span[0] - 0.5).floor() + 1.0;
            let last = (span[1] - 0.5).floor();
            let (lo, hi) = (first.max(0.0), last.min(m.width as f64 - 1.0));
            if lo <= hi {
                let row = y * w;
                m.bits[row + lo as usize..=row + hi as usize]
                    .iter_mut()
                    .for_each(|b| *b = true);
            }
        }
    }
}

/// The mask of polygons `polys` in a `width x height` image.
pub fn polygon_mask(polys: &[Vec<f64>], width: u32, height: u32) -> Mask {
    let mut m = Mask::empty(width, height);
    for p in polys {
        fill_polygon(&mut m, p);
    }
    m
}

/// The mask of a COCO box `[x, y, w, h]`, filled as the polygon of its corners (as pycocotools).
pub fn bbox_mask(b: [f64; 4], width: u32, height: u32) -> Mask {
    let [x, y, w, h] = b;
    polygon_mask(
        &[vec![x, y, x, y + h, x + w, y + h, x + w, y]],
        width,
        height,
    )
}

/// The mask of segmentation `seg` in a `width x height` image.
pub fn segmentation_mask(seg: &Segmentation, width: u32, height: u32) -> Result<Mask> {
    match seg {
        Segmentation::Polygons(p) => Ok(polygon_mask(p, width, height)),
        Segmentation::Rle { size, counts } => {
            if *size != [height, width] {
                bail!("RLE size {size:?} is not the image's [height, width] [{height}, {width}]");
            }
            match counts {
                Counts::Raw(r) => rle_mask(r, width, height),
                Counts::Compressed(s) => rle_mask(&decode_counts(s)?, width, height),
            }
        }
    }
}

/// Whether an object of a manifest line is COCO-style: it has no sample-world `mask` file.
fn is_coco_object(o: &Value) -> bool {
    o.get("mask").is_none()
}

/// One image of a COCO-style manifest: width, height, and its objects' labels and regions.
type CocoImage = (u32, u32, Vec<(String, Region)>);

/// Ground truth from a manifest of COCO-style objects.
#[derive(Debug, Clone)]
pub struct CocoTruth {
    by_path: HashMap<String, CocoImage>,
    labels: BTreeSet<String>,
}

impl CocoTruth {
    /// Read `path` if its objects are COCO-style; `None` when no object is (a sample-world or
    /// unlabelled manifest).
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read image manifest {}", path.display()))?;
        let mut lines = Vec::new();
        let (mut coco, mut files) = (false, false);
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
            for o in v
                .get("objects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                coco |= is_coco_object(o);
                files |= !is_coco_object(o);
            }
            lines.push((i + 1, v));
        }
        if !coco {
            return Ok(None);
        }
        if files {
            bail!(
                "{} mixes objects with mask files and COCO-style objects; use one kind per manifest",
                path.display()
            );
        }
        let mut by_path = HashMap::new();
        let mut labels = BTreeSet::new();
        for (n, v) in lines {
            let at = || format!("{}:{n}", path.display());
            let e: CocoEntry = serde_json::from_value(v).with_context(|| {
                format!(
                    "{}: expected path, width, height and objects with label, segmentation or bbox",
                    at()
                )
            })?;
            let mut objects = Vec::with_capacity(e.objects.len());
            for (k, o) in e.objects.into_iter().enumerate() {
                let Some(label) = o.label.or(o.category) else {
                    bail!("{}: object {k} has no label or category", at());
                };
                let region = match (o.segmentation, o.bbox) {
                    (Some(Segmentation::Polygons(p)), _)
                        if p.iter().any(|q| q.len() < 6 || q.len() % 2 == 1) =>
                    {
                        bail!("{}: object {k}: a polygon needs 3 or more x, y pairs", at())
                    }
                    (Some(Segmentation::Rle { size, .. }), _) if size != [e.height, e.width] => {
                        bail!(
                            "{}: object {k}: RLE size {size:?} is not the entry's [height, width] [{}, {}]",
                            at(),
                            e.height,
                            e.width
                        )
                    }
                    (Some(s), _) => Region::Seg(s),
                    (None, Some(b)) => match <[f64; 4]>::try_from(b.as_slice()) {
                        Ok(b) => Region::Bbox(b),
                        Err(_) => bail!("{}: object {k}: bbox must be [x, y, w, h]", at()),
                    },
                    (None, None) => {
                        bail!("{}: object {k} has neither segmentation nor bbox", at())
                    }
                };
                let label = words(&label).trim().to_string();
                if label.is_empty() {
                    bail!("{}: object {k}: the label has no letters or digits", at());
                }
                labels.insert(label.clone());
                objects.push((label, region));
            }
            by_path.insert(e.path, (e.width, e.height, objects));
        }
        Ok(Some(Self { by_path, labels }))
    }

    /// The labels of this dataset that `label` names (whole words, plurals); `None` if none.
    pub fn query(&self, label: &str) -> Option<Query> {
        let padded = words(label);
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|l| names(&padded, l))
            .cloned()
            .collect();
        (!labels.is_empty()).then(|| Query {
            labels,
            ..Query::default()
        })
    }

    /// The union of the objects of image `path` whose label `q` names; empty when none does.
    pub fn mask(&self, path: &str, q: &Query) -> Result<Mask> {
        let (w, h, objects) = self.by_path.get(path).with_context(|| {
            format!(
                "image {path} is not in the COCO-style ground-truth manifest; pass the manifest the store was cached from"
            )
        })?;
        let mut m = Mask::empty(*w, *h);
        for (k, (label, region)) in objects.iter().enumerate() {
            if !q.labels.contains(label) {
                continue;
            }
            let o = match region {
                Region::Seg(s) => segmentation_mask(s, *w, *h)
                    .with_context(|| format!("image {path}, object {k} ({label})"))?,
                Region::Bbox(b) => bbox_mask(*b, *w, *h),
            };
            m.bits.iter_mut().zip(&o.bits).for_each(|(a, &b)| *a |= b);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::anyres::ImageLayout;
    use crate::score::iou::{IouScorer, MaskSource, Threshold, summarize};
    use crate::score::masks::GroundTruth;
    use crate::store::{Aggregator, FeatureFilter, ImageRecord, Manifest, RankRule, Store};

    fn rows(m: &Mask) -> Vec<String> {
        m.bits
            .chunks(m.width as usize)
            .map(|r| r.iter().map(|&b| if b { '#' } else { '.' }).collect())
            .collect()
    }

    /// Column-major runs of `m`, zeros first (the COCO encoder, for fixtures).
    fn runs_of(m: &Mask) -> Vec<u64> {
        let (w, h) = (m.width as usize, m.height as usize);
        let mut runs = vec![0u64];
        for k in 0..w * h {
            let bit = m.bits[(k % h) * w + k / h];
            if bit != (runs.len() % 2 == 0) {
                runs.push(0);
            }
            *runs.last_mut().unwrap() += 1;
        }
        runs
    }

    /// pycocotools' string form of `runs`, written from the COCO description.
    fn compress(runs: &[u64]) -> String {
        let mut s = String::new();
        for (i, &r) in runs.iter().enumerate() {
            let mut x = r as i64 - if i > 2 { runs[i - 2] as i64 } else { 0 };
            loop {
                let c = x & 0x1f;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                s.push(char::from(48 + (c | if more { 0x20 } else { 0 }) as u8));
                if !more {
                    break;
                }
            }
        }
        s
    }

    fn from_rows(rows: &[&str]) -> Mask {
        Mask {
            width: rows[0].len() as u32,
            height: rows.len() as u32,
            bits: rows
                .iter()
                .flat_map(|r| r.chars().map(|c| c == '#'))
                .collect(),
        }
    }

    #[test]
    fn polygons_fill_pixel_centres_like_pycocotools() {
        // Expected masks are what pycocotools' frPyObjects + decode give for these polygons.
        let square = polygon_mask(&[vec![1.0, 1.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0]], 8, 6);
        let block = [
            "........", ".###....", ".###....", ".###....", "........", "........",
        ];
        assert_eq!(rows(&square), block);
        // Centres on the left/top edges are out, on the right/bottom edges in.
        let half = [0.5, 0.5, 3.5, 0.5, 3.5, 3.5, 0.5, 3.5];
        assert_eq!(rows(&polygon_mask(&[half.to_vec()], 8, 6)), block);
        let tri = polygon_mask(&[vec![1.0, 0.0, 7.0, 0.0, 1.0, 5.0]], 8, 6);
        let expect = [
            ".#####..", ".####...", ".###....", ".##.....", ".#......", "........",
        ];
        assert_eq!(rows(&tri), expect);
        let tri2 = polygon_mask(&[vec![5.0, 1.0, 7.5, 5.5, 2.5, 5.5]], 8, 6);
        let expect = [
            "........", "........", "....##..", "....##..", "...####.", "...#####",
        ];
        assert_eq!(rows(&tri2), expect);
        // Two polygons of one object are unioned; parts off the image are clipped.
        let both = polygon_mask(
            &[
                vec![1.0, 0.0, 7.0, 0.0, 1.0, 5.0],
                vec![-3.0, 4.0, 20.0, 4.0, 20.0, 9.0, -3.0, 9.0],
            ],
            8,
            6,
        );
        assert_eq!(&rows(&both)[3..], [".##.....", "########", "########"]);
    }

    #[test]
    fn boxes_are_filled_as_polygons() {
        // pycocotools: frPyObjects of [[1.5, 0.5, 3, 2]] and [[2, 1, 3, 3]] on 8x6.
        let a = bbox_mask([1.5, 0.5, 3.0, 2.0], 8, 6);
        assert_eq!(
            &rows(&a)[..4],
            ["........", "..###...", "..###...", "........"]
        );
        assert_eq!(a.count(), 6);
        let b = bbox_mask([2.0, 1.0, 3.0, 3.0], 8, 6);
        assert_eq!(b.count(), 9);
        assert!(b.bits[8 + 2] && b.bits[3 * 8 + 4] && !b.bits[4 * 8 + 4]);
    }

    #[test]
    fn uncompressed_rle_round_trips_column_major() {
        let m = from_rows(&[".#..#", "##..#", "....#"]);
        let runs = runs_of(&m);
        // Column by column: x=0 is [0,1,0], x=1 is [1,1,0], x=2 and 3 empty, x=4 full.
        assert_eq!(runs, [1, 1, 1, 2, 7, 3]);
        assert_eq!(rle_mask(&runs, 5, 3).unwrap(), m);
        assert!(
            rle_mask(&[1, 2], 5, 3).is_err(),
            "runs must cover the image"
        );
        assert!(rle_mask(&[u64::MAX, 2], 5, 3).is_err());
        let seg: Segmentation =
            serde_json::from_str(r#"{"size": [3, 5], "counts": [1, 1, 1, 2, 7, 3]}"#).unwrap();
        assert_eq!(segmentation_mask(&seg, 5, 3).unwrap(), m);
        assert!(segmentation_mask(&seg, 3, 5).is_err(), "size is [h, w]");
    }

    #[test]
    fn compressed_rle_decodes_pycocotools_strings() {
        // pycocotools mask.encode of this 6x8 mask gives "5150L20N020N020N020N41OO".
        let m = from_rows(&[
            ".......#", "..####..", "..####..", "..####..", "........", "########",
        ]);
        let s = "5150L20N020N020N020N41OO";
        assert_eq!(decode_counts(s).unwrap(), runs_of(&m));
        assert_eq!(compress(&runs_of(&m)), s);
        let seg = Segmentation::Rle {
            size: [6, 8],
            counts: Counts::Compressed(s.into()),
        };
        assert_eq!(segmentation_mask(&seg, 8, 6).unwrap(), m);
        // Multi-character numbers: rows 10..30, columns 5..45 of 40x50.
        let big = format!("b6d0d0{}n5", "0".repeat(77));
        let runs = decode_counts(&big).unwrap();
        assert_eq!(&runs[..4], [210, 20, 20, 20]);
        assert_eq!(runs.last(), Some(&210));
        let mask = rle_mask(&runs, 50, 40).unwrap();
        assert_eq!(mask.count(), 20 * 40);
        assert!(mask.bits[10 * 50 + 5] && !mask.bits[10 * 50 + 4] && !mask.bits[30 * 50 + 5]);
        // Large and negative deltas survive the round trip.
        let runs = [0, 100_000, 3, 1, 99_999, 7, 2];
        assert_eq!(decode_counts(&compress(&runs)).unwrap(), runs);
        for bad in ["5 1", "\u{7f}", "b"] {
            assert!(decode_counts(bad).is_err(), "{bad:?}");
        }
    }

    fn store_for(dir: &Path, path: &str, on: &Mask) -> Store {
        let manifest = Manifest {
            schema_version: crate::store::SCHEMA_VERSION,
            glint_version: crate::store::GLINT_VERSION.into(),
            model_id: "m".into(),
            model_fingerprint: "0".into(),
            sae_id: "s".into(),
            sae_fingerprint: "0".into(),
            hookpoint: "model.layers.1".into(),
            layer: 1,
            num_latents: 4,
            k: 1,
            dataset: "manifest.jsonl".into(),
            dataset_fingerprint: "0".into(),
            preprocessing: serde_json::json!({}),
            rank: RankRule::Max,
            top_n: 1,
            shard: None,
            features: FeatureFilter::All,
            tokens: Default::default(),
            range_sample: crate::store::DEFAULT_RANGE_SAMPLE,
        };
        let store = Store::create(&dir.join("store"), &manifest).unwrap();
        let mut agg = Aggregator::from_manifest(&manifest).unwrap();
        let (w, h) = (on.width, on.height);
        let layout =
            ImageLayout::new((h, w), &[(336, 672), (672, 336), (672, 672)], 336, 14).unwrap();
        let mut acts = vec![(0u16, 2u32, 0.5f32)];
        for (t, tok) in layout
            .tokens()
            .iter()
            .enumerate()
            .take(layout.base_tokens())
        {
            let r = tok.rect.unwrap();
            let (cx, cy) = (
                ((r.x0 + r.x1) / 2.0) as usize,
                ((r.y0 + r.y1) / 2.0) as usize,
            );
            if on.bits[cy * w as usize + cx] {
                acts.push((t as u16, 1u32, 2.0f32));
            }
        }
        let record = ImageRecord {
            index: 0,
            id: "a".into(),
            path: path.into(),
            width: w,
            height: h,
            layout: Some(layout.clone()),
            n_tokens: layout.num_image_tokens() as u32,
            top_features: vec![],
        };
        let n = layout.num_image_tokens();
        agg.add_image(record, &acts, layout.base_tokens(), n)
            .unwrap();
        agg.finish(&store).unwrap();
        store
    }

    #[tokio::test]
    async fn coco_manifest_drives_the_iou_scorer() {
        let tmp = tempfile::tempdir().unwrap();
        let (w, h) = (336u32, 336u32);
        // Cat: the bottom-right quarter as plain RLE; traffic light: a strip as a string.
        let cat = bbox_mask([224.0, 224.0, 112.0, 112.0], w, h);
        let light = bbox_mask([300.0, 0.0, 36.0, 120.0], w, h);
        let line = serde_json::json!({
            "id": "a", "path": "images/a.png", "width": w, "height": h,
            "objects": [
                {"label": "dog", "segmentation": [[0, 0, 168, 0, 168, 168, 0, 168]]},
                {"category": "Cat", "segmentation": {"size": [h, w], "counts": runs_of(&cat)}},
                {"label": "car", "bbox": [0, 224, 100, 112]},
                {"label": "traffic light",
                 "segmentation": {"size": [h, w], "counts": compress(&runs_of(&light))}}
            ]
        });
        let manifest = tmp.path().join("manifest.jsonl");
        std::fs::write(&manifest, format!("{line}\n")).unwrap();
        let gt = GroundTruth::load(&manifest).unwrap().unwrap();
        assert_eq!(gt.query("Cats and dogs").unwrap().labels, ["cat", "dog"]);
        assert_eq!(
            gt.query("traffic lights").unwrap().labels,
            ["traffic light"]
        );
        assert!(gt.query("catalogue").is_none() && gt.query("lights").is_none());
        assert_eq!(
            gt.mask("images/a.png", &gt.query("cat").unwrap()).unwrap(),
            cat
        );
        let light_q = gt.query("a traffic light").unwrap();
        assert_eq!(gt.mask("images/a.png", &light_q).unwrap(), light);
        let car = gt.mask("images/a.png", &gt.query("cars").unwrap()).unwrap();
        assert_eq!(car.count(), 100 * 112);

        let dog = polygon_mask(
            &[vec![0.0, 0.0, 168.0, 0.0, 168.0, 168.0, 0.0, 168.0]],
            w,
            h,
        );
        assert_eq!(dog.count(), 168 * 168);
        let store = store_for(tmp.path(), "images/a.png", &dog);
        let scorer = IouScorer {
            source: MaskSource::Truth(gt),
            threshold: "0.5".parse::<Threshold>().unwrap(),
            examples: 5,
            root: tmp.path().to_path_buf(),
            max_pixels: 1 << 30,
        };
        let dogs = scorer.score(&store, 1, "Dogs").await.unwrap();
        assert!(dogs.len() == 1 && dogs[0].failure.is_none(), "{dogs:?}");
        assert!(dogs[0].iou > 0.8, "{dogs:?}");
        let cats = scorer.score(&store, 1, "a cat").await.unwrap();
        assert!(cats[0].failure.is_none() && cats[0].iou < 0.05, "{cats:?}");
        let both = scorer.score(&store, 1, "dog or cat").await.unwrap();
        assert!(both[0].iou > 0.3 && both[0].iou < dogs[0].iou, "{both:?}");
        let none = scorer.score(&store, 1, "zebras").await.unwrap();
        assert_eq!(summarize(&none), (0.0, 1, 0.0), "names no label: a failure");
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let p = tmp.path().join("m.jsonl");
            std::fs::write(&p, text).unwrap();
            p
        };
        let obj = |o: &str| format!(r#"{{"path":"a.png","width":4,"height":4,"objects":[{o}]}}"#);
        let err = |o: &str| format!("{:#}", CocoTruth::load(&write(&obj(o))).unwrap_err());
        assert!(err(r#"{"bbox":[0,0,1,1]}"#).contains("no label"));
        assert!(err(r#"{"label":"x"}"#).contains("neither"));
        assert!(err(r#"{"label":"x","bbox":[0,0,1]}"#).contains("[x, y, w, h]"));
        assert!(err(r#"{"label":"x","segmentation":[[0,0,1,1]]}"#).contains("3 or more"));
        let rle = r#"{"label":"x","segmentation":{"size":[4,5],"counts":[20]}}"#;
        assert!(err(rle).contains("[height, width]"));
        assert!(err(r#"{"label":"--","bbox":[0,0,1,1]}"#).contains("no letters"));
        let mixed = format!(
            "{}\n{}",
            obj(r#"{"label":"x","bbox":[0,0,1,1]}"#),
            obj(
                r#"{"colour":"red","shape":"star","label":"red star","mask":"m.png","bbox":[0,0,1,1]}"#
            )
        );
        assert!(format!("{:#}", CocoTruth::load(&write(&mixed)).unwrap_err()).contains("mixes"));
        // A sample-world or unlabelled manifest is not read as COCO.
        assert!(CocoTruth::load(&write(&obj(""))).unwrap().is_none());
        let sample = crate::score::testworld::shapes_root().join("manifest.jsonl");
        assert!(CocoTruth::load(&sample).unwrap().is_none());
        // A bad compressed string fails at scoring time, naming the object.
        let gt = CocoTruth::load(&write(&obj(
            r#"{"label":"x","segmentation":{"size":[4,4],"counts":"zz"}}"#,
        )))
        .unwrap()
        .unwrap();
        let e = gt.mask("a.png", &gt.query("x").unwrap()).unwrap_err();
        assert!(format!("{e:#}").contains("object 0 (x)"), "{e:#}");
    }
}
