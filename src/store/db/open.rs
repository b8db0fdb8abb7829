//! Creating and opening a store: the schema and manifest checks, the commit record's
//! integrity check, and the fallback to reading through the process that holds it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::{Context, Result, bail};

use super::Store;
use crate::store::backend::Backend;
use crate::store::folder::{
    CREATING_MARKER, clear_interrupted_creation, damaged_db, has_db_files, open_db_settled,
    touch_durably,
};
use crate::store::guard::{catch_sled, ensure_room};
use crate::store::integrity::{CommitRecord, Integrity, sync_parent};
use crate::store::records::{KEY_MANIFEST, KEY_PROGRESS};
use crate::store::{Manifest, Progress, SCHEMA_VERSION, StoreError};

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
        let db = open_db_settled(dir)?;
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
            backend: Backend::local(db, dir),
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
            backend: Backend::local(db, dir),
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
        let db = match open_db_settled(dir) {
            Ok(db) => db,
            Err(e) => return Self::open_remote(dir, e),
        };
        let Some(manifest) = Self::read_manifest(&db, dir)? else {
            bail!(StoreError::NotAStore {
                path: dir.to_path_buf(),
                why: "it has no manifest".into()
            });
        };
        Self::checked(db, dir, manifest)
    }

    /// Open the store in `dir` through the process holding it, if one serves it; else the
    /// error `held` that opening it here gave.
    fn open_remote(dir: &Path, held: anyhow::Error) -> Result<Store> {
        let Some(client) = crate::store::remote::Client::connect(dir) else {
            return Err(held);
        };
        let ctx = || format!("cannot read the manifest of store {}", dir.display());
        let bytes = client.get("", KEY_MANIFEST).with_context(ctx)?;
        let Some(manifest) = bytes.map(|b| Self::parse_manifest(&b, dir)).transpose()? else {
            bail!(StoreError::NotAStore {
                path: dir.to_path_buf(),
                why: "it has no manifest".into()
            });
        };
        // The holder checked the store against its commit record when it opened it.
        Ok(Store {
            backend: Backend::remote(client),
            dir: dir.to_path_buf(),
            manifest,
            commits: Arc::default(),
            warning: None,
            state: Arc::default(),
        })
    }

    fn read_manifest(db: &sled::Db, dir: &Path) -> Result<Option<Manifest>> {
        let ctx = || format!("cannot read the manifest of store {}", dir.display());
        let got = catch_sled(|| db.get(KEY_MANIFEST)).map_err(|()| damaged_db(dir))?;
        let Some(bytes) = got.with_context(ctx)? else {
            return Ok(None);
        };
        Self::parse_manifest(&bytes, dir).map(Some)
    }

    /// A manifest record, its schema version checked first.
    fn parse_manifest(bytes: &[u8], dir: &Path) -> Result<Manifest> {
        let ctx = || format!("cannot read the manifest of store {}", dir.display());
        let value: serde_json::Value = serde_json::from_slice(bytes).with_context(ctx)?;
        let found = value.get("schema_version").and_then(|v| v.as_u64());
        if found != Some(u64::from(SCHEMA_VERSION)) {
            bail!(StoreError::SchemaVersion {
                path: dir.to_path_buf(),
                found: found.unwrap_or(0) as u32,
                expected: SCHEMA_VERSION,
            });
        }
        serde_json::from_value(value).with_context(ctx)
    }

    /// Open the store in `dir` if there is one (its manifest must match), else create it; the
    /// disk must have room to write before anything is opened for writing.
    pub fn open_or_create(dir: &Path, manifest: &Manifest) -> Result<Store> {
        manifest.validate()?;
        if dir.join(CREATING_MARKER).exists() || !has_db_files(dir) {
            return Self::create(dir, manifest);
        }
        ensure_room(dir, 0)?;
        let db = open_db_settled(dir)?;
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
}
