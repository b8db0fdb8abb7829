//! A prepared commit, and the read-modify-write of the top records it rewrites.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use super::super::records::{PREFIX_TOP, key, top_entries};
use super::super::{Example, Progress, Store};

/// A commit built by [`super::Aggregator::prepare_commit`], not yet in the store.
///
/// The token maps of examples that were already in a top list before this commit live only in
/// the store, so the new top records are assembled when the commit is written: each from the
/// feature's new (score, image) list, the examples that entered since the last commit (held
/// here), and the store's current record (read back).
#[must_use = "a prepared commit does nothing until it is written"]
pub struct PendingCommit {
    /// Progress of the store this commit extends; the records read back must be that state's.
    pub(super) base: Progress,
    /// Statistics, image records and progress, ready to go.
    pub(super) batch: sled::Batch,
    /// Features whose top list changed, ascending, each with the end of its list in `lists`.
    pub(super) tops: Vec<(u32, usize)>,
    /// The new top lists back to back.
    pub(super) lists: Vec<(f32, u32)>,
    /// Examples that entered a top list since the last commit and are still in it.
    pub(super) entered: BTreeMap<(u32, u32), Example>,
    /// Records the commit inserts or removes.
    pub(super) keys: usize,
}

impl PendingCommit {
    /// Records the commit inserts or removes (one per key, whatever its size).
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// Apply the commit to `store` atomically and flush; `store` must be at the commit this one
    /// was prepared after.
    pub fn write(self, store: &Store) -> Result<()> {
        let dir = store.dir().display();
        if store.progress()? != self.base {
            bail!(
                "store {dir} is not at the commit this one was prepared after; \
                 resume from the store again"
            );
        }
        let Self {
            mut batch,
            tops,
            lists,
            entered,
            ..
        } = self;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS)
            .min(tops.len() / MIN_TOPS_PER_THREAD)
            .max(1);
        for part in rebuild_tops(store, &tops, &lists, entered, threads)? {
            for (f, record) in part {
                batch.insert(key(PREFIX_TOP, &[f]), record);
            }
        }
        store.apply(batch)
    }
}

/// Below this many features per thread, one thread rebuilds them all.
const MIN_TOPS_PER_THREAD: usize = 4096;

/// At most this many threads rebuild top records.
const MAX_THREADS: usize = 8;

/// New top records of consecutive features, as (feature, record).
type Part = Vec<(u32, Vec<u8>)>;

/// The new top record of every feature in `tops`, in parts of consecutive features, built on
/// up to `threads` threads (reads of a sled store are thread-safe).
fn rebuild_tops(
    store: &Store,
    tops: &[(u32, usize)],
    lists: &[(f32, u32)],
    mut entered: BTreeMap<(u32, u32), Example>,
    threads: usize,
) -> Result<Vec<Part>> {
    let per = tops.len().div_ceil(threads).max(1);
    // Each part takes the new examples of its features: those before the next part's first one.
    let mut parts = Vec::with_capacity(threads);
    let mut list_start = 0;
    for chunk in tops.chunks(per).rev() {
        let own = entered.split_off(&(chunk[0].0, 0));
        parts.push((chunk, own));
    }
    parts.reverse();
    if let Some(((f, i), _)) = entered.first_key_value() {
        bail!(internal_stray(*f, *i));
    }
    let mut jobs = Vec::with_capacity(parts.len());
    for (chunk, own) in parts {
        let start = list_start;
        list_start = chunk.last().map_or(start, |&(_, end)| end);
        jobs.push((chunk, own, start));
    }
    if jobs.len() <= 1 {
        return jobs
            .into_iter()
            .map(|(chunk, own, start)| rebuild_part(store, chunk, lists, start, own))
            .collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(chunk, own, start)| {
                scope.spawn(move || rebuild_part(store, chunk, lists, start, own))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(part) => part,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

fn internal_stray(f: u32, i: u32) -> String {
    format!(
        "internal error: the example of feature {f} on image {i} entered a top list that the \
         commit does not rewrite"
    )
}

/// Rebuild the top records of `tops` (their lists start at `lists[start]`), taking their new
/// examples from `entered`, which must hold no others.
fn rebuild_part(
    store: &Store,
    tops: &[(u32, usize)],
    lists: &[(f32, u32)],
    mut start: usize,
    mut entered: BTreeMap<(u32, u32), Example>,
) -> Result<Part> {
    let dir = store.dir().display();
    let mut out = Vec::with_capacity(tops.len());
    for &(f, end) in tops {
        let list = &lists[start..end];
        start = end;
        // `entered` is ordered by (feature, image) and `tops` by feature, so each feature's new
        // examples are at the front of the map when its turn comes.
        if let Some(&(g, i)) = entered.first_key_value().map(|(k, _)| k)
            && g < f
        {
            bail!(internal_stray(g, i));
        }
        let mut fresh = Vec::new();
        while let Some(e) = entered.first_entry().filter(|e| e.key().0 == f) {
            fresh.push(e.remove());
        }
        let old = store.top_record(f)?;
        let record = rebuild_top(list, fresh, old.as_deref()).with_context(|| {
            format!(
                "cannot update the top examples of feature {f} in store {dir}: the store does \
                 not hold what the aggregator expects (damaged, or changed by another process); \
                 resume from the store again or rebuild the cache"
            )
        })?;
        out.push((f, record));
    }
    if let Some(((f, i), _)) = entered.first_key_value() {
        bail!(internal_stray(*f, *i));
    }
    Ok(out)
}

/// The top record of `list` (best first): the examples in `fresh` from memory, the others copied
/// from the feature's `old` record.
fn rebuild_top(
    list: &[(f32, u32)],
    mut fresh: Vec<Example>,
    old: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let old_entries = match old {
        Some(bytes) => top_entries(bytes)?,
        None => Vec::new(),
    };
    let fresh_bytes: usize = fresh
        .iter()
        .map(|e| Example::encoded_len(e.tokens.len()))
        .sum();
    let mut out = Vec::with_capacity(old.map_or(0, <[u8]>::len) + fresh_bytes);
    // Survivors of the old list keep their relative order, so one pass over it finds them all.
    let mut survivors = old_entries.iter();
    for &(score, image) in list {
        if let Some(at) = fresh.iter().position(|e| e.image == image) {
            fresh.swap_remove(at).encode_into(&mut out);
            continue;
        }
        match survivors.by_ref().find(|e| e.image == image) {
            Some(e) if e.score.to_bits() == score.to_bits() => out.extend_from_slice(e.bytes),
            Some(e) => bail!(
                "image {image} has score {} in the store but {score} in the aggregator",
                e.score
            ),
            None => bail!("image {image} is in the top list but not in the stored record"),
        }
    }
    if let Some(e) = fresh.first() {
        bail!("image {} entered but is not in the top list", e.image);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::super::super::manifest::tests::manifest;
    use super::super::super::testutil::feed;
    use super::super::super::{Aggregator, RankRule};
    use super::*;

    #[test]
    fn threaded_rebuild_equals_one_thread() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifest(64, 3, RankRule::Max);
        let store = Store::create(tmp.path(), &m).unwrap();
        let mut agg = Aggregator::from_manifest(&m).unwrap();
        let idx: Vec<u32> = (0..14).collect();
        feed(&mut agg, &store, 4, &idx[..8], 4);
        feed(&mut agg, &store, 4, &idx[8..], 100);
        let p = agg.prepare_commit(&store).unwrap();
        assert!(p.tops.len() > 10 && !p.entered.is_empty());
        let rebuild = |entered: &BTreeMap<(u32, u32), Example>, threads| {
            rebuild_tops(&store, &p.tops, &p.lists, entered.clone(), threads)
        };
        let one = rebuild(&p.entered, 1).unwrap();
        let many = rebuild(&p.entered, 3).unwrap();
        assert_eq!((one.len(), many.len()), (1, 3));
        assert_eq!(one.concat(), many.concat());
        assert_eq!(one[0].len(), p.tops.len());
        // A new example of a feature whose record is not rewritten is refused, wherever it is.
        let spare = p.entered.values().next().unwrap().clone();
        let untouched = (0..64u32).filter(|f| !p.tops.iter().any(|t| t.0 == *f));
        for f in [
            untouched.clone().next().unwrap(),
            untouched.clone().next_back().unwrap(),
        ] {
            let mut stray = p.entered.clone();
            stray.insert((f, 999), spare.clone());
            for threads in [1, 3] {
                let msg = rebuild(&stray, threads).unwrap_err().to_string();
                assert!(msg.contains(&format!("feature {f} on image 999")), "{msg}");
            }
        }
        p.write(&store).unwrap();
        assert_eq!(store.top_list(5).unwrap(), agg.top_list(5));
    }

    fn ex(image: u32, score: f32, n: u16) -> Example {
        Example {
            image,
            score,
            max: score,
            mean_base: 0.5,
            tokens: (0..n).map(|t| (t * 3, f16::from_f32(score))).collect(),
        }
    }

    fn record(examples: &[Example]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in examples {
            e.encode_into(&mut out);
        }
        out
    }

    #[test]
    fn rebuild_merges_fresh_and_stored_examples_in_rank_order() {
        let old = record(&[ex(1, 5.0, 2), ex(4, 3.0, 1), ex(2, 1.0, 3)]);
        // Image 9 enters between 1 and 4; image 2 is evicted.
        let list = [(5.0, 1), (4.0, 9), (3.0, 4)];
        let got = rebuild_top(&list, vec![ex(9, 4.0, 4)], Some(&old)).unwrap();
        assert_eq!(got, record(&[ex(1, 5.0, 2), ex(9, 4.0, 4), ex(4, 3.0, 1)]));
        // A first record comes from memory alone.
        let first = rebuild_top(&[(2.0, 0)], vec![ex(0, 2.0, 1)], None).unwrap();
        assert_eq!(first, record(&[ex(0, 2.0, 1)]));
    }

    #[test]
    fn rebuild_refuses_records_that_disagree_with_the_list() {
        let old = record(&[ex(1, 5.0, 2), ex(4, 3.0, 1)]);
        let missing = rebuild_top(&[(5.0, 1), (3.0, 7)], vec![], Some(&old)).unwrap_err();
        assert!(missing.to_string().contains("image 7"), "{missing}");
        let rescored = rebuild_top(&[(6.0, 1)], vec![], Some(&old)).unwrap_err();
        assert!(rescored.to_string().contains("score"), "{rescored}");
        // Out of order against the stored record: one pass cannot find image 1 after image 4.
        assert!(rebuild_top(&[(3.0, 4), (5.0, 1)], vec![], Some(&old)).is_err());
        let stray = rebuild_top(&[(5.0, 1)], vec![ex(8, 1.0, 1)], Some(&old)).unwrap_err();
        assert!(stray.to_string().contains("image 8"), "{stray}");
        assert!(rebuild_top(&[(5.0, 1)], vec![], Some(&old[..10])).is_err());
    }
}
