//! The commit record: an fsync'd file beside the database that names the store's last commit,
//! so a database that lost or damaged committed records is detected on open instead of served.
//!
//! The record holds the commit's sequence number, its [`Progress`] and a digest of the store's
//! index records (progress, example counts, image records, statistics, top lists and range
//! samples; the bulk
//! example records are checked when read, against the lists) and skipped images. The digest is a wrapping sum of
//! one hash per record, so a commit updates it from the records it overwrites and writes alone.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64;

use super::Progress;
use super::records::{KEY_COUNTS, KEY_PROGRESS, PREFIX_IMAGE, PREFIX_SKIPPED};

/// File name of the commit record in a store folder.
pub const COMMIT_RECORD_FILE: &str = "glint-commit.json";

/// Key prefixes (ending in `/`) and whole keys of the database records the digest covers; it
/// also covers every record of the state log, under its database-style key.
pub(crate) const DIGESTED: [&[u8]; 4] = [KEY_PROGRESS, KEY_COUNTS, PREFIX_IMAGE, PREFIX_SKIPPED];

/// The hash one record adds to the digest (0 for an absent record).
pub(crate) fn record_hash(key: &[u8], value: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = XxHash3_64::with_seed(0x0067_6c69_6e74);
    h.write(&(key.len() as u64).to_le_bytes());
    h.write(key);
    h.write(value);
    // Never 0, so "absent" and "present" always differ.
    h.finish() | 1
}

/// Fsync the folder holding `path`, so a creation, rename or removal in it survives a crash.
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// What a store's last durable commit left, as written beside its database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// Commits written to the store since it was created (this one included).
    pub sequence: u64,
    /// Progress the commit left.
    pub progress: Progress,
    /// Digest of the index records after the commit, 16 hex digits.
    pub digest: String,
}

impl CommitRecord {
    /// The record for `progress` and digest `digest` after `sequence` commits.
    pub fn new(sequence: u64, progress: Progress, digest: u64) -> Self {
        Self {
            sequence,
            progress,
            digest: format!("{digest:016x}"),
        }
    }

    /// Path of the record in store folder `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(COMMIT_RECORD_FILE)
    }

    /// The record of the store in `dir`, if it has one.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_str(&text).map(Some).with_context(|| {
            format!(
                "the commit record {} is damaged; delete it to open the store unchecked",
                path.display()
            )
        })
    }

    /// Write the record durably: a temporary file, fsync, rename over the old one, fsync the
    /// folder. A kill leaves the old record or the new one, never a torn one.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{COMMIT_RECORD_FILE}.tmp"));
        let ctx = || format!("cannot write the commit record {}", path.display());
        let mut f = std::fs::File::create(&tmp).with_context(ctx)?;
        f.write_all(&serde_json::to_vec_pretty(self)?)
            .with_context(ctx)?;
        f.sync_all().with_context(ctx)?;
        drop(f);
        std::fs::rename(&tmp, &path).with_context(ctx)?;
        sync_parent(&path).with_context(ctx)
    }

    /// The digest as a number.
    pub fn digest_value(&self) -> Option<u64> {
        u64::from_str_radix(&self.digest, 16).ok()
    }
}

/// How a store's database compares with its commit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// The database holds exactly the recorded commit, or a later one whose record a kill
    /// prevented; or the store predates commit records.
    Intact,
    /// The database lost commits after the recorded one's predecessor: it holds an older,
    /// consistent state (a truncated or zeroed tail). A rerun of the cache job recomputes it.
    RolledBack {
        /// What the record says was committed.
        recorded: Progress,
        /// What the database holds.
        found: Progress,
    },
}

impl Integrity {
    /// A one-line warning for anything but [`Integrity::Intact`].
    pub fn warning(&self, dir: &Path) -> Option<String> {
        match self {
            Integrity::Intact => None,
            Integrity::RolledBack { recorded, found } => Some(format!(
                "store {} lost committed work on disk: its database holds {} images (up to \
                 image {}) but its last commit held {} (up to image {}); the store is served as \
                 it is, and rerunning the cache command recomputes the lost images",
                dir.display(),
                found.images,
                found.next_image,
                recorded.images,
                recorded.next_image,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    use super::super::manifest::tests::manifest;
    use super::super::state_log::Kind;
    use super::super::testutil::{build, dump, feed};
    use super::super::{Aggregator, RankRule, SkippedImage, Store, StoreError};
    use super::*;
    use crate::util::rng::SeededRng;

    /// The first committed record of `kind`: its feature and value.
    fn first_record(store: &Store, kind: Kind) -> (u32, Vec<u8>) {
        let state = store.state().unwrap();
        let (_, f, v) = state.of(kind).next().unwrap();
        (f, v.to_vec())
    }

    fn is_damaged(e: &anyhow::Error) -> bool {
        e.chain()
            .any(|c| matches!(c.downcast_ref(), Some(StoreError::Damaged { .. })))
    }

    /// Copy the files of a closed store folder.
    fn copy_folder(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_folder(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn every_commit_records_the_digest_of_what_it_left() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let m = manifest(40, 4, RankRule::Max);
        let store = Store::create(&dir, &m).unwrap();
        let mut agg = Aggregator::from_manifest(&m).unwrap();
        let idx: Vec<u32> = (0..30).collect();
        let mut sequence = CommitRecord::read(&dir).unwrap().unwrap().sequence;
        for chunk in idx.chunks(6) {
            feed(&mut agg, &store, 2, chunk, 6);
            let record = CommitRecord::read(&dir).unwrap().unwrap();
            assert_eq!(record.sequence, sequence + 1);
            sequence = record.sequence;
            assert_eq!(record.progress, store.progress().unwrap());
            assert_eq!(record.digest_value(), Some(store.state_digest().unwrap()));
        }
        agg.finish(&store).unwrap();
        let record = CommitRecord::read(&dir).unwrap().unwrap();
        assert!(record.progress.complete);
        assert_eq!(record.digest_value(), Some(store.state_digest().unwrap()));
        drop(store);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.warning(), None);
    }

    #[test]
    fn a_database_that_lost_commits_is_reported_and_a_rerun_recomputes_them() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifest(40, 4, RankRule::Max);
        let idx: Vec<u32> = (0..40).collect();
        let whole = build(&tmp.path().join("whole"), &m, 4, &idx, 5);
        let (dir, old) = (tmp.path().join("s"), tmp.path().join("old"));
        {
            let store = Store::create(&dir, &m).unwrap();
            let mut agg = Aggregator::from_manifest(&m).unwrap();
            feed(&mut agg, &store, 4, &idx[..10], 5);
            drop((agg, store));
            copy_folder(&dir, &old);
            let store = Store::open(&dir).unwrap();
            let mut agg = Aggregator::resume(&store).unwrap();
            feed(&mut agg, &store, 4, &idx[10..25], 5);
        }
        // The database's files go back to the older state; the commit record stays new.
        for e in std::fs::read_dir(&old).unwrap() {
            let name = e.unwrap().file_name();
            if !name.to_string_lossy().starts_with(COMMIT_RECORD_FILE) {
                let target = dir.join(&name);
                let _ = std::fs::remove_dir_all(&target).or_else(|_| std::fs::remove_file(&target));
            }
        }
        for e in std::fs::read_dir(&old).unwrap() {
            let e = e.unwrap();
            if !e
                .file_name()
                .to_string_lossy()
                .starts_with(COMMIT_RECORD_FILE)
            {
                let to = dir.join(e.file_name());
                if e.file_type().unwrap().is_dir() {
                    copy_folder(&e.path(), &to);
                } else {
                    std::fs::copy(e.path(), to).unwrap();
                }
            }
        }
        let store = Store::open(&dir).unwrap();
        let warning = store
            .warning()
            .expect("a rolled-back store is reported")
            .to_string();
        assert!(
            warning.contains("holds 10 images")
                && warning.contains("held 25")
                && warning.contains(&dir.display().to_string())
                && warning.contains("rerunning the cache command"),
            "{warning}"
        );
        drop(store);
        let store = Store::open_or_create(&dir, &m).unwrap();
        let mut agg = Aggregator::resume(&store).unwrap();
        assert_eq!(agg.progress().next_image, 10);
        feed(&mut agg, &store, 4, &idx[10..], 5);
        agg.finish(&store).unwrap();
        assert!(
            dump(&whole) == dump(&store),
            "the rerun did not recompute the lost images"
        );
        drop(agg);
        drop(store);
        // sled's flusher thread can hold the dropped database's file lock a moment longer.
        let reopened = (0..50)
            .find_map(|_| {
                Store::open(&dir).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                })
            })
            .expect("the store reopens once its last handle is gone");
        assert_eq!(reopened.warning(), None);
    }

    #[test]
    fn changed_records_are_refused_naming_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifest(40, 4, RankRule::Max);
        let idx: Vec<u32> = (0..20).collect();
        type Edit = (&'static str, fn(&Store));
        let edits: [Edit; 3] = [
            ("a statistics record with a flipped byte", |store| {
                let (f, mut v) = first_record(store, Kind::Stats);
                v[3] ^= 0x10;
                store.tamper_state(Kind::Stats, f, &v);
            }),
            ("a top list shortened", |store| {
                let (f, v) = first_record(store, Kind::Top);
                store.tamper_state(Kind::Top, f, &v[..v.len() - 8]);
            }),
            ("an image record removed", |store| {
                let db = store.db();
                let (k, _) = db.scan_prefix(PREFIX_IMAGE).next().unwrap().unwrap();
                db.remove(k).unwrap();
                db.flush().unwrap();
            }),
        ];
        for (j, (what, edit)) in edits.iter().enumerate() {
            let dir = tmp.path().join(format!("s{j}"));
            let store = build(&dir, &m, 6, &idx, 6);
            edit(&store);
            drop(store);
            for err in [
                Store::open(&dir).unwrap_err(),
                Store::open_or_create(&dir, &m).unwrap_err(),
            ] {
                let msg = format!("{err:#}");
                assert!(
                    is_damaged(&err) && msg.contains(&dir.display().to_string()),
                    "{what}: {msg}"
                );
            }
        }
    }

    #[test]
    fn an_interrupted_creation_is_cleared_and_created_again() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifest(8, 2, RankRule::Max);
        let dir = tmp.path().join("s");
        // What a kill after sled made its first files and before the database leaves.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("glint-creating"), b"").unwrap();
        drop(sled::open(&dir).unwrap());
        std::fs::remove_file(dir.join("db")).unwrap();
        let msg = format!("{:#}", Store::open(&dir).unwrap_err());
        assert!(msg.contains("creation was interrupted"), "{msg}");
        let store = Store::open_or_create(&dir, &m).unwrap();
        assert_eq!(store.manifest(), &m);
        assert!(!dir.join("glint-creating").exists());
        drop(store);
        Store::open(&dir).unwrap();
        // Anything glint did not make is never deleted.
        let other = tmp.path().join("t");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("glint-creating"), b"").unwrap();
        std::fs::write(other.join("notes.txt"), b"mine").unwrap();
        let msg = format!("{:#}", Store::create(&other, &m).unwrap_err());
        assert!(msg.contains("notes.txt"), "{msg}");
        assert!(other.join("notes.txt").exists());
    }

    /// Child process of `creation_survives_a_kill_at_any_moment`: creates stores until killed.
    #[test]
    #[ignore = "run as a child process by creation_survives_a_kill_at_any_moment"]
    fn create_child() {
        let Ok(dir) = std::env::var("GLINT_STORE_CREATE_DIR") else {
            return;
        };
        let m = manifest(8, 2, RankRule::Max);
        for n in 0.. {
            drop(Store::create(&Path::new(&dir).join(format!("s{n}")), &m).unwrap());
        }
    }

    #[test]
    fn creation_survives_a_kill_at_any_moment() {
        let tmp = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut rng = SeededRng::new(3);
        let m = manifest(8, 2, RankRule::Max);
        for round in 0..6 {
            let dir = tmp.path().join(format!("r{round}"));
            let mut child = Command::new(&exe)
                .args([
                    "store::integrity::tests::create_child",
                    "--exact",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env("GLINT_STORE_CREATE_DIR", &dir)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(60 + rng.below(240)));
            child.kill().unwrap();
            child.wait().unwrap();
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let path = e.unwrap().path();
                let store = Store::open_or_create(&path, &m)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                assert_eq!(store.progress().unwrap(), Progress::default());
            }
        }
    }

    #[test]
    fn skipped_images_are_committed_and_resumed_past() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let m = manifest(40, 4, RankRule::Max);
        let store = Store::create(&dir, &m).unwrap();
        let mut agg = Aggregator::from_manifest(&m).unwrap();
        feed(&mut agg, &store, 1, &[0, 1], 10);
        let skip = |index| SkippedImage {
            index,
            path: format!("images/{index}.png"),
            reason: "not an image".into(),
        };
        agg.skip_image(skip(2)).unwrap();
        assert!(agg.skip_image(skip(1)).is_err(), "skips keep index order");
        agg.commit(&store).unwrap();
        drop((agg, store));
        let store = Store::open(&dir).unwrap();
        let mut agg = Aggregator::resume(&store).unwrap();
        assert_eq!(agg.progress().next_image, 3);
        assert_eq!(agg.progress().images, 2);
        agg.skip_image(skip(5)).unwrap();
        agg.finish(&store).unwrap();
        let skipped: Vec<u32> = store.skipped().map(|s| s.unwrap().index).collect();
        assert_eq!(skipped, vec![2, 5]);
        drop(store);
        Store::open(&dir).unwrap();
    }
}
