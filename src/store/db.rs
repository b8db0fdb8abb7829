//! The [`Store`] handle: creating, opening and reading a store folder.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::examples::{block_of, decode_list, example_key, find_example};
use super::records::{
    KEY_MANIFEST, KEY_PROGRESS, PREFIX_IMAGE, PREFIX_STATS, PREFIX_TOP, key, key_id,
};
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

/// Open sled at `dir`, turning its errors and panics (it panics on some corruptions) into errors
/// that name the folder and, when another process holds the database, that process.
fn open_db(dir: &Path) -> Result<sled::Db> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(SLED_CACHE_BYTES);
    match catch_unwind(AssertUnwindSafe(|| config.open())) {
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
        Err(_) => bail!(
            "the store database in {} is damaged (sled panicked while reading it); \
             delete the folder and rebuild the cache",
            dir.display()
        ),
    }
}

impl Store {
    /// Create a new store in `dir` (absent or empty) with `manifest`.
    pub fn create(dir: &Path, manifest: &Manifest) -> Result<Store> {
        manifest.validate()?;
        if dir.exists() {
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
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the store folder {}", dir.display()))?;
        let db = open_db(dir)?;
        Self::init(db, dir, manifest)
    }

    /// Write the manifest and empty progress of a fresh database.
    fn init(db: sled::Db, dir: &Path, manifest: &Manifest) -> Result<Store> {
        let mut batch = sled::Batch::default();
        batch.insert(KEY_MANIFEST, serde_json::to_vec(manifest)?);
        batch.insert(KEY_PROGRESS, serde_json::to_vec(&Progress::default())?);
        let store = Store {
            db,
            dir: dir.to_path_buf(),
            manifest: manifest.clone(),
        };
        store.apply(batch)?;
        Ok(store)
    }

    /// Open an existing store, checking its schema version.
    pub fn open(dir: &Path) -> Result<Store> {
        if !dir.exists() {
            bail!(StoreError::Missing {
                path: dir.to_path_buf()
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
        Ok(Store {
            db,
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    fn read_manifest(db: &sled::Db, dir: &Path) -> Result<Option<Manifest>> {
        let ctx = || format!("cannot read the manifest of store {}", dir.display());
        let Some(bytes) = db.get(KEY_MANIFEST).with_context(ctx)? else {
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

    /// Open the store in `dir` if there is one (its manifest must match), else create it.
    pub fn open_or_create(dir: &Path, manifest: &Manifest) -> Result<Store> {
        manifest.validate()?;
        if !has_db_files(dir) {
            return Self::create(dir, manifest);
        }
        let db = open_db(dir)?;
        match Self::read_manifest(&db, dir)? {
            Some(existing) => {
                manifest
                    .compatible_with(&existing)
                    .with_context(|| format!("cannot extend the store {}", dir.display()))?;
                Ok(Store {
                    db,
                    dir: dir.to_path_buf(),
                    manifest: existing,
                })
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

    /// Apply one batch atomically and make it durable.
    pub(crate) fn apply(&self, batch: sled::Batch) -> Result<()> {
        let ctx = || format!("cannot write to the store {}", self.dir.display());
        self.db.apply_batch(batch).with_context(ctx)?;
        self.db.flush().with_context(ctx)?;
        Ok(())
    }

    fn get(&self, k: &[u8], what: impl Fn() -> String) -> Result<Option<sled::IVec>> {
        self.db
            .get(k)
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
        match self.get(&key(PREFIX_STATS, &[f]), what)? {
            None => Ok(None),
            Some(b) => self.damaged(FeatureStats::decode(&b), what).map(Some),
        }
    }

    /// Every feature that fired, with its statistics, by feature index.
    pub fn features(&self) -> impl Iterator<Item = Result<(u32, FeatureStats)>> + '_ {
        self.db.scan_prefix(PREFIX_STATS).map(move |kv| {
            let (k, v) = kv.with_context(|| format!("cannot scan store {}", self.dir.display()))?;
            let f = self.damaged(key_id(PREFIX_STATS, &k), || "a statistics key".into())?;
            let stats = self.damaged(FeatureStats::decode(&v), || {
                format!("the statistics of feature {f}")
            })?;
            Ok((f, stats))
        })
    }

    /// The raw value under `k`, for records read whole (counts).
    pub(crate) fn raw(&self, k: &[u8]) -> Result<Option<sled::IVec>> {
        self.get(k, || format!("record {k:?}"))
    }

    /// The (score, image) top-N list of feature `f`, best first; empty if it never fired.
    pub fn top_list(&self, f: u32) -> Result<Vec<(f32, u32)>> {
        let what = || format!("the top list of feature {f}");
        match self.get(&key(PREFIX_TOP, &[f]), what)? {
            None => Ok(Vec::new()),
            Some(b) => self.damaged(decode_list(&b), what),
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
        self.db.scan_prefix(PREFIX_IMAGE).map(move |kv| {
            let (k, v) = kv.with_context(|| format!("cannot scan store {}", self.dir.display()))?;
            let what = || format!("image record {k:?}");
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
        self.db
            .scan_prefix(prefix)
            .map(move |kv| kv.with_context(|| format!("cannot scan store {}", self.dir.display())))
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
        s.db.insert(key(PREFIX_STATS, &[5]), &b"short"[..]).unwrap();
        s.db.flush().unwrap();
        let msg = format!("{:#}", s.feature_stats(5).unwrap_err());
        assert!(
            msg.contains("feature 5") && msg.contains(&dir.display().to_string()),
            "{msg}"
        );
        assert!(s.features().next().unwrap().is_err());
        s.db.insert(key(PREFIX_TOP, &[6]), &[1u8, 0, 0, 0, 0, 0][..])
            .unwrap();
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
