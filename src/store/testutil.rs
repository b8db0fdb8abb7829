//! Synthetic images and activations for the store tests (no model needed).

use std::path::Path;

use crate::model::anyres::{ImageLayout, TokenKind};
use crate::util::rng::SeededRng;

use super::examples::{decode_pairs, filter_record, record_entries};
use super::records::{KEY_COUNTS, KEY_MANIFEST, PREFIX_EXAMPLES};
use super::state_log::{KEY_STATE, Kind};
use super::{Aggregator, ImageRecord, Manifest, Store};

/// A tiny anyres geometry: 8 px views of 4x4 patches (16 base tokens), up to a 2x2 canvas.
pub(crate) fn layout(h: u32, w: u32) -> ImageLayout {
    ImageLayout::new((h, w), &[(8, 16), (16, 8), (16, 16)], 8, 2).unwrap()
}

/// One synthetic image: its record, activations, base-token count and scored-token count.
pub(crate) struct Synth {
    pub record: ImageRecord,
    pub acts: Vec<(u16, u32, f32)>,
    pub base: usize,
    pub scored: usize,
}

/// Image `index` of a synthetic dataset over `num_latents` features (k = 3 per token).
///
/// Values are mostly multiples of 0.25 so scores tie across images, plus a few below the 1e-5
/// activity threshold.
pub(crate) fn synth(seed: u64, index: u32, num_latents: u32) -> Synth {
    let mut rng = SeededRng::for_name(seed, &format!("image{index}"));
    let (h, w) = (5 + rng.below(36) as u32, 5 + rng.below(36) as u32);
    let lay = layout(h, w);
    let hot: Vec<u32> = (0..4)
        .map(|_| rng.below(u64::from(num_latents)) as u32)
        .collect();
    let mut acts = Vec::new();
    let mut scored = 0;
    for (p, tok) in lay.tokens().iter().enumerate() {
        if tok.kind == TokenKind::Newline {
            continue;
        }
        scored += 1;
        let mut feats: Vec<u32> = Vec::new();
        while feats.len() < 3 {
            let f = if rng.uniform() < 0.5 {
                hot[rng.below(4) as usize]
            } else {
                rng.below(u64::from(num_latents)) as u32
            };
            if !feats.contains(&f) {
                feats.push(f);
            }
        }
        for f in feats {
            let v = match rng.below(10) {
                0 => 1e-6,
                1 => rng.range_f64(0.0005, 1200.0) as f32,
                _ => (1 + rng.below(12)) as f32 * 0.25,
            };
            acts.push((p as u16, f, v));
        }
    }
    rng.shuffle(&mut acts);
    let record = ImageRecord {
        index,
        id: format!("img{index:04}"),
        path: format!("images/img{index:04}.png"),
        width: w,
        height: h,
        layout: Some(lay.clone()),
        n_tokens: lay.num_image_tokens() as u32,
        top_features: Vec::new(),
    };
    Synth {
        record,
        acts,
        base: lay.base_tokens(),
        scored,
    }
}

/// Feed `indices` into `agg`, committing every `every` images.
pub(crate) fn feed(agg: &mut Aggregator, store: &Store, seed: u64, indices: &[u32], every: usize) {
    let n = store.manifest().num_latents as u32;
    for (j, &i) in indices.iter().enumerate() {
        let s = synth(seed, i, n);
        agg.add_image(s.record, &s.acts, s.base, s.scored).unwrap();
        if (j + 1) % every == 0 {
            agg.commit(store).unwrap();
        }
    }
}

/// A complete store in `dir` built in one uninterrupted run over `indices`.
pub(crate) fn build(
    dir: &Path,
    manifest: &Manifest,
    seed: u64,
    indices: &[u32],
    every: usize,
) -> Store {
    let store = Store::create(dir, manifest).unwrap();
    let mut agg = Aggregator::from_manifest(manifest).unwrap();
    feed(&mut agg, &store, seed, indices, every);
    agg.finish(&store).unwrap();
    store
}

/// What a store answers, as records in key order: every record except the manifest, the state
/// log's pointer (which depends on the commit history) and the per-block counts, the state
/// log's records under their keys, and each example record cut to its listed examples (which
/// evicted examples a record still holds depends on when compaction ran).
pub(crate) fn dump(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    let state = store.state().unwrap();
    let mut listed = std::collections::HashSet::new();
    for (_, f, v) in state.of(Kind::Top).chain(state.of(Kind::Range)) {
        for (_, image) in decode_pairs(v).unwrap() {
            listed.insert((f, image));
        }
    }
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for kv in store.scan_raw(b"") {
        let (k, v) = kv.unwrap();
        if [KEY_MANIFEST, KEY_STATE, KEY_COUNTS].contains(&k.as_ref()) {
            continue;
        }
        if k.starts_with(PREFIX_EXAMPLES) {
            let image = u32::from_be_bytes(k[k.len() - 4..].try_into().unwrap());
            let entries = record_entries(&v, image).unwrap();
            if let Some(kept) = filter_record(&entries, |f| listed.contains(&(f, image))) {
                out.push((k.to_vec(), kept));
            }
            continue;
        }
        out.push((k.to_vec(), v.to_vec()));
    }
    out.extend(state.iter().map(|(kind, f, v)| (kind.key(f), v.to_vec())));
    out.sort();
    out
}

/// The features with a committed top list, by index.
pub(crate) fn listed_features(store: &Store) -> Vec<u32> {
    let state = store.state().unwrap();
    state.of(Kind::Top).map(|(_, f, _)| f).collect()
}

/// An empty store of `latents` features (top 3 by max) in `dir`, for tests outside the store.
pub(crate) fn empty_store(dir: &std::path::Path, latents: usize) -> Store {
    Store::create(dir, &manifest_of(latents, 3)).expect("a store in a fresh folder")
}

/// A test manifest of `latents` features keeping `top_n` examples each (ranked by max).
pub(crate) fn manifest_of(latents: usize, top_n: usize) -> Manifest {
    super::manifest::tests::manifest(latents, top_n, super::RankRule::Max)
}
