//! Merging the stores of disjoint shards into the store a single run would have written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::examples::{
    EXAMPLE_BLOCK, encode_counts, encode_list, example_key, filter_record, num_blocks,
    record_entries,
};
use super::range_sample::merge_samples;
use super::records::{KEY_COUNTS, KEY_PROGRESS, PREFIX_IMAGE, PREFIX_SKIPPED, key_id};
use super::state_log::{self, Frame, KEY_STATE, Kind, StatePointer};
use super::{Progress, Store, rank_order};

/// Records written per atomic batch while merging.
const BATCH: usize = 4096;

/// A batch is also written once its values reach this many bytes (top records can be large).
const BATCH_BYTES: usize = 64 << 20;

/// The folder a merge writes to before it is complete and renamed into place.
fn partial_dir(out_dir: &Path) -> PathBuf {
    let mut name = out_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out_dir.with_file_name(name)
}

/// Merge complete shard stores (every shard `i/n` of one run, once each) into a new store.
///
/// The result equals a single run over the whole dataset: shards hold disjoint images, top-N
/// lists are re-ranked under the same total order, and statistics add exactly. The store is
/// built in `<out_dir>.partial` and renamed to `out_dir` when done, so an interrupted merge
/// leaves no half store at `out_dir`; rerunning it starts over.
pub fn merge(out_dir: &Path, shards: &[PathBuf]) -> Result<Store> {
    let stores = open_shards(shards)?;
    if out_dir.exists() {
        bail!(
            "{} already exists; merge into a new folder",
            out_dir.display()
        );
    }
    let mut manifest = stores[0].manifest().clone();
    manifest.shard = None;
    let tmp = partial_dir(out_dir);
    if tmp.exists() {
        // Only a store left by an earlier merge of this same run is ours to delete.
        let leftover = Store::open(&tmp)
            .and_then(|s| s.manifest().compatible_with(&manifest))
            .with_context(|| format!("{} is in the way of the merge; remove it", tmp.display()));
        leftover?;
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove the unfinished merge {}", tmp.display()))?;
    }
    let out = Store::create(&tmp, &manifest)?;
    if let Err(e) = write_merged(&stores, &out).and_then(|()| out.seal()) {
        drop(out);
        // Best effort: a failed merge leaves nothing behind (a killed one is cleared on rerun).
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    drop(out);
    std::fs::rename(&tmp, out_dir).with_context(|| {
        format!(
            "cannot move the merged store {} to {}",
            tmp.display(),
            out_dir.display()
        )
    })?;
    Store::open(out_dir)
}

/// Copy the images and merge every feature of `stores` into `out`.
fn write_merged(stores: &[Store], out: &Store) -> Result<()> {
    let m = out.manifest();
    let mut batch = Writer {
        out,
        batch: sled::Batch::default(),
        len: 0,
        bytes: 0,
    };
    let progress = copy_images(stores, &mut batch)?;
    for store in stores {
        for kv in store.scan_raw(PREFIX_SKIPPED) {
            let (k, v) = kv?;
            batch.put(k.to_vec(), v)?;
        }
    }
    let mut counts = Vec::with_capacity(num_blocks(m.num_latents));
    // The merged statistics, lists and samples: one frame of the state log, at most
    // L × (245 + 8·(N + S)) B.
    let mut state = Frame::default();
    for block in 0..num_blocks(m.num_latents) as u32 {
        counts.push(merge_block(stores, block, m, &mut batch, &mut state)?);
    }
    let pointer = state_log::append(out.dir(), StatePointer::default(), &state.finish(), true)?;
    batch.put(KEY_STATE.to_vec(), serde_json::to_vec(&pointer)?)?;
    batch.put(KEY_COUNTS.to_vec(), encode_counts(&counts))?;
    batch.put(KEY_PROGRESS.to_vec(), serde_json::to_vec(&progress)?)?;
    batch.flush()
}

/// Open the shards and check they are the complete, compatible shards of one run.
fn open_shards(shards: &[PathBuf]) -> Result<Vec<Store>> {
    if shards.is_empty() {
        bail!("merge needs at least one shard store");
    }
    for (j, a) in shards.iter().enumerate() {
        let same = |b: &PathBuf| match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        };
        if let Some(b) = shards[..j].iter().find(|b| same(b)) {
            bail!(
                "shard store {} is given twice (also as {})",
                a.display(),
                b.display()
            );
        }
    }
    let stores: Vec<Store> = shards
        .iter()
        .map(|p| Store::open(p))
        .collect::<Result<_>>()?;
    let first = stores[0].manifest();
    let Some((_, n)) = first.shard else {
        bail!(
            "{} is not a shard store (its manifest has no shard)",
            shards[0].display()
        );
    };
    let mut seen = vec![None; n];
    for (s, path) in stores.iter().zip(shards) {
        let m = s.manifest();
        m.merge_compatible_with(first).with_context(|| {
            format!(
                "shard {} does not belong with {}",
                path.display(),
                shards[0].display()
            )
        })?;
        let (i, ni) = m
            .shard
            .with_context(|| format!("{} is not a shard store", path.display()))?;
        if ni != n || i >= n {
            bail!(
                "{} is shard {i}/{ni}, but {} is one of {n}",
                path.display(),
                shards[0].display()
            );
        }
        if let Some(other) = seen[i].replace(path) {
            bail!(
                "shard {i}/{n} is given twice: {} and {}",
                other.display(),
                path.display()
            );
        }
        let p = s.progress()?;
        if !p.complete {
            bail!(
                "shard {i}/{n} at {} is unfinished ({} images so far); rerun its cache command \
                 to complete it",
                path.display(),
                p.images
            );
        }
    }
    let missing: Vec<String> = (0..n)
        .filter(|&i| seen[i].is_none())
        .map(|i| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "shards {} are missing; merge needs every shard of the run",
            missing.join(", ")
        );
    }
    Ok(stores)
}

/// Buffers writes into atomic batches of at most [`BATCH`] records or about [`BATCH_BYTES`].
struct Writer<'a> {
    out: &'a Store,
    batch: sled::Batch,
    len: usize,
    bytes: usize,
}

impl Writer<'_> {
    fn put(&mut self, k: Vec<u8>, v: impl Into<sled::IVec>) -> Result<()> {
        let v = v.into();
        self.bytes += k.len() + v.len();
        self.batch.insert(k, v);
        self.len += 1;
        if self.len >= BATCH || self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .apply(std::mem::take(&mut self.batch), self.bytes as u64)?;
        (self.len, self.bytes) = (0, 0);
        Ok(())
    }
}

/// Copy every image record, walking the shards in index order to catch an image in two shards.
fn copy_images(stores: &[Store], out: &mut Writer) -> Result<Progress> {
    let mut iters: Vec<_> = stores
        .iter()
        .map(|s| s.scan_raw(PREFIX_IMAGE).peekable())
        .collect();
    let mut last: Option<(Vec<u8>, usize)> = None;
    loop {
        let mut pick: Option<(usize, Vec<u8>)> = None;
        for (j, it) in iters.iter_mut().enumerate() {
            if let Some(Err(_)) = it.peek() {
                return Err(it.next().expect("peeked").unwrap_err());
            }
            if let Some(Ok((k, _))) = it.peek()
                && pick
                    .as_ref()
                    .is_none_or(|(_, pk)| k.as_ref() < pk.as_slice())
            {
                pick = Some((j, k.to_vec()));
            }
        }
        let Some((j, k)) = pick else { break };
        let (_, v) = iters[j].next().expect("peeked")?;
        if let Some((prev, pj)) = &last
            && *prev == k
        {
            let i = key_id(PREFIX_IMAGE, &k)?;
            bail!(
                "image {i} is in both {} and {}; shards must hold disjoint images",
                stores[*pj].dir().display(),
                stores[j].dir().display()
            );
        }
        out.put(k.clone(), v)?;
        last = Some((k, j));
    }
    let mut total = Progress {
        complete: true,
        scored_by_position: Some([0; 4]),
        ..Progress::default()
    };
    for s in stores {
        let p = s.progress()?;
        total.images += p.images;
        total.tokens += p.tokens;
        total.next_image = total.next_image.max(p.next_image);
        // Counted by kind only where every shard counted them.
        total.scored_by_position = match (total.scored_by_position, p.scored_by_position) {
            (Some(a), Some(b)) => Some(std::array::from_fn(|k| a[k] + b[k])),
            _ => None,
        };
    }
    Ok(total)
}

/// Merge the statistics, top lists, range samples and examples of one block of features,
/// returning the examples it lists: the shards' lists re-ranked and their samples pooled, each
/// kept example copied from the one shard that holds its image.
fn merge_block(
    stores: &[Store],
    block: u32,
    m: &super::Manifest,
    out: &mut Writer,
    state: &mut Frame,
) -> Result<u32> {
    let first = block * EXAMPLE_BLOCK;
    let end = (first + EXAMPLE_BLOCK).min(m.num_latents as u32);
    // (image, feature) -> the shard holding that example.
    let mut kept: Vec<((u32, u32), usize)> = Vec::new();
    for f in first..end {
        let mut stats = None;
        let mut pool = Vec::new();
        let mut samples = Vec::new();
        for (j, s) in stores.iter().enumerate() {
            if let Some(st) = s.feature_stats(f)? {
                stats
                    .get_or_insert_with(super::FeatureStats::default)
                    .merge(&st);
            }
            pool.extend(s.top_list(f)?.into_iter().map(|e| (e, j)));
            samples.extend(s.range_sample(f)?.into_iter().map(|e| (e, j)));
        }
        let Some(stats) = stats else { continue };
        pool.sort_by(|a, b| rank_order(a.0, b.0));
        pool.truncate(m.top_n);
        let samples = merge_samples(f, m.range_sample, samples);
        state.push(Kind::Stats, f, &stats.encode());
        for (kind, list) in [(Kind::Top, &pool), (Kind::Range, &samples)] {
            if !list.is_empty() {
                let pairs: Vec<(f32, u32)> = list.iter().map(|e| e.0).collect();
                state.push(kind, f, &encode_list(&pairs));
                kept.extend(list.iter().map(|&((_, i), j)| ((i, f), j)));
            }
        }
    }
    // An example in both lists of its feature is copied once.
    kept.sort_unstable();
    kept.dedup();
    for group in kept.chunk_by(|a, b| a.0.0 == b.0.0) {
        let (image, j) = (group[0].0.0, group[0].1);
        let shard = &stores[j];
        let damaged = || {
            format!(
                "the examples of image {image} in shard {} are damaged; rebuild that shard",
                shard.dir().display()
            )
        };
        let k = example_key(block, image);
        let record = shard.raw(&k)?.with_context(damaged)?;
        let entries = record_entries(&record, image).with_context(damaged)?;
        let wanted = |f: u32| group.binary_search_by_key(&(image, f), |e| e.0).is_ok();
        let merged = filter_record(&entries, wanted).with_context(damaged)?;
        let have = record_entries(&merged, image)?.len();
        if have != group.len() {
            bail!(
                "{}: {have} of {} listed examples found",
                damaged(),
                group.len()
            );
        }
        out.put(k, merged)?;
    }
    Ok(kept.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::super::manifest::tests::manifest;
    use super::super::testutil::{build, dump};
    use super::super::{Aggregator, Manifest, RankRule};
    use super::*;

    fn shard(m: &Manifest, i: usize, n: usize) -> Manifest {
        Manifest {
            shard: Some((i, n)),
            ..m.clone()
        }
    }

    #[test]
    fn merge_of_shards_equals_single_run() {
        for rank in [RankRule::Max, RankRule::MeanBase] {
            let tmp = tempfile::tempdir().unwrap();
            let m = manifest(40, 4, rank);
            let all: Vec<u32> = (0..45).collect();
            let whole = build(&tmp.path().join("whole"), &m, 21, &all, 6);
            // Strided shards and an uneven third one.
            let parts: [Vec<u32>; 3] = [
                all.iter().copied().filter(|i| i % 3 == 0).collect(),
                all.iter().copied().filter(|i| i % 3 == 1).collect(),
                all.iter().copied().filter(|i| i % 3 == 2).collect(),
            ];
            let mut dirs = Vec::new();
            for (i, p) in parts.iter().enumerate().rev() {
                let d = tmp.path().join(format!("shard{i}"));
                drop(build(&d, &shard(&m, i, 3), 21, p, 4));
                dirs.push(d);
            }
            let merged = merge(&tmp.path().join("merged"), &dirs).unwrap();
            assert_eq!(merged.manifest(), whole.manifest());
            let (a, b) = (dump(&whole), dump(&merged));
            assert!(a.len() > 100);
            assert!(a == b, "merged store differs from the single run ({rank})");
            assert!(!tmp.path().join("merged.partial").exists());
        }
    }

    #[test]
    fn merge_refuses_bad_shard_sets() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifest(40, 4, RankRule::Max);
        let d = |name: &str| tmp.path().join(name);
        drop(build(&d("a"), &shard(&m, 0, 2), 1, &[0, 1, 2], 2));
        drop(build(&d("b"), &shard(&m, 1, 2), 1, &[3, 4], 2));
        drop(build(&d("overlap"), &shard(&m, 1, 2), 1, &[2, 5], 2));
        let mut other = shard(&m, 1, 2);
        other.hookpoint = "model.layers.3".into();
        drop(build(&d("other"), &other, 1, &[3, 4], 2));
        let unfinished = Store::create(&d("unfinished"), &shard(&m, 1, 2)).unwrap();
        let mut agg = Aggregator::from_manifest(unfinished.manifest()).unwrap();
        super::super::testutil::feed(&mut agg, &unfinished, 1, &[3], 1);
        drop(unfinished);

        let err = |shards: &[&str]| {
            let paths: Vec<PathBuf> = shards.iter().map(|s| d(s)).collect();
            format!("{:#}", merge(&d("out"), &paths).unwrap_err())
        };
        assert!(err(&["a"]).contains("1/2 are missing"));
        assert!(err(&["a", "a"]).contains("given twice"));
        assert!(err(&["a", "other"]).contains("hookpoint"));
        assert!(err(&["a", "unfinished"]).contains("unfinished"));
        let msg = err(&["a", "overlap"]);
        assert!(msg.contains("image 2 is in both"), "{msg}");
        assert!(!d("out").exists());
        // A leftover partial merge of the same run is replaced; an existing output is not.
        let leftover = merge(&d("first"), &[d("a"), d("b")]).unwrap();
        drop(leftover);
        std::fs::rename(d("first"), d("out.partial")).unwrap();
        let out = merge(&d("out"), &[d("b"), d("a")]).unwrap();
        assert_eq!(out.progress().unwrap().images, 5);
        drop(out);
        assert!(err(&["a", "b"]).contains("already exists"));
        assert!(err(&[]).contains("at least one"));
    }
}
