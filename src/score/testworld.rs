//! A small store over the sample world for the scorer tests: feature 1 fires (2.0) on the base
//! cells mostly covered by objects of one colour; feature 2 on every image's first base cell.

use std::path::{Path, PathBuf};

use crate::model::anyres::ImageLayout;
use crate::sample::shapes::read_manifest;
use crate::store::{Aggregator, FeatureFilter, ImageRecord, Manifest, RankRule, Store};

/// The sample world's dataset folder.
pub(crate) fn shapes_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample-data/shapes")
}

/// A store under `dir` over the first `n` sample images, feature 1 on `colour` objects.
pub(crate) fn sample_store(dir: &Path, n: usize, colour: &str) -> Store {
    let root = shapes_root();
    let entries = read_manifest(&root.join("manifest.jsonl")).unwrap();
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
        dataset: root.join("manifest.jsonl").display().to_string(),
        dataset_fingerprint: "0".into(),
        preprocessing: serde_json::json!({}),
        rank: RankRule::Max,
        top_n: n,
        shard: None,
        features: FeatureFilter::All,
        tokens: Default::default(),
        range_sample: crate::store::DEFAULT_RANGE_SAMPLE,
    };
    let store = Store::create(&dir.join("store"), &manifest).unwrap();
    let mut agg = Aggregator::from_manifest(&manifest).unwrap();
    let pins = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];
    for (i, e) in entries.iter().take(n).enumerate() {
        let layout = ImageLayout::new((e.height, e.width), &pins, 336, 14).unwrap();
        let w = e.width as usize;
        let mut mask = vec![false; w * e.height as usize];
        for o in e.objects.iter().filter(|o| o.colour == colour) {
            let m = image::open(o.mask_path(&root)).unwrap().to_luma8();
            mask.iter_mut()
                .zip(m.as_raw())
                .for_each(|(a, &v)| *a |= v > 127);
        }
        let mut acts = vec![(0u16, 2u32, 0.5f32)];
        for (t, tok) in layout
            .tokens()
            .iter()
            .enumerate()
            .take(layout.base_tokens())
        {
            let r = tok.rect.unwrap();
            let (xs, ys) = (
                r.x0.ceil() as usize..r.x1 as usize,
                r.y0.ceil() as usize..r.y1 as usize,
            );
            let area = xs.len() * ys.len();
            let inside = ys
                .flat_map(|y| xs.clone().map(move |x| (x, y)))
                .filter(|&(x, y)| mask[y * w + x])
                .count();
            if inside * 2 > area {
                acts.push((t as u16, 1u32, 2.0f32));
            }
        }
        let record = ImageRecord {
            index: i as u32,
            id: e.id.clone(),
            path: e.path.clone(),
            width: e.width,
            height: e.height,
            layout: Some(layout.clone()),
            n_tokens: layout.num_image_tokens() as u32,
            top_features: vec![],
        };
        let scored = layout.num_image_tokens();
        agg.add_image(record, &acts, layout.base_tokens(), scored)
            .unwrap();
    }
    agg.finish(&store).unwrap();
    store
}
