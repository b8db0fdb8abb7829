//! Interop with the original system's activation cache (`<save_dir>/<hookpoint>/<start>_<end>.safetensors`).
//!
//! Each file holds `locations` (int64 `[M, 3]`: dataset row, position in the image-feature
//! sequence, feature) and `activations` (float32 `[M]`) for one range of features.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::{Aggregator, ImageRecord, Manifest, Store};

/// Images aggregated per commit while importing.
const IMPORT_COMMIT_EVERY: u32 = 256;

/// The original's feature ranges `(start, end)`, `end` inclusive as in the file names.
///
/// Boundaries are `torch.linspace(0, num_latents, n_splits + 1).long()`, reproduced in f32 with
/// torch's two-sided formula so odd sizes split where the original split them.
pub fn seed_splits(num_latents: usize, n_splits: usize) -> Result<Vec<(u32, u32)>> {
    if n_splits == 0 || n_splits > num_latents {
        bail!(
            "n_splits must be between 1 and the number of latents ({num_latents}), not {n_splits}"
        );
    }
    let steps = n_splits + 1;
    let end = num_latents as f32;
    let step = end / n_splits as f32;
    let bound = |i: usize| -> u32 {
        let v = if i < steps / 2 {
            step * i as f32
        } else {
            end - step * (steps - i - 1) as f32
        };
        v as u32
    };
    Ok((0..n_splits)
        .map(|i| (bound(i), bound(i + 1).saturating_sub(1)))
        .collect())
}

/// Write the store's top examples in the original layout; returns the files written.
///
/// A glint store keeps the top-N examples per feature, so the export holds those examples'
/// activations (every stored token, f16 precision), which is what the original explainer reads;
/// it is not the full activation dump the original cache job wrote. With `reproduce_split_bug`
/// the last feature of every split is left out, as the original's `< end` comparison did.
pub fn export_seed(
    store: &Store,
    save_dir: &Path,
    n_splits: usize,
    reproduce_split_bug: bool,
) -> Result<Vec<PathBuf>> {
    let m = store.manifest();
    // The original layout has image-feature positions only: text positions are left out.
    let image_tokens: std::collections::HashMap<u32, u32> = if m.tokens.keeps_text() {
        store
            .images()
            .map(|r| r.map(|r| (r.index, r.n_tokens)))
            .collect::<Result<_>>()?
    } else {
        Default::default()
    };
    let dir = save_dir.join(&m.hookpoint);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (start, end) in seed_splits(m.num_latents, n_splits)? {
        let mut rows: Vec<([i64; 3], f32)> = Vec::new();
        let last = if reproduce_split_bug { end } else { end + 1 };
        for f in start..last {
            for e in store.top_examples(f)? {
                let limit = image_tokens.get(&e.image).copied().unwrap_or(u32::MAX);
                for (t, v) in e.tokens.iter().filter(|(t, _)| u32::from(*t) < limit) {
                    rows.push((
                        [i64::from(e.image), i64::from(*t), i64::from(f)],
                        v.to_f32(),
                    ));
                }
            }
        }
        // The original's row-major nonzero order: image, position, feature.
        rows.sort_by_key(|r| r.0);
        let locations: Vec<u8> = rows
            .iter()
            .flat_map(|r| r.0)
            .flat_map(i64::to_le_bytes)
            .collect();
        let activations: Vec<u8> = rows.iter().flat_map(|r| r.1.to_le_bytes()).collect();
        let path = dir.join(format!("{start}_{end}.safetensors"));
        let tmp = dir.join(format!(".{start}_{end}.safetensors.tmp"));
        let views = [
            (
                "locations",
                TensorView::new(Dtype::I64, vec![rows.len(), 3], &locations)?,
            ),
            (
                "activations",
                TensorView::new(Dtype::F32, vec![rows.len()], &activations)?,
            ),
        ];
        safetensors::serialize_to_file(views, None, &tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// One non-zero of a seed cache, packed.
#[derive(Clone, Copy)]
struct Row {
    image: u32,
    pos: u16,
    feature: u32,
    value: f32,
}

/// Read every split file of `dir`, keeping rows of features in `manifest`'s filter.
fn read_rows(dir: &Path, manifest: &Manifest, n_images: u32) -> Result<Vec<Row>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "no {} folder in the seed cache {}",
            manifest.hookpoint,
            dir.parent().unwrap_or(dir).display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(stem) = name.strip_suffix(".safetensors") else {
            continue;
        };
        if stem.starts_with("Rank") {
            bail!(
                "{} is a per-rank file: the original run never concatenated its output",
                path.display()
            );
        }
        match stem.split_once('_') {
            Some((a, b)) if a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok() => {
                files.push(path)
            }
            _ => {}
        }
    }
    if files.is_empty() {
        bail!("{} holds no <start>_<end>.safetensors files", dir.display());
    }
    files.sort();
    let mut rows = Vec::new();
    for path in files {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        parse_file(&bytes, manifest, n_images, &mut rows)
            .with_context(|| format!("{} is not a valid seed cache file", path.display()))?;
    }
    Ok(rows)
}

fn parse_file(bytes: &[u8], manifest: &Manifest, n_images: u32, rows: &mut Vec<Row>) -> Result<()> {
    let st = SafeTensors::deserialize(bytes)?;
    let loc = st.tensor("locations").context("no `locations` tensor")?;
    let act = st
        .tensor("activations")
        .context("no `activations` tensor")?;
    let m = act.shape().first().copied().unwrap_or(0);
    if loc.dtype() != Dtype::I64
        || loc.shape() != [m, 3]
        || act.dtype() != Dtype::F32
        || act.shape() != [m]
    {
        bail!(
            "expected locations int64 [M, 3] and activations float32 [M], found {:?} {:?} and {:?} {:?}",
            loc.dtype(),
            loc.shape(),
            act.dtype(),
            act.shape()
        );
    }
    let (ld, ad) = (loc.data(), act.data());
    for r in 0..m {
        let field =
            |c: usize| i64::from_le_bytes(ld[(r * 3 + c) * 8..][..8].try_into().expect("8 bytes"));
        let (image, pos, feature) = (field(0), field(1), field(2));
        let value = f32::from_le_bytes(ad[r * 4..][..4].try_into().expect("4 bytes"));
        if !(0..i64::from(n_images)).contains(&image) {
            bail!("row {r} names image {image}, but the dataset has {n_images} images");
        }
        if !(0..=i64::from(u16::MAX)).contains(&pos) {
            bail!("row {r} has token position {pos}, past any image");
        }
        if !(0..manifest.num_latents as i64).contains(&feature) {
            bail!(
                "row {r} names feature {feature}, but the SAE has {} latents",
                manifest.num_latents
            );
        }
        if manifest.features.contains(feature as u32) {
            rows.push(Row {
                image: image as u32,
                pos: pos as u16,
                feature: feature as u32,
                value,
            });
        }
    }
    Ok(())
}

/// Build (or finish building) a store in `out_dir` from a seed cache in `save_dir`.
///
/// `image(i)` gives the record of dataset row `i` for each of the `n_images` rows, its `layout`
/// an anyres layout: positions below its base-token count are base tokens, and rows on newline
/// tokens are kept only when `manifest.tokens` scores newlines. The rows are fed through the
/// [`Aggregator`], so statistics and top-N lists come out as if glint had computed the cache;
/// `manifest` sets the rank rule, top_n, filter and token selection. The import holds all rows of the kept
/// features in memory (16 bytes each) while it runs, and is resumable like a cache job.
pub fn import_seed(
    out_dir: &Path,
    save_dir: &Path,
    manifest: &Manifest,
    n_images: u32,
    image: &mut dyn FnMut(u32) -> Result<ImageRecord>,
) -> Result<Store> {
    manifest.validate()?;
    let store = Store::open_or_create(out_dir, manifest)?;
    let mut agg = Aggregator::resume(&store)?;
    if agg.progress().complete {
        return Ok(store);
    }
    let mut rows = read_rows(&save_dir.join(&manifest.hookpoint), manifest, n_images)?;
    rows.sort_unstable_by_key(|r| (r.image, r.pos, r.feature));
    let mut acts = Vec::new();
    for i in agg.progress().next_image..n_images {
        let record = image(i)?;
        if record.index != i {
            bail!(
                "the dataset gave a record with index {} for row {i}",
                record.index
            );
        }
        let layout = record.layout()?.clone();
        let tokens = layout.tokens();
        let lo = rows.partition_point(|r| r.image < i);
        let hi = rows.partition_point(|r| r.image <= i);
        acts.clear();
        for r in &rows[lo..hi] {
            match tokens.get(usize::from(r.pos)) {
                None => bail!(
                    "the seed cache has token {} for image {i}, which has only {} image tokens; \
                     was it made from another dataset or model?",
                    r.pos,
                    tokens.len()
                ),
                Some(t) if !manifest.tokens.keeps_image(t.kind) => {}
                Some(_) => acts.push((r.pos, r.feature, r.value)),
            }
        }
        let scored = tokens
            .iter()
            .filter(|t| manifest.tokens.keeps_image(t.kind))
            .count();
        agg.add_image(record, &acts, layout.base_tokens(), scored)?;
        if (i + 1) % IMPORT_COMMIT_EVERY == 0 {
            agg.commit(&store)?;
        }
    }
    agg.finish(&store)?;
    Ok(store)
}

#[cfg(test)]
#[path = "seed_tests.rs"]
mod tests;
