//! A prepared commit: its batch, the examples that entered lists, and the blocks it compacts.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use super::super::examples::{block_of, example_key, filter_record, push_example, record_entries};
use super::super::records::{PREFIX_EXAMPLES, key, key_id};
use super::super::state_log::{self, StatePointer};
use super::super::{Example, Progress, Store};

/// A sled batch that counts what it writes.
#[derive(Default)]
pub(crate) struct Batch {
    pub batch: sled::Batch,
    /// Keys inserted or removed.
    pub keys: usize,
    /// Bytes of the keys and values inserted.
    pub bytes: u64,
}

impl Batch {
    /// Insert `v` under `k`.
    pub fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.keys += 1;
        self.bytes += (k.len() + v.len()) as u64;
        self.batch.insert(k, v);
    }

    /// Remove `k`.
    pub fn remove(&mut self, k: &[u8]) {
        self.keys += 1;
        self.batch.remove(k);
    }
}

/// A commit's write to the state log (see `store::state_log`).
pub(crate) struct StateWrite {
    /// The log the store is at before the commit.
    pub base: StatePointer,
    /// The log the commit leaves, named by its batch.
    pub after: StatePointer,
    /// The frame to write (empty: the log does not change).
    pub frame: Vec<u8>,
    /// Whether the frame starts the next generation.
    pub checkpoint: bool,
    /// Records of the frame (the changed ones, even when a checkpoint writes them all).
    pub records: u32,
}

/// One block to compact: its example records are rewritten to hold only `listed`.
pub(crate) struct Compaction {
    pub block: u32,
    /// The block's (image, feature) pairs in top lists after the commit, ascending.
    pub listed: Vec<(u32, u32)>,
}

/// A commit built by [`super::Aggregator::prepare_commit`], not yet in the store.
///
/// Statistics, lists, image records, counts and progress are encoded already; the examples that
/// entered lists are grouped into their (block, image) records, and the compacted blocks read
/// and rewritten, when the commit is written (on the caller's writer thread).
#[must_use = "a prepared commit does nothing until it is written"]
pub struct PendingCommit {
    /// Progress of the store this commit extends; the records read back must be that state's.
    pub(super) base: Progress,
    /// Progress the commit leaves.
    pub(super) after: Progress,
    /// Digest of the index records the commit leaves (see `store::integrity`).
    pub(super) digest: u64,
    /// Image records, counts, progress and the state pointer, ready to go.
    pub(super) batch: Batch,
    /// Statistics and lists, for the state log.
    pub(super) state: StateWrite,
    /// Examples that entered a top list since the last commit and are still in it.
    pub(super) entered: BTreeMap<(u32, u32), Example>,
    /// Blocks whose evicted examples this commit drops.
    pub(super) compaction: Vec<Compaction>,
}

impl PendingCommit {
    /// Records the commit inserts or removes so far, the state log's changed ones included (one
    /// per key, whatever its size; example records and compaction are counted when it is
    /// written).
    pub fn keys(&self) -> usize {
        self.batch.keys + self.state.records as usize
    }

    /// Apply the commit to `store` atomically and flush; `store` must be at the commit this one
    /// was prepared after. Returns the bytes of keys and values written.
    pub fn write(self, store: &Store) -> Result<u64> {
        let dir = store.dir().display();
        if store.progress()? != self.base {
            bail!(
                "store {dir} is not at the commit this one was prepared after; \
                 resume from the store again"
            );
        }
        let Self {
            base,
            after,
            digest,
            mut batch,
            state,
            entered,
            compaction,
        } = self;
        if store.state_pointer()? != state.base {
            bail!(
                "store {dir} is not at the state log this commit was prepared after; resume \
                 from the store again"
            );
        }
        // `entered` is ordered by (feature, image), so each record gets its features in order.
        let mut records: BTreeMap<(u32, u32), Vec<u8>> = BTreeMap::new();
        for ((f, image), example) in &entered {
            push_example(
                records.entry((block_of(*f), *image)).or_default(),
                *f,
                example,
            );
        }
        for ((block, image), record) in records {
            batch.put(example_key(block, image), record);
        }
        for c in &compaction {
            compact(store, c, base.next_image, &mut batch).with_context(|| {
                format!(
                    "cannot compact the examples of features {}..{} in store {dir}: the store \
                     does not hold what the aggregator expects (damaged, or changed by another \
                     process); resume from the store again or rebuild the cache",
                    c.block * super::super::EXAMPLE_BLOCK,
                    (c.block + 1) * super::super::EXAMPLE_BLOCK
                )
            })?;
        }
        let bytes = batch.bytes + state.frame.len() as u64;
        super::super::guard::ensure_room(store.dir(), 2 * bytes)?;
        let written = state_log::append(store.dir(), state.base, &state.frame, state.checkpoint)?;
        if written != state.after {
            bail!(
                "the state log of store {dir} was written to {written:?}, not {:?} as prepared",
                state.after
            );
        }
        store.apply_commit(batch.batch, bytes, after, digest)?;
        if state.checkpoint {
            state_log::prune(store.dir(), state.after);
        }
        Ok(bytes)
    }
}

/// Rewrite the stored records of `c.block` to hold only its listed examples, deleting those left
/// empty; every listed example of an image before `first_new` (the commit's first image, whose
/// records the store does not hold yet) must be found.
fn compact(store: &Store, c: &Compaction, first_new: u32, batch: &mut Batch) -> Result<()> {
    let prefix = key(PREFIX_EXAMPLES, &[c.block]);
    let mut found = 0usize;
    for kv in store.scan_raw(&prefix) {
        let (k, v) = kv?;
        let image = key_id(&prefix, &k)?;
        let listed = |f: u32| c.listed.binary_search(&(image, f)).is_ok();
        let entries = record_entries(&v, image)?;
        found += entries.iter().filter(|e| listed(e.feature)).count();
        match filter_record(&entries, listed) {
            Some(kept) if kept.len() == v.len() => {}
            Some(kept) => batch.put(k.to_vec(), kept),
            None => batch.remove(&k),
        }
    }
    let stored = c.listed.iter().filter(|(i, _)| *i < first_new).count();
    if found != stored {
        bail!("the store holds {found} of the {stored} listed examples it should");
    }
    Ok(())
}
