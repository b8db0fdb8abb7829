//! The [`Store`] handle: creating, opening and reading a store folder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};

use super::examples::{block_of, decode_list, example_key, find_example};
use super::guard::{catch_sled, ensure_room};
use super::integrity::{
    COMMIT_RECORD_FILE, CommitRecord, DIGESTED, Integrity, record_hash, sync_parent,
};
use super::records::{
    KEY_MANIFEST, KEY_PROGRESS, PREFIX_IMAGE, PREFIX_SKIPPED, PREFIX_STATS, PREFIX_TOP,
    SkippedImage, key,
};
use super::state_log::{KEY_STATE, Kind, StatePointer, StateRecords, is_log_name, replay};
use super::{Example, FeatureStats, ImageRecord, Manifest, Progress, SCHEMA_VERSION, StoreError};

/// Upper bound of sled's page cache for one open store.
pub const SLED_CACHE_BYTES: u64 = 128 << 20;

/// Bytes of every file under `dir` (0 for what cannot be read).
pub fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// A cloneable handle on one store folder (sled is thread-safe, so clones share the database).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    manifest: Manifest,
    /// Commits written since the store was created, as its commit record counts them.
    commits: Arc<AtomicU64>,
    /// What the open found wrong but could still serve (see [`Integrity`]).
    warning: Option<String>,
    /// The committed statistics and lists, read from the state log when first needed and
    /// dropped by every write (see `store::state_log`).
    state: Arc<Mutex<Option<Arc<StateRecords>>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Whether `dir` holds sled's files.
fn has_db_files(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// File beside the database naming the process that has it open, for the lock error.
const HOLDER_FILE: &str = "glint.pid";

/// File present while a store is being created: a folder holding it is an interrupted creation,
/// which the next creation clears and starts again.
const CREATING_MARKER: &str = "glint-creating";

/// Whether `name` is one of the entries a store folder holds (sled's and glint's own), the only
/// ones an interrupted creation may leave.
fn is_store_entry(name: &str) -> bool {
    matches!(
        name,
        "conf" | "db" | "blobs" | HOLDER_FILE | CREATING_MARKER
    ) || name.starts_with("snap.")
        || name.starts_with(COMMIT_RECORD_FILE)
        || is_log_name(name)
}

/// Write an empty file durably (the file and its folder fsync'd).
fn touch_durably(path: &Path) -> std::io::Result<()> {
    std::fs::File::create(path)?.sync_all()?;
    sync_parent(path)
}

/// Remove what an interrupted creation left in `dir` (it holds [`CREATING_MARKER`]).
fn clear_interrupted_creation(dir: &Path) -> Result<()> {
    let ctx = || {
        format!(
            "cannot clear the interrupted store creation in {}",
            dir.display()
        )
    };
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).with_context(ctx)? {
        let e = e.with_context(ctx)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_store_entry(&name) {
            bail!(
                "{} holds an interrupted store creation and also {name:?}, which glint did not \
                 make; move it away or give the store a new folder",
                dir.display()
            );
        }
        entries.push(e.path());
    }
    // The marker goes last, so a kill during the clearing leaves it recognisable.
    entries.sort_by_key(|p| p.ends_with(CREATING_MARKER));
    for path in entries {
        if path.is_dir() {
            std::fs::remove_dir_all(&path).with_context(ctx)?;
        } else {
            std::fs::remove_file(&path).with_context(ctx)?;
        }
    }
    Ok(())
}

/// Open sled at `dir`, turning its errors and panics (it panics on some corruptions) into errors
/// that name the folder and, when another process holds the database, that process.
fn open_db(dir: &Path) -> Result<sled::Db> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(SLED_CACHE_BYTES);
    match catch_sled(|| config.open()) {
        Ok(Ok(db)) => {
            // Best effort: the file only improves the message another process may print.
            let _ = std::fs::write(dir.join(HOLDER_FILE), std::process::id().to_string());
            Ok(db)
        }
        Ok(Err(e)) => {
            let holder = std::fs::read_to_string(dir.join(HOLDER_FILE))
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
                .filter(|pid| Path::new(&format!("/proc/{pid}")).exists());
            let why = match holder {
                Some(pid) => format!(
                    "it is open in glint process {pid} (a store opens in one process at a \
                     time: the workbench or one batch job); wait for that process to end or \
                     stop it, then run this again"
                ),
                None => "damaged, or in use by another glint".to_string(),
            };
            Err(e).with_context(|| {
                format!(
                    "cannot open the store database in {} ({why})",
                    dir.display()
                )
            })
        }
        Err(()) => Err(damaged_db(dir)),
    }
}

/// The error for a database sled cannot read (it panicked).
fn damaged_db(dir: &Path) -> anyhow::Error {
    anyhow::Error::new(StoreError::Damaged {
        path: dir.to_path_buf(),
        why: "its database cannot be read (sled failed on its files)".into(),
    })
}

impl Store {
    /// Create a new store in `dir` (absent or empty) with `manifest`.
    ///
    /// Creation is recognisable until it is done: a marker file is written (durably) before
    /// sled's first file and removed after the first commit, and a folder holding the marker is
    /// cleared and created again, so a kill at any moment leaves nothing a rerun refuses.
    pub fn create(dir: &Path, manifest: &Manifest) -> Result<Store> {
        manifest.validate()?;
        if dir.join(CREATING_MARKER).exists() {
            clear_interrupted_creation(dir)?;
        } else if dir.exists() {
            let mut entries = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read the store folder {}", dir.display()))?;
            if entries.next().is_some() {
                if has_db_files(dir) {
                    bail!(
                        "{} already holds a store; open or resume it instead",
                        dir.display()
                    );
                }
                bail!(
                    "{} is not empty; give the store a new or empty folder",
                    dir.display()
                );
            }
        }
        ensure_room(dir, 0)?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the store folder {}", dir.display()))?;
        let marker = dir.join(CREATING_MARKER);
        touch_durably(&marker)
            .with_context(|| format!("cannot create the store folder {}", dir.display()))?;
        let db = open_db(dir)?;
        let store = Self::init(db, dir, manifest)?;
        std::fs::remove_file(&marker)
            .and_then(|()| sync_parent(&marker))
            .with_context(|| format!("cannot finish creating the store {}", dir.display()))?;
        Ok(store)
    }

    /// Write the manifest and empty progress of a fresh database, and its first commit record.
    fn init(db: sled::Db, dir: &Path, manifest: &Manifest) -> Result<Store> {
        let mut batch = sled::Batch::default();
        batch.insert(KEY_MANIFEST, serde_json::to_vec(manifest)?);
        batch.insert(KEY_PROGRESS, serde_json::to_vec(&Progress::default())?);
        let store = Store {
            db,
            dir: dir.to_path_buf(),
            manifest: manifest.clone(),
            commits: Arc::default(),
            warning: None,
            state: Arc::default(),
        };
        store.apply(batch, 0)?;
        store.seal()?;
        Ok(store)
    }

    /// A handle on the opened `db`, checked against its commit record.
    fn checked(db: sled::Db, dir: &Path, manifest: Manifest) -> Result<Store> {
        let record = CommitRecord::read(dir)?;
        let mut store = Store {
            db,
            dir: dir.to_path_buf(),
            manifest,
            commits: Arc::new(AtomicU64::new(record.as_ref().map_or(0, |r| r.sequence))),
            warning: None,
            state: Arc::default(),
        };
        if let Some(record) = record {
            store.warning = store.integrity(&record)?.warning(dir);
        }
        if let Some(w) = &store.warning {
            // Said where every command opens a store, before any terminal UI starts.
            eprintln!("glint: warning: {w}");
        }
        Ok(store)
    }

    /// Compare the database with `record`; a database that holds the recorded progress must
    /// hold the recorded records too.
    fn integrity(&self, record: &CommitRecord) -> Result<Integrity> {
        let found = self.progress()?;
        let recorded = &record.progress;
        if found == *recorded {
            let digest = self.state_digest()?;
            if record.digest_value() != Some(digest) {
                bail!(StoreError::Damaged {
                    path: self.dir.clone(),
                    why: format!(
                        "its statistics, top lists or image records differ from its last \
                         commit (commit {}, {} images, digest {}; the database gives \
                         {digest:016x})",
                        record.sequence, recorded.images, record.digest
                    ),
                });
            }
            return Ok(Integrity::Intact);
        }
        let behind = found.images < recorded.images
            || found.next_image < recorded.next_image
            || (recorded.complete && !found.complete);
        if behind {
            return Ok(Integrity::RolledBack {
                recorded: recorded.clone(),
                found,
            });
        }
        // Ahead: killed after a commit was durable and before its record was written.
        Ok(Integrity::Intact)
    }

    /// The digest of the records the commit record covers, read from the database.
    pub(crate) fn state_digest(&self) -> Result<u64> {
        let mut digest = 0u64;
        for (kind, f, v) in self.state()?.iter() {
            digest = digest.wrapping_add(record_hash(&kind.key(f), v));
        }
        for name in DIGESTED {
            if name == PREFIX_STATS || name == PREFIX_TOP {
                continue;
            }
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

    /// Open an existing store, checking its schema version and its last commit.
    pub fn open(dir: &Path) -> Result<Store> {
        if !dir.exists() {
            bail!(StoreError::Missing {
                path: dir.to_path_buf()
            });
        }
        if dir.join(CREATING_MARKER).exists() {
            bail!(StoreError::NotAStore {
                path: dir.to_path_buf(),
                why: "its creation was interrupted; rerun the cache command to create it".into(),
            });
        }
        if !has_db_files(dir) {
            bail!(StoreError::NotAStore {
                path: dir.to_path_buf(),
                why: "no sled database files in it".into(),
            });
        }
        let db = open_db(dir)?;
        let Some(manifest) = Self::read_manifest(&db, dir)? else {
            bail!(StoreError::NotAStore {
                path: dir.to_path_buf(),
                why: "it has no manifest".into()
            });
        };
        Self::checked(db, dir, manifest)
    }

    fn read_manifest(db: &sled::Db, dir: &Path) -> Result<Option<Manifest>> {
        let ctx = || format!("cannot read the manifest of store {}", dir.display());
        let got = catch_sled(|| db.get(KEY_MANIFEST)).map_err(|()| damaged_db(dir))?;
        let Some(bytes) = got.with_context(ctx)? else {
            return Ok(None);
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).with_context(ctx)?;
        let found = value.get("schema_version").and_then(|v| v.as_u64());
        if found != Some(u64::from(SCHEMA_VERSION)) {
            bail!(StoreError::SchemaVersion {
                path: dir.to_path_buf(),
                found: found.unwrap_or(0) as u32,
                expected: SCHEMA_VERSION,
            });
        }
        Ok(Some(serde_json::from_value(value).with_context(ctx)?))
    }

    /// Open the store in `dir` if there is one (its manifest must match), else create it; the
    /// disk must have room to write before anything is opened for writing.
    pub fn open_or_create(dir: &Path, manifest: &Manifest) -> Result<Store> {
        manifest.validate()?;
        if dir.join(CREATING_MARKER).exists() || !has_db_files(dir) {
            return Self::create(dir, manifest);
        }
        ensure_room(dir, 0)?;
        let db = open_db(dir)?;
        match Self::read_manifest(&db, dir)? {
            Some(existing) => {
                manifest
                    .compatible_with(&existing)
                    .with_context(|| format!("cannot extend the store {}", dir.display()))?;
                Self::checked(db, dir, existing)
            }
            // A create killed before its first commit leaves an empty database: finish it.
            None if db.is_empty() => Self::init(db, dir, manifest),
            None => bail!(StoreError::NotAStore {
                path: dir.to_path_buf(),
                why: "it has records but no manifest".into(),
            }),
        }
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
        // Whatever the outcome, the records read before may no longer be the committed ones.
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let written = catch_sled(|| self.db.apply_batch(batch).and_then(|()| self.db.flush()))
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
        catch_sled(|| self.db.get(k))
            .map_err(|()| damaged_db(&self.dir))?
            .with_context(|| format!("cannot read {} from store {}", what(), self.dir.display()))
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
    pub(crate) fn state(&self) -> Result<Arc<StateRecords>> {
        let mut slot = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = &*slot {
            return Ok(state.clone());
        }
        let pointer = self.state_pointer()?;
        let state = replay(&self.dir, pointer, self.manifest.num_latents).map_err(|e| {
            anyhow::Error::new(StoreError::Damaged {
                path: self.dir.clone(),
                why: format!("{e:#}"),
            })
        })?;
        let state = Arc::new(state);
        *slot = Some(state.clone());
        Ok(state)
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

    /// The stored example of feature `f` on image `image`, if it is in the feature's top-N.
    pub fn example(&self, f: u32, image: u32) -> Result<Option<Example>> {
        // Evicted examples may linger in records until compaction: the list decides.
        let list = self.top_list(f)?;
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

    /// A named sled tree beside the cache records (its writes never join the cache's batches).
    pub(crate) fn tree(&self, name: &str) -> Result<sled::Tree> {
        self.db
            .open_tree(name)
            .with_context(|| format!("cannot open tree {name:?} of store {}", self.dir.display()))
    }

    /// Every raw key-value pair under `prefix`, for whole-store copies and comparisons.
    pub(crate) fn scan_raw(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>> + '_ {
        let mut iter = self.db.scan_prefix(prefix);
        let mut failed = false;
        std::iter::from_fn(move || {
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
        })
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
        self.db
            .insert(KEY_STATE, serde_json::to_vec(&pointer).unwrap())
            .unwrap();
        self.db.flush().unwrap();
        *self.state.lock().unwrap() = None;
    }

    /// The raw database, for tests that damage it.
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }
}

#[cfg(test)]
mod tests {
    use super::super::manifest::tests::manifest;
    use super::super::{RankRule, StoreError};
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
        s.db.insert(KEY_MANIFEST, serde_json::to_vec(&v).unwrap())
            .unwrap();
        s.db.flush().unwrap();
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
        let msg = format!("{:#}", Store::open(&dir).unwrap_err());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            msg.contains(&format!("glint process {}", child.id())) && msg.contains("then run"),
            "{msg}"
        );
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
