//! The aggregator: folds one image at a time into per-feature statistics and top-N lists.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use super::examples::{
    block_of, decode_counts, decode_list, encode_counts, encode_list, num_blocks,
};
use super::integrity::record_hash;
use super::positions::{layout_slots, scored_by_slot};
use super::range_sample::decode_sample;
use super::records::{KEY_COUNTS, KEY_PROGRESS, PREFIX_IMAGE, PREFIX_SKIPPED, SkippedImage, key};
use super::state_log::{CHECKPOINT_SLACK, Frame, KEY_STATE, Kind, RECORD_HEADER, StatePointer};
use super::{
    Example, FeatureFilter, FeatureStats, ImageRecord, Manifest, Progress, RankRule, Store,
    rank_order,
};
use crate::session::encode::TokenSelection;
use bucket::{Buckets, FoldParams, Lists};
pub use pending::PendingCommit;
use pending::{Batch, Compaction, StateWrite};

mod bucket;
mod pending;

/// Features kept per image in [`ImageRecord::top_features`].
pub const IMAGE_TOP_FEATURES: usize = 32;

pub use crate::sae::ACTIVE_MIN;

const DIRTY_STATS: u8 = 1;
const DIRTY_HEAP: u8 = 2;
const DIRTY_RANGE: u8 = 4;

/// Folds images into per-feature statistics, top-N example lists and range samples (see
/// `store::range_sample`), committing to a [`Store`].
///
/// Images must arrive in strictly increasing index order (any subset, e.g. one shard's); a
/// resumed run continues after [`Progress::next_image`].
///
/// # Memory bound
///
/// Host memory never grows with the dataset. With `L` = latents and `N` = top_n the aggregator
/// holds at most [`Aggregator::memory_bound`]`(L, N, S)` ≈ `L × (8·(N + S) + 565)` bytes, `S`
/// being the range sample: per latent two list headers, a statistics slot (with its tallies by
/// kind of position), a dirty flag, a group offset and three record hashes (301 B), and for
/// each stored feature that has fired its (score, image) top-N list and range sample
/// (`8·(N+1) + 8·(S+1)` B), histogram (200 B) and allocator overhead — 168 MB for
/// L = 131 072, N = 50, S = 40. On top come the writes pending since the last commit (image records and
/// the token maps of examples that entered a top-N: about 4 B per activation plus 100 B per
/// (feature, image) pair of the uncommitted images) and the largest image's activations grouped
/// by feature (8 B each; the buffer is reused from image to image). Token maps of examples
/// already in a top-N live only in the store, and sled's page cache is capped at
/// [`super::SLED_CACHE_BYTES`]. A commit writes the changed lists (8 B an entry), the new
/// examples once, and compacts a bounded number of example blocks (see below); it never reads
/// back the examples already listed. The commit being written holds the changed lists (at most
/// `8·N·L` B) and the records of the blocks it compacts (at most `MAX_COMPACT_EXAMPLES`
/// examples beyond its first block).
///
/// # Disk bound
///
/// Token maps are written once, in records of one image and [`super::EXAMPLE_BLOCK`]
/// consecutive features. An evicted example stays in its record until its block is compacted:
/// a block is compacted (its records rewritten with the listed examples only, emptied ones
/// deleted) once it stores more than `2 × listed + `[`COMPACT_SLACK`] examples. Hence the
/// examples on disk stay below about twice the `L × N` listed ones however many images pass,
/// and only the per-image records grow with the dataset. [`Aggregator::finish`] does not
/// compact further: rewriting every block once more would cost as much as a fifth of a run on
/// the device (docs/benchmarks.md), and what a store answers (its lists and their examples)
/// is the same whatever evicted examples its records still hold. [`super::merge`] writes
/// only listed examples.
pub struct Aggregator {
    num_latents: usize,
    top_n: usize,
    range_sample: usize,
    rank: RankRule,
    filter: FeatureFilter,
    /// Which positions are scored, for the denominators by kind.
    tokens: TokenSelection,
    /// The position slot of each token of the image being folded (reused from image to image).
    slots: Vec<u8>,
    heaps: Vec<Vec<(f32, u32)>>,
    /// Each feature's range sample, by sampling key.
    samples: Vec<Vec<(f32, u32)>>,
    stats: Vec<Option<FeatureStats>>,
    dirty: Vec<u8>,
    dirty_list: Vec<u32>,
    new_examples: BTreeMap<(u32, u32), Example>,
    new_images: Vec<ImageRecord>,
    new_skips: Vec<SkippedImage>,
    progress: Progress,
    committed: Progress,
    buckets: Buckets,
    /// Examples stored per block (listed or not yet compacted away), as in the `c` record.
    stored: Vec<u32>,
    /// [`COMPACT_SLACK`], lowered by tests to compact small stores.
    compact_slack: u32,
    /// Digest of the index records as of the last prepared commit, and the hashes of the
    /// records it overwrites (see `store::integrity`): per feature its `s/`, `t/` and `r/`
    /// records, then the `c` and `p` records.
    digest: u64,
    stats_hash: Vec<u64>,
    top_hash: Vec<u64>,
    range_hash: Vec<u64>,
    counts_hash: u64,
    progress_hash: u64,
    /// The state log the last prepared commit leaves (see `store::state_log`).
    state: StatePointer,
}

/// A block is compacted once it stores more than twice its listed examples plus this many.
pub const COMPACT_SLACK: u32 = 256;

/// A commit compacts blocks holding at most this many times its new examples (and at least
/// one block), so compaction keeps pace with eviction without stalling one commit.
const COMPACT_PACE: usize = 4;

/// The examples one commit's compaction reads at most (beyond its first block), which bounds
/// the memory a commit holds.
const MAX_COMPACT_EXAMPLES: usize = 1 << 18;

impl Aggregator {
    /// A fresh aggregator for `num_latents` features keeping `top_n` examples each and no range
    /// sample (see [`Aggregator::with_range_sample`]).
    pub fn new(
        num_latents: usize,
        top_n: usize,
        rank: RankRule,
        filter: FeatureFilter,
    ) -> Result<Self> {
        if top_n == 0 {
            bail!("top_n is 0; keep at least one example per feature");
        }
        if num_latents == 0 || num_latents > u32::MAX as usize {
            bail!("num_latents {num_latents} is out of range");
        }
        filter.check(num_latents)?;
        Ok(Self {
            num_latents,
            top_n,
            range_sample: 0,
            rank,
            filter,
            tokens: TokenSelection::default(),
            slots: Vec::new(),
            heaps: vec![Vec::new(); num_latents],
            samples: vec![Vec::new(); num_latents],
            stats: vec![None; num_latents],
            dirty: vec![0; num_latents],
            dirty_list: Vec::new(),
            new_examples: BTreeMap::new(),
            new_images: Vec::new(),
            new_skips: Vec::new(),
            // A fresh store counts positions by kind (`committed` is what an empty store holds).
            progress: Progress {
                scored_by_position: Some([0; 4]),
                ..Progress::default()
            },
            committed: Progress::default(),
            buckets: Buckets::new(),
            stored: vec![0; num_blocks(num_latents)],
            compact_slack: COMPACT_SLACK,
            digest: 0,
            stats_hash: vec![0; num_latents],
            top_hash: vec![0; num_latents],
            range_hash: vec![0; num_latents],
            counts_hash: 0,
            progress_hash: 0,
            state: StatePointer::default(),
        })
    }

    /// The same aggregator keeping a range sample of `n` images per feature.
    pub fn with_range_sample(mut self, n: usize) -> Self {
        self.range_sample = n;
        self
    }

    /// A fresh aggregator configured like `manifest`.
    pub fn from_manifest(manifest: &Manifest) -> Result<Self> {
        Ok(Self::new(
            manifest.num_latents,
            manifest.top_n,
            manifest.rank,
            manifest.features.clone(),
        )?
        .with_range_sample(manifest.range_sample)
        .with_tokens(manifest.tokens))
    }

    /// The same aggregator for a store scoring the positions `tokens` selects.
    pub fn with_tokens(mut self, tokens: TokenSelection) -> Self {
        self.tokens = tokens;
        self
    }

    /// Continue from the last commit of `store`.
    pub fn resume(store: &Store) -> Result<Self> {
        let mut agg = Self::from_manifest(store.manifest())?;
        let dir = store.dir().display();
        let check = |f: u32| -> Result<usize> {
            if (f as usize) < agg.num_latents {
                Ok(f as usize)
            } else {
                bail!(
                    "store {dir} holds feature {f}, past its {} latents; it is damaged",
                    agg.num_latents
                )
            }
        };
        // A decoded list of feature `f`, no longer than the manifest's `cap_name` allows.
        let bounded = |f: u32, what: &str, list: Result<Vec<(f32, u32)>>, cap, cap_name: &str| {
            let list = list.with_context(|| {
                format!("store {dir}: the {what} of feature {f} is damaged; rebuild the cache")
            })?;
            if list.len() > cap {
                bail!(
                    "store {dir}: feature {f} keeps {} images in its {what}, more than {cap_name}",
                    list.len()
                );
            }
            Ok(list)
        };
        let state = store.state()?;
        for (kind, f, v) in state.iter() {
            let at = check(f)?;
            let hash = record_hash(&kind.key(f), v);
            match kind {
                Kind::Stats => {
                    agg.stats[at] = Some(FeatureStats::decode(v).with_context(|| {
                        format!(
                            "store {dir}: the statistics of feature {f} are damaged; rebuild \
                             the cache"
                        )
                    })?);
                    agg.stats_hash[at] = hash;
                }
                Kind::Top => {
                    agg.heaps[at] = bounded(f, "top list", decode_list(v), agg.top_n, "top_n")?;
                    agg.top_hash[at] = hash;
                }
                Kind::Range => {
                    let sample = decode_sample(f, v);
                    agg.samples[at] =
                        bounded(f, "range sample", sample, agg.range_sample, "range_sample")?;
                    agg.range_hash[at] = hash;
                }
            }
        }
        drop(state);
        agg.state = store.state_pointer()?;
        if let Some(bytes) = store.raw(KEY_COUNTS)? {
            agg.stored = decode_counts(&bytes, agg.stored.len()).with_context(|| {
                format!("store {dir}: the example counts are damaged; rebuild the cache")
            })?;
            agg.counts_hash = record_hash(KEY_COUNTS, &bytes);
        }
        if let Some(bytes) = store.raw(KEY_PROGRESS)? {
            agg.progress_hash = record_hash(KEY_PROGRESS, &bytes);
        }
        let mut images = 0u64;
        for prefix in [PREFIX_IMAGE, PREFIX_SKIPPED] {
            for kv in store.scan_raw(prefix) {
                let (k, v) = kv?;
                images = images.wrapping_add(record_hash(&k, &v));
            }
        }
        agg.digest = [agg.counts_hash, agg.progress_hash, images]
            .into_iter()
            .chain(agg.stats_hash.iter().copied())
            .chain(agg.top_hash.iter().copied())
            .chain(agg.range_hash.iter().copied())
            .fold(0u64, u64::wrapping_add);
        agg.progress = store.progress()?;
        agg.committed = agg.progress.clone();
        if agg.progress.images == 0 {
            agg.progress.scored_by_position = Some([0; 4]);
        }
        Ok(agg)
    }

    /// Upper bound in bytes of the aggregator's own state for `num_latents`, `top_n` and
    /// `range_sample` (see the type docs), counting 16 B of allocator overhead per allocation.
    pub fn memory_bound(num_latents: usize, top_n: usize, range_sample: usize) -> u64 {
        use std::mem::size_of;
        let per_latent = 2 * size_of::<Vec<(f32, u32)>>()
            + size_of::<Option<FeatureStats>>()
            + 1
            + size_of::<u32>()
            + 3 * size_of::<u64>();
        let sample = if range_sample == 0 {
            0
        } else {
            8 * (range_sample + 1) + 16
        };
        let per_fired = 8 * (top_n + 1) + sample + 4 * super::HIST_LEN + 2 * 16;
        (num_latents * (per_latent + per_fired) + 4 * num_blocks(num_latents)) as u64
    }

    /// Progress including images not yet committed.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Images added since the last commit.
    pub fn pending_images(&self) -> usize {
        self.new_images.len()
    }

    /// Examples that entered a top list or a range sample since the last commit (their token
    /// maps are held until it is written).
    pub fn pending_examples(&self) -> usize {
        self.new_examples.len()
    }

    /// The in-memory (score, image) top-N list of feature `f`, best first.
    pub fn top_list(&self, f: u32) -> &[(f32, u32)] {
        self.heaps.get(f as usize).map_or(&[], Vec::as_slice)
    }

    /// The in-memory (score, image) range sample of feature `f`, by sampling key.
    pub fn range_list(&self, f: u32) -> &[(f32, u32)] {
        self.samples.get(f as usize).map_or(&[], Vec::as_slice)
    }

    /// Whether image `i` is in feature `f`'s top list or range sample.
    fn lists_image(&self, f: usize, i: u32) -> bool {
        let has = |l: &[(f32, u32)]| l.iter().any(|&(_, j)| j == i);
        has(&self.heaps[f]) || has(&self.samples[f])
    }

    /// The images of feature `f`'s top list and range sample, each once.
    fn listed_images(&self, f: usize) -> impl Iterator<Item = u32> + '_ {
        let top = &self.heaps[f];
        let extra = self.samples[f]
            .iter()
            .filter(move |&&(_, i)| !top.iter().any(|&(_, j)| j == i));
        top.iter().chain(extra).map(|&(_, i)| i)
    }

    /// Fold in one image.
    ///
    /// `acts` are the image's activations as (token index, feature, value), the token index
    /// counting newline tokens as the image-feature sequence does, text positions numbered after
    /// the image's tokens (see [`crate::session::encode::kind_of`]; which positions come is the
    /// manifest's `tokens`); values at or below 1e-5 are ignored. Tokens below `base_tokens`
    /// form the base view; `n_scored_tokens` (the positions scored) adds to the density
    /// denominator. `image.top_features` is filled in here.
    pub fn add_image(
        &mut self,
        mut image: ImageRecord,
        acts: &[(u16, u32, f32)],
        base_tokens: usize,
        n_scored_tokens: usize,
    ) -> Result<()> {
        let index = image.index;
        self.check_next(index)?;
        self.buckets
            .fill(acts, self.num_latents, &self.filter, index)?;
        match &image.layout {
            Some(layout) => layout_slots(layout, &mut self.slots),
            None => self.slots.clear(),
        }
        let params = FoldParams {
            index,
            base_tokens,
            rank: self.rank,
            top_n: self.top_n,
            range_sample: self.range_sample,
            slots: &self.slots,
            by_position: self.progress.scored_by_position.is_some(),
        };
        let lists = Lists {
            top: &mut self.heaps,
            sample: &mut self.samples,
        };
        let folded = self.buckets.fold(lists, &mut self.stats, &params);
        // Shared state changes here, in feature order, exactly as a one-feature-at-a-time fold.
        let mut strongest: Vec<(f32, u32)> = Vec::with_capacity(folded.len());
        for folded in folded {
            let f = folded.f;
            self.mark(f, DIRTY_STATS);
            strongest.push((folded.max, f));
            if folded.top.is_some() {
                self.mark(f, DIRTY_HEAP);
            }
            if folded.sample.is_some() {
                self.mark(f, DIRTY_RANGE);
            }
            if let Some(example) = folded.example {
                self.new_examples.insert((f, index), example);
            }
            // An example evicted from both lists before its first commit never reaches the store.
            for old in [folded.top, folded.sample].into_iter().flatten().flatten() {
                if !self.lists_image(f as usize, old) {
                    self.new_examples.remove(&(f, old));
                }
            }
        }
        strongest.sort_unstable_by(|a, b| rank_order(*a, *b));
        strongest.truncate(IMAGE_TOP_FEATURES);
        image.top_features = strongest.into_iter().map(|(m, f)| (f, m)).collect();
        if let Some(by_kind) = &mut self.progress.scored_by_position {
            let scored = match &image.layout {
                Some(layout) => scored_by_slot(layout, self.tokens, n_scored_tokens),
                // Without geometry (see `FoldParams::slot`): the base view, then the rest.
                None => {
                    let base = base_tokens.min(n_scored_tokens);
                    [base as u64, (n_scored_tokens - base) as u64, 0, 0]
                }
            };
            by_kind.iter_mut().zip(scored).for_each(|(a, b)| *a += b);
        }
        self.new_images.push(image);
        self.progress.images += 1;
        self.progress.tokens += n_scored_tokens as u64;
        self.progress.next_image = index + 1;
        Ok(())
    }

    /// Record that image `skipped.index` could not be aggregated: it is committed with the next
    /// commit, and a resumed run continues after it like after an aggregated image.
    pub fn skip_image(&mut self, skipped: SkippedImage) -> Result<()> {
        self.check_next(skipped.index)?;
        self.progress.next_image = skipped.index + 1;
        self.new_skips.push(skipped);
        Ok(())
    }

    /// Image `index` may come next: the store is open for images and it is past the last one.
    fn check_next(&self, index: u32) -> Result<()> {
        if self.progress.complete {
            bail!("the store is marked complete; image {index} cannot be added");
        }
        if index < self.progress.next_image {
            bail!(
                "image {index} arrived after image {}; images must come in increasing index order",
                self.progress.next_image - 1
            );
        }
        Ok(())
    }

    fn mark(&mut self, f: u32, what: u8) {
        let d = &mut self.dirty[f as usize];
        if *d == 0 {
            self.dirty_list.push(f);
        }
        *d |= what;
    }

    /// Write everything added since the last commit to `store` in one atomic batch, and flush.
    pub fn commit(&mut self, store: &Store) -> Result<()> {
        self.prepare_commit(store)?.write(store).map(drop)
    }

    /// Take what [`Aggregator::commit`] writes, without writing it, so the caller can write it
    /// on another thread while aggregation goes on. It must be written before the next
    /// `prepare_commit` or `finish` (which check the store is at the last commit): writing it
    /// reads the example records of the blocks it compacts.
    pub fn prepare_commit(&mut self, store: &Store) -> Result<PendingCommit> {
        self.prepare(store, false)
    }

    /// Build the next commit; `finishing` marks the store complete.
    fn prepare(&mut self, store: &Store, finishing: bool) -> Result<PendingCommit> {
        let m = store.manifest();
        let dir = store.dir().display();
        if (m.num_latents, m.top_n, m.range_sample, m.rank, &m.features)
            != (
                self.num_latents,
                self.top_n,
                self.range_sample,
                self.rank,
                &self.filter,
            )
        {
            bail!(
                "store {dir} was made with other latents, top_n, range_sample, rank or filter \
                 than this aggregator"
            );
        }
        if store.progress()? != self.committed {
            bail!(
                "store {dir} changed since this aggregator loaded it; resume from the store again"
            );
        }
        let mut batch = Batch::default();
        let mut digest = Digest(self.digest);
        let mut frame = Frame::default();
        for &f in &self.dirty_list {
            let d = std::mem::take(&mut self.dirty[f as usize]);
            if d & DIRTY_STATS != 0
                && let Some(s) = &self.stats[f as usize]
            {
                let v = s.encode();
                digest.replace(&mut self.stats_hash[f as usize], &Kind::Stats.key(f), &v);
                frame.push(Kind::Stats, f, &v);
            }
            if d & DIRTY_HEAP != 0 {
                let v = encode_list(&self.heaps[f as usize]);
                digest.replace(&mut self.top_hash[f as usize], &Kind::Top.key(f), &v);
                frame.push(Kind::Top, f, &v);
            }
            if d & DIRTY_RANGE != 0 {
                let v = encode_list(&self.samples[f as usize]);
                digest.replace(&mut self.range_hash[f as usize], &Kind::Range.key(f), &v);
                frame.push(Kind::Range, f, &v);
            }
        }
        self.dirty_list.clear();
        for image in self.new_images.drain(..) {
            let (k, v) = (
                key(PREFIX_IMAGE, &[image.index]),
                serde_json::to_vec(&image)?,
            );
            digest.replace(&mut 0, &k, &v);
            batch.put(k, v);
        }
        for skipped in self.new_skips.drain(..) {
            let (k, v) = (
                key(PREFIX_SKIPPED, &[skipped.index]),
                serde_json::to_vec(&skipped)?,
            );
            digest.replace(&mut 0, &k, &v);
            batch.put(k, v);
        }
        let entered = std::mem::take(&mut self.new_examples);
        for &(f, _) in entered.keys() {
            self.stored[block_of(f) as usize] += 1;
        }
        let compaction = self.plan_compaction(entered.len());
        self.progress.complete |= finishing;
        let counts = encode_counts(&self.stored);
        digest.replace(&mut self.counts_hash, KEY_COUNTS, &counts);
        batch.put(KEY_COUNTS.to_vec(), counts);
        let progress = serde_json::to_vec(&self.progress)?;
        digest.replace(&mut self.progress_hash, KEY_PROGRESS, &progress);
        batch.put(KEY_PROGRESS.to_vec(), progress);
        self.digest = digest.0;
        let state = self.state_write(frame);
        batch.put(KEY_STATE.to_vec(), serde_json::to_vec(&state.after)?);
        self.state = state.after;
        let base = std::mem::replace(&mut self.committed, self.progress.clone());
        Ok(PendingCommit {
            base,
            after: self.progress.clone(),
            digest: self.digest,
            batch,
            state,
            entered,
            compaction,
        })
    }

    /// The state-log write of a commit whose changed records are `frame`: appended to the log,
    /// or, once the log would outgrow twice its live records, a full frame in a new generation.
    fn state_write(&self, frame: Frame) -> StateWrite {
        let base = self.state;
        let records = frame.records();
        if records == 0 {
            return StateWrite {
                base,
                after: base,
                frame: Vec::new(),
                checkpoint: false,
                records,
            };
        }
        let frame = frame.finish();
        let head = RECORD_HEADER as u64;
        let live: u64 = (0..self.num_latents)
            .map(|f| {
                let stats = self.stats[f]
                    .as_ref()
                    .map_or(0, |_| head + FeatureStats::ENCODED_LEN as u64);
                let list = |l: &[(f32, u32)]| {
                    if l.is_empty() {
                        0
                    } else {
                        head + 8 * l.len() as u64
                    }
                };
                stats + list(&self.heaps[f]) + list(&self.samples[f])
            })
            .sum();
        let checkpoint =
            base.generation == 0 || base.length + frame.len() as u64 > 2 * live + CHECKPOINT_SLACK;
        let frame = if checkpoint { self.full_frame() } else { frame };
        let after = base.after(frame.len() as u64, checkpoint);
        StateWrite {
            base,
            after,
            frame,
            checkpoint,
            records,
        }
    }

    /// One frame holding every live statistics and list record, by feature.
    fn full_frame(&self) -> Vec<u8> {
        let mut frame = Frame::default();
        for (f, s) in self.stats.iter().enumerate() {
            if let Some(s) = s {
                frame.push(Kind::Stats, f as u32, &s.encode());
            }
        }
        for (kind, lists) in [(Kind::Top, &self.heaps), (Kind::Range, &self.samples)] {
            for (f, list) in lists.iter().enumerate() {
                if !list.is_empty() {
                    frame.push(kind, f as u32, &encode_list(list));
                }
            }
        }
        frame.finish()
    }

    /// The blocks this commit compacts, each with its listed (image, feature) pairs (in a top
    /// list or a range sample); their stored counts become the listed ones. Blocks with the
    /// most evicted examples go first.
    fn plan_compaction(&mut self, new_examples: usize) -> Vec<Compaction> {
        let block = super::EXAMPLE_BLOCK as usize;
        let listed = |b: usize| -> u32 {
            let fs = b * block..((b + 1) * block).min(self.num_latents);
            fs.map(|f| self.listed_images(f).count() as u32).sum()
        };
        let mut due: Vec<(u32, usize, u32)> = (0..self.stored.len())
            .filter_map(|b| {
                let (stored, live) = (self.stored[b], listed(b));
                (stored > 2 * live + self.compact_slack).then_some((stored - live, b, live))
            })
            .collect();
        due.sort_unstable_by_key(|&(garbage, b, _)| (std::cmp::Reverse(garbage), b));
        let budget = (COMPACT_PACE * new_examples).min(MAX_COMPACT_EXAMPLES);
        let mut read = 0usize;
        let mut plan = Vec::new();
        for (_, b, live) in due {
            read += self.stored[b] as usize;
            if !plan.is_empty() && read > budget {
                break;
            }
            let fs = b * block..((b + 1) * block).min(self.num_latents);
            let mut pairs: Vec<(u32, u32)> = fs
                .flat_map(|f| self.listed_images(f).map(move |i| (i, f as u32)))
                .collect();
            pairs.sort_unstable();
            self.stored[b] = live;
            plan.push(Compaction {
                block: b as u32,
                listed: pairs,
            });
        }
        plan
    }

    /// Commit what is pending and mark the store complete (no further images).
    pub fn finish(&mut self, store: &Store) -> Result<()> {
        self.prepare(store, true)?.write(store).map(drop)
    }
}

/// A running digest of the index records (see `store::integrity`).
struct Digest(u64);

impl Digest {
    /// Replace the record whose hash is `*old` (0: absent) with `(k, v)`, updating `*old`.
    fn replace(&mut self, old: &mut u64, k: &[u8], v: &[u8]) {
        let new = record_hash(k, v);
        self.0 = self.0.wrapping_sub(*old).wrapping_add(new);
        *old = new;
    }
}

/// Offer (score, image) to a top-`top_n` list: `None` if rejected, else `Some(evicted image)`.
fn offer(heap: &mut Vec<(f32, u32)>, top_n: usize, score: f32, image: u32) -> Option<Option<u32>> {
    if heap.capacity() == 0 {
        // Exact, so a full list never doubles its allocation.
        heap.reserve_exact(top_n + 1);
    }
    let item = (score, image);
    if heap.len() >= top_n
        && heap
            .last()
            .is_some_and(|&last| rank_order(item, last).is_ge())
    {
        return None;
    }
    let at = heap.partition_point(|&x| rank_order(x, item).is_lt());
    heap.insert(at, item);
    let evicted = if heap.len() > top_n {
        heap.pop().map(|x| x.1)
    } else {
        None
    };
    Some(evicted)
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
