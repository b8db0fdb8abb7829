//! The [`Store`] handle: reading a store folder's records and committing to it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

mod open;

use super::backend::{Backend, SharedBackend};
use super::examples::{block_of, decode_list, example_key, find_example};
use super::folder::damaged_db;
use super::guard::{catch_sled, ensure_room};
use super::integrity::{CommitRecord, DIGESTED, record_hash};
use super::range_sample::{RANGE_BANDS, RangeBand, bands, decode_sample};
use super::records::{KEY_PROGRESS, PREFIX_IMAGE, PREFIX_SKIPPED, SkippedImage, key};
use super::state_log::{KEY_STATE, Kind, StatePointer, StateRecords, replay};
use super::{Example, FeatureStats, ImageRecord, Manifest, Progress, StoreError, rank_order};

/// A cloneable handle on one store folder (sled is thread-safe, so clones share the database).
#[derive(Clone)]
pub struct Store {
    pub(super) backend: SharedBackend,
    dir: PathBuf,
    manifest: Manifest,
    /// Commits written since the store was created, as its commit record counts them.
    commits: Arc<AtomicU64>,
    /// What the open found wrong but could still serve (see [`Integrity`]).
    warning: Option<String>,
    /// The committed statistics and lists, read from the state log when first needed and
    /// dropped by every write (see `store::state_log`).
    state: Arc<Mutex<Option<CachedState>>>,
}

/// The state log as last replayed, with the pointer it was replayed at.
struct CachedState {
    pointer: StatePointer,
    records: Arc<StateRecords>,
    /// When a remote handle last compared the pointer with its holder's.
    checked: Instant,
}

/// How long a handle reading through another process trusts its replayed state before it
/// asks for the holder's pointer again: commits show within this, and a page of reads costs
/// one round trip, not one a feature.
const REMOTE_STATE_TTL: Duration = Duration::from_millis(250);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The digest of the records the commit record covers, read from the database.
    pub(crate) fn state_digest(&self) -> Result<u64> {
        let mut digest = 0u64;
        for (kind, f, v) in self.state()?.iter() {
            digest = digest.wrapping_add(record_hash(&kind.key(f), v));
        }
        for name in DIGESTED {
            if name.ends_with(b"/") {
                for kv in self.scan_raw(name) {
                    let (k, v) = kv?;
                    digest = digest.wrapping_add(record_hash(&k, &v));
                }
            } else if let Some(v) = self.raw(name)? {
                digest = digest.wrapping_add(record_hash(name, &v));
            }
        }
        Ok(digest)
    }

    /// Write the commit record for what the database holds now (after writes that did not go
    /// through [`Store::apply_commit`], such as a merge's).
    pub(crate) fn seal(&self) -> Result<()> {
        let digest = self.state_digest()?;
        self.write_record(self.progress()?, digest)
    }

    fn write_record(&self, progress: Progress, digest: u64) -> Result<()> {
        let sequence = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        CommitRecord::new(sequence, progress, digest).write(&self.dir)
    }

    /// A warning from opening the store (it lost committed work but can be served), if any.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }
    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the store was computed from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Apply one batch of about `bytes` bytes atomically and make it durable, once the disk has
    /// room for it.
    pub(crate) fn apply(&self, batch: sled::Batch, bytes: u64) -> Result<()> {
        ensure_room(&self.dir, bytes)?;
        let ctx = || format!("cannot write to the store {}", self.dir.display());
        let db = self.held_db()?;
        // Whatever the outcome, the records read before may no longer be the committed ones.
        self.forget_state();
        let written = catch_sled(|| db.apply_batch(batch).and_then(|()| db.flush()))
            .map_err(|()| damaged_db(&self.dir))?;
        written.with_context(ctx)?;
        Ok(())
    }

    /// [`Store::apply`] a commit that leaves `progress` and index records of digest `digest`,
    /// then write its commit record.
    pub(crate) fn apply_commit(
        &self,
        batch: sled::Batch,
        bytes: u64,
        progress: Progress,
        digest: u64,
    ) -> Result<()> {
        self.apply(batch, bytes)?;
        self.write_record(progress, digest)
    }

    fn get(&self, k: &[u8], what: impl Fn() -> String) -> Result<Option<sled::IVec>> {
        self.get_record_bytes(k)
            .with_context(|| format!("cannot read {} from store {}", what(), self.dir.display()))
    }

    /// Read the statistics and lists afresh at the next read, so a handle beside the job
    /// writing the store answers with that job's last commit at once.
    pub fn forget_cached_state(&self) {
        self.forget_state();
    }

    /// Drop the replayed state, so the next read replays the log the last commit left.
    pub(super) fn forget_state(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Wrap a decoding error with the record and the store path.
    fn damaged<T>(&self, r: Result<T>, what: impl Fn() -> String) -> Result<T> {
        r.with_context(|| {
            format!(
                "{} in store {} is damaged; rebuild the cache",
                what(),
                self.dir.display()
            )
        })
    }

    /// Progress of the last commit.
    pub fn progress(&self) -> Result<Progress> {
        let what = || "the progress record".to_string();
        let Some(bytes) = self.get(KEY_PROGRESS, what)? else {
            return Ok(Progress::default());
        };
        self.damaged(serde_json::from_slice(&bytes).map_err(Into::into), what)
    }

    /// Statistics of feature `f`, or `None` if it never fired (or is outside the store's filter).
    pub fn feature_stats(&self, f: u32) -> Result<Option<FeatureStats>> {
        let what = || format!("the statistics of feature {f}");
        match self.state()?.get(Kind::Stats, f) {
            None => Ok(None),
            Some(b) => self.damaged(FeatureStats::decode(b), what).map(Some),
        }
    }

    /// Every feature that fired, with its statistics, by feature index.
    pub fn features(&self) -> impl Iterator<Item = Result<(u32, FeatureStats)>> + '_ {
        let (records, error) = match self.state() {
            Ok(records) => (Some(records), None),
            Err(e) => (None, Some(e)),
        };
        let latents = records.as_ref().map_or(0, |r| r.stats.len()) as u32;
        error
            .map(Err)
            .into_iter()
            .chain((0..latents).filter_map(move |f| {
                let bytes = records.as_ref()?.get(Kind::Stats, f)?;
                let what = || format!("the statistics of feature {f}");
                Some(
                    self.damaged(FeatureStats::decode(bytes), what)
                        .map(|s| (f, s)),
                )
            }))
    }

    /// The committed statistics and top lists, read from the state log once per commit.
    ///
    /// A handle reading through another process asks for the holder's pointer again once the
    /// replay is [`REMOTE_STATE_TTL`] old, and replays again when a commit moved it.
    pub(crate) fn state(&self) -> Result<Arc<StateRecords>> {
        let remote = self.is_remote();
        let mut slot = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cached) = &mut *slot {
            if !remote || cached.checked.elapsed() < REMOTE_STATE_TTL {
                return Ok(cached.records.clone());
            }
            if self.state_pointer()? == cached.pointer {
                cached.checked = Instant::now();
                return Ok(cached.records.clone());
            }
        }
        let mut pointer = self.state_pointer()?;
        let mut replayed = replay(&self.dir, pointer, self.manifest.num_latents);
        if remote && replayed.is_err() {
            // The holder may have moved to a new log generation during the replay.
            pointer = self.state_pointer()?;
            replayed = replay(&self.dir, pointer, self.manifest.num_latents);
        }
        let records = Arc::new(replayed.map_err(|e| {
            anyhow::Error::new(StoreError::Damaged {
                path: self.dir.clone(),
                why: format!("{e:#}"),
            })
        })?);
        *slot = Some(CachedState {
            pointer,
            records: records.clone(),
            checked: Instant::now(),
        });
        Ok(records)
    }

    /// Which state log, and how much of it, the last commit left.
    pub(crate) fn state_pointer(&self) -> Result<StatePointer> {
        let what = || "the state pointer".to_string();
        match self.get(KEY_STATE, what)? {
            None => Ok(StatePointer::default()),
            Some(b) => self.damaged(serde_json::from_slice(&b).map_err(Into::into), what),
        }
    }

    /// The raw value under `k`, for records read whole (counts).
    pub(crate) fn raw(&self, k: &[u8]) -> Result<Option<sled::IVec>> {
        self.get(k, || format!("record {k:?}"))
    }

    /// The (score, image) top-N list of feature `f`, best first; empty if it never fired.
    pub fn top_list(&self, f: u32) -> Result<Vec<(f32, u32)>> {
        let what = || format!("the top list of feature {f}");
        match self.state()?.get(Kind::Top, f) {
            None => Ok(Vec::new()),
            Some(b) => self.damaged(decode_list(b), what),
        }
    }

    /// The (score, image) range sample of feature `f` (see `store::range_sample`), by sampling
    /// key; empty if it never fired or the store keeps no sample.
    pub fn range_sample(&self, f: u32) -> Result<Vec<(f32, u32)>> {
        let what = || format!("the range sample of feature {f}");
        match self.state()?.get(Kind::Range, f) {
            None => Ok(Vec::new()),
            Some(b) => self.damaged(decode_sample(f, b), what),
        }
    }

    /// Feature `f`'s range sample split into activation bands (deciles), weakest first.
    pub fn range_bands(&self, f: u32) -> Result<Vec<RangeBand>> {
        Ok(bands(&self.range_sample(f)?, RANGE_BANDS))
    }

    /// The examples of feature `f`'s range sample with their token maps, strongest first.
    pub fn range_examples(&self, f: u32) -> Result<Vec<Example>> {
        let mut sample = self.range_sample(f)?;
        sample.sort_by(|a, b| rank_order(*a, *b));
        sample
            .into_iter()
            .map(|(score, i)| self.listed_example(f, i, score))
            .collect()
    }

    /// The example of feature `f` on `image` from its record, which must hold it.
    fn listed_example(&self, f: u32, image: u32, score: f32) -> Result<Example> {
        let what = || format!("the example of feature {f} on image {image}");
        let record = self.get(&example_key(block_of(f), image), what)?;
        let found = record.map(|r| find_example(&r, image, f)).transpose();
        match self.damaged(found, what)?.flatten() {
            Some(e) if e.score.to_bits() == score.to_bits() => Ok(e),
            Some(e) => self.damaged(
                Err(anyhow::anyhow!(
                    "it scores {} but is listed at {score}",
                    e.score
                )),
                what,
            ),
            None => self.damaged(Err(anyhow::anyhow!("it is listed but not stored")), what),
        }
    }

    /// The stored example of feature `f` on image `image`, if it is in the feature's top-N or
    /// range sample.
    pub fn example(&self, f: u32, image: u32) -> Result<Option<Example>> {
        // Evicted examples may linger in records until compaction: the lists decide.
        let mut list = self.top_list(f)?;
        list.extend(self.range_sample(f)?);
        list.iter()
            .find(|&&(_, i)| i == image)
            .map(|&(score, i)| self.listed_example(f, i, score))
            .transpose()
    }

    /// The top examples of feature `f` with their token maps, best first.
    pub fn top_examples(&self, f: u32) -> Result<Vec<Example>> {
        self.top_list(f)?
            .into_iter()
            .map(|(score, i)| self.listed_example(f, i, score))
            .collect()
    }

    /// The record of image `i`, if it has been aggregated.
    pub fn image(&self, i: u32) -> Result<Option<ImageRecord>> {
        let what = || format!("the record of image {i}");
        match self.get(&key(PREFIX_IMAGE, &[i]), what)? {
            None => Ok(None),
            Some(b) => self
                .damaged(serde_json::from_slice(&b).map_err(Into::into), what)
                .map(Some),
        }
    }

    /// Every aggregated image, by index.
    pub fn images(&self) -> impl Iterator<Item = Result<ImageRecord>> + '_ {
        self.scan_raw(PREFIX_IMAGE).map(move |kv| {
            let (k, v) = kv?;
            let what = || format!("image record {k:?}");
            self.damaged(serde_json::from_slice(&v).map_err(Into::into), what)
        })
    }

    /// Every image a cache run skipped, by index.
    pub fn skipped(&self) -> impl Iterator<Item = Result<SkippedImage>> + '_ {
        self.scan_raw(PREFIX_SKIPPED).map(move |kv| {
            let (k, v) = kv?;
            let what = || format!("skipped-image record {k:?}");
            self.damaged(serde_json::from_slice(&v).map_err(Into::into), what)
        })
    }

    /// Every raw key-value pair under `prefix`, for whole-store copies and comparisons.
    pub(crate) fn scan_raw(
        &self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<(sled::IVec, sled::IVec)>> + '_> {
        let db = match &*self.backend() {
            Backend::Local { db, .. } => db.clone(),
            Backend::Remote(_) => {
                return match self.remote_scan(prefix) {
                    Ok(pairs) => Box::new(pairs.into_iter().map(Ok)),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
            }
        };
        let mut iter = db.scan_prefix(prefix);
        let mut failed = false;
        Box::new(std::iter::from_fn(move || {
            if failed {
                return None;
            }
            let item = match catch_sled(|| iter.next()) {
                Ok(item) => {
                    item?.with_context(|| format!("cannot scan store {}", self.dir.display()))
                }
                Err(()) => Err(damaged_db(&self.dir)),
            };
            failed = item.is_err();
            Some(item)
        }))
    }
}

#[cfg(test)]
impl Store {
    /// Replace feature `f`'s record of `kind` behind the commit record's back (tests of damage).
    pub(crate) fn tamper_state(&self, kind: Kind, f: u32, value: &[u8]) {
        let mut frame = super::state_log::Frame::default();
        frame.push(kind, f, value);
        let pointer = self.state_pointer().unwrap();
        let pointer = super::state_log::append(&self.dir, pointer, &frame.finish(), false).unwrap();
        let db = self.held_db().unwrap();
        db.insert(KEY_STATE, serde_json::to_vec(&pointer).unwrap())
            .unwrap();
        db.flush().unwrap();
        self.forget_state();
    }

    /// The raw database, for tests that damage it.
    pub(crate) fn db(&self) -> sled::Db {
        self.held_db().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::super::manifest::tests::manifest;
    use super::super::records::KEY_MANIFEST;
    use super::super::{RankRule, SCHEMA_VERSION, StoreError};
    use super::*;

    fn downcast(e: &anyhow::Error) -> Option<&StoreError> {
        e.chain().find_map(|c| c.downcast_ref::<StoreError>())
    }

    #[test]
    fn create_open_and_mismatch() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run").join("store");
        let m = manifest(16, 3, RankRule::Max);
        let s = Store::create(&dir, &m).unwrap();
        assert_eq!(s.progress().unwrap(), Progress::default());
        assert!(
            Store::create(&dir, &m)
                .unwrap_err()
                .to_string()
                .contains("already holds a store")
        );
        drop(s);
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.manifest(), &m);
        assert_eq!(s.feature_stats(3).unwrap(), None);
        assert!(s.top_examples(3).unwrap().is_empty());
        drop(s);
        Store::open_or_create(&dir, &m).unwrap();
        let mut other = m.clone();
        other.dataset_fingerprint = "1234".into();
        let err = Store::open_or_create(&dir, &other).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("dataset_fingerprint") && msg.contains(&dir.display().to_string()),
            "{msg}"
        );
        assert!(matches!(
            downcast(&err),
            Some(StoreError::ManifestMismatch { .. })
        ));
    }

    #[test]
    fn missing_and_foreign_folders_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = Store::open(&missing).unwrap_err();
        assert!(err.to_string().contains(&missing.display().to_string()));
        assert!(matches!(downcast(&err), Some(StoreError::Missing { .. })));
        assert!(!missing.exists(), "open must not create a folder");
        std::fs::write(tmp.path().join("notes.txt"), "hi").unwrap();
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(
            matches!(downcast(&err), Some(StoreError::NotAStore { .. })),
            "{err:#}"
        );
        let err = Store::create(tmp.path(), &manifest(4, 1, RankRule::Max)).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err:#}");
    }

    #[test]
    fn schema_version_and_damaged_records() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let m = manifest(8, 2, RankRule::Max);
        let s = Store::create(&dir, &m).unwrap();
        let mut v = serde_json::to_value(&m).unwrap();
        v["schema_version"] = 99.into();
        s.db()
            .insert(KEY_MANIFEST, serde_json::to_vec(&v).unwrap())
            .unwrap();
        s.db().flush().unwrap();
        s.tamper_state(Kind::Stats, 5, b"short");
        let msg = format!("{:#}", s.feature_stats(5).unwrap_err());
        assert!(
            msg.contains("feature 5") && msg.contains(&dir.display().to_string()),
            "{msg}"
        );
        assert!(s.features().next().unwrap().is_err());
        s.tamper_state(Kind::Top, 6, &[1u8, 0, 0, 0, 0, 0]);
        for err in [
            s.top_examples(6).unwrap_err(),
            s.top_list(6).unwrap_err(),
            s.example(6, 1).unwrap_err(),
        ] {
            let msg = format!("{err:#}");
            assert!(
                msg.contains("feature 6") && msg.contains("damaged; rebuild the cache"),
                "{msg}"
            );
        }
        drop(s);
        let err = Store::open(&dir).unwrap_err();
        assert!(
            matches!(
                downcast(&err),
                Some(StoreError::SchemaVersion {
                    found: 99,
                    expected: SCHEMA_VERSION,
                    ..
                })
            ),
            "{err:#}"
        );
        assert!(err.to_string().contains(&dir.display().to_string()));
    }

    #[test]
    fn a_store_open_elsewhere_names_the_holding_process() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        drop(Store::create(&dir, &manifest(8, 2, RankRule::Max)).unwrap());
        // A child process holds the store while this one tries to open it.
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new(exe)
            .args([
                "--exact",
                "store::db::tests::hold_store",
                "--ignored",
                "--nocapture",
            ])
            .env("GLINT_HOLD_STORE", &dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        while !line.contains("holding") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the holder ended early"
            );
        }
        let holder = format!("glint process {}", child.id());
        // Writing a cache needs the store to itself: refused, naming the holder.
        let m = manifest(8, 2, RankRule::Max);
        let msg = format!("{:#}", Store::open_or_create(&dir, &m).unwrap_err());
        assert!(msg.contains(&holder) && msg.contains("then run"), "{msg}");
        // Reading opens through the holder, and so do a user tree's writes.
        let reader = Store::open(&dir).unwrap();
        assert!(reader.is_remote());
        assert_eq!(reader.progress().unwrap(), Progress::default());
        reader.put_label(1, Some("stripes")).unwrap();
        let msg = format!("{:#}", reader.apply(sled::Batch::default(), 0).unwrap_err());
        assert!(
            msg.contains(&holder) && msg.contains("written only there"),
            "{msg}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        // The holder is gone: the next read takes the store over, the label kept.
        assert_eq!(reader.label(1).unwrap().as_deref(), Some("stripes"));
        assert!(!reader.is_remote());
    }

    /// Helper process of the test above: holds the store named by `GLINT_HOLD_STORE`.
    #[test]
    #[ignore = "run by a_store_open_elsewhere_names_the_holding_process"]
    fn hold_store() {
        let Some(dir) = std::env::var_os("GLINT_HOLD_STORE") else {
            return;
        };
        let _store = Store::open(Path::new(&dir)).unwrap();
        println!("holding");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }

    #[test]
    fn corrupt_database_file_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        drop(Store::create(&dir, &manifest(8, 2, RankRule::Max)).unwrap());
        let len = std::fs::metadata(dir.join("db")).unwrap().len() as usize;
        std::fs::write(dir.join("db"), vec![0xA5u8; len.max(4096)]).unwrap();
        std::fs::write(dir.join("conf"), b"garbage").unwrap();
        let err = Store::open(&dir).unwrap_err();
        assert!(
            format!("{err:#}").contains(&dir.display().to_string()),
            "{err:#}"
        );
    }
}
