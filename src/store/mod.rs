//! The activation-cache store: per-feature statistics and top-N examples in a sled database.
//!
//! # Schema (version [`SCHEMA_VERSION`])
//!
//! One sled tree (the default one) holds the records below under a one-letter key prefix; ids
//! are big-endian `u32` so keys sort by id. The `s/`, `t/` and `r/` records, which a commit changes by
//! the hundred thousand at 131k latents, live instead in an append-only state log beside the
//! database (`state-<generation>.log`, see `state_log`), keyed the same way. Every commit first
//! appends its changed `s/`, `t/` and `r/` records to the log and fsyncs it, then applies one atomic
//! `apply_batch` whose `w` record names the log and its committed length, and flushes; so a
//! store killed at any moment holds exactly the state of its last commit. After
//! each commit an fsync'd [`CommitRecord`] beside the database names it (sequence, progress, a
//! digest of the `p`, `c`, `i/`, `k/`, `s/`, `t/` and `r/` records); opening compares the two, so a
//! database that lost commits is reported and one whose records changed is refused.
//!
//! | key | value |
//! | --- | --- |
//! | `m` | [`Manifest`] as JSON; `schema_version` is read and checked first |
//! | `p` | [`Progress`] as JSON: images, tokens, next image index, complete flag, positions scored per kind |
//! | `i/<image>` | [`ImageRecord`] as JSON |
//! | `s/<feature>` (state log) | [`FeatureStats`]: fired tokens u64, fired images u64, exact sum u128 (units of 2^-40), max f32, [`HIST_LEN`] × u32 histogram, then for each kind of position ([`POSITION_KINDS`]: base, high-res, newline, text) fired tokens u64 and exact sum u128 (stores made before they were counted end after the histogram) |
//! | `t/<feature>` (state log) | the feature's top-N list, best first: (score f32, image u32) per entry |
//! | `r/<feature>` (state log) | the feature's range sample (see `range_sample`): at most the manifest's `range_sample` (score f32, image u32) entries, by [`sample_key`] |
//! | `e/<block><image>` | the token maps of image `image` for the features of block `block` (features `64·block ..`, [`EXAMPLE_BLOCK`] a block) that listed it (in its top list or range sample) when it was committed, by feature: feature u32, then an [`Example`]: image u32, score f32, max f32, mean_base f32, count u32, count × (token u16, f16 bits u16) |
//! | `w` | the state log's generation and committed length, as JSON |
//! | `c` | examples stored per block (listed, or evicted and not yet compacted away), u32 each |
//! | `k/<image>` | [`SkippedImage`] as JSON: an image the cache could not aggregate, and why |
//! | tree `explanations`: `<feature>/<fp>` | [`Explanation`] as JSON; `fp` = 16 hex digits of FNV(explainer model, prompt hash); written and flushed one at a time |
//! | tree `scores`: `<feature>/<method>/<fp>` | [`Score`] as JSON; `fp` = 16 hex digits of FNV(scorer model, prompt hash); flushed one at a time |
//! | tree `labels`: `<feature>` | a person's label and when it was written, as JSON |
//! | tree `lists`: `<name>` | a [`FeatureList`] as JSON: features in the order added, a note each |
//! | tree `pages`: `<feature>/page/<fp>` | a feature page (logit lens, neighbours, co-firing) as JSON; `fp` = FNV(SAE fingerprint); derived, not merged |
//!
//! All numbers are little-endian. Features that never fired have no `s/` or `t/` records. A
//! commit writes a feature's `s/` record when it fired, its `t/` record when its list changed
//! (8 bytes an entry), and each example once, when it enters a list, in the record of its image
//! and block; it never reads back or rewrites listed examples. An evicted example stays in its
//! record until the block is compacted (its records rewritten with the listed examples, emptied
//! ones deleted), which happens once a block stores more than twice its listed examples plus
//! [`COMPACT_SLACK`]. What a store answers (statistics, lists, the listed examples) is a
//! function of its content alone; which evicted examples its records still hold depends on when
//! compaction ran, and a merge writes the listed ones only.
//! The `explanations` tree is user data, not cache: merges and seed exports leave it out.
//!
//! # Ranking and determinism
//!
//! A top-N list is ordered by score (descending), then image index (ascending). That is a total
//! order on distinct images, so the list kept does not depend on the order images arrive in; the
//! statistics are integer sums (the activation sum in fixed point), so they do not either; a
//! range sample keeps the images of smallest [`sample_key`], a fixed function of (feature,
//! image), so it does not either. Hence a
//! resumed run, and a merge of disjoint shards, equal an uninterrupted single run exactly.
//!
//! # Memory
//!
//! See [`Aggregator`] for the bound on host memory during aggregation.

mod aggregate;
mod backend;
pub mod bench;
mod db;
mod examples;
mod explanations;
mod feature_list;
mod folder;
mod guard;
pub mod ingest;
mod integrity;
mod lists;
mod manifest;
mod merge;
mod pages;
mod positions;
mod range_sample;
mod records;
mod remote;
mod scores;
mod seed;
mod state_log;
#[cfg(test)]
pub(crate) mod testutil;
mod tree_codec;

use std::path::PathBuf;

pub use aggregate::{ACTIVE_MIN, Aggregator, COMPACT_SLACK, IMAGE_TOP_FEATURES, PendingCommit};
pub use db::Store;
pub use examples::EXAMPLE_BLOCK;
pub use explanations::{EXPLANATIONS_TREE, Explanation, TokenUsage, unix_now};
pub use folder::{SLED_CACHE_BYTES, folder_bytes};
pub use guard::DEFAULT_MIN_FREE_BYTES;
pub use integrity::{COMMIT_RECORD_FILE, CommitRecord};
pub use lists::{FeatureList, LISTS_TREE, ListEntry};
pub use manifest::{FeatureFilter, GLINT_VERSION, Manifest, RankRule, SCHEMA_VERSION};
pub use merge::merge;
pub use pages::PAGES_TREE;
pub use positions::{POSITION_KINDS, PositionRow, PositionTallies, PositionTally, position_slot};
pub use range_sample::{
    BandExample, DEFAULT_RANGE_SAMPLE, RANGE_BANDS, RangeBand, bands, sample_key,
};
pub use records::{
    Example, FeatureStats, HIST_BINS, HIST_LEN, HIST_MAX, HIST_MIN, ImageRecord, Progress,
    SkippedImage, hist_bin, hist_edges, rank_order,
};
pub use scores::{SCORES_TREE, Score};
pub use seed::{export_seed, import_seed, seed_splits};

/// Store failures that callers may want to tell apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Two manifests describe different runs.
    #[error(
        "manifest field `{field}` differs: this run has {ours}, the store has {theirs}; \
         use a new store folder for a different run"
    )]
    ManifestMismatch {
        /// Name of the first differing field.
        field: String,
        /// Value on the side being opened or added.
        ours: String,
        /// Value recorded in the existing store.
        theirs: String,
    },
    /// The store was written with another layout version.
    #[error(
        "store {path} has schema version {found}, this glint reads version {expected}; \
         rebuild the cache or use a matching glint"
    )]
    SchemaVersion {
        /// Store folder.
        path: PathBuf,
        /// Version found in the store.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// No store at the path.
    #[error("no glint store at {path}: the folder does not exist; run the cache job first")]
    Missing {
        /// Store folder.
        path: PathBuf,
    },
    /// The store's files do not hold what it committed.
    #[error(
        "store {path} is damaged: {why}. It cannot be repaired in place: move the folder away \
         (or delete it) and rerun the cache command, which recomputes it"
    )]
    Damaged {
        /// Store folder.
        path: PathBuf,
        /// What was found.
        why: String,
    },
    /// The path holds something other than a glint store.
    #[error("{path} is not a glint store ({why})")]
    NotAStore {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}
