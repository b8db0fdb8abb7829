//! The store folder on disk: sled's files and lock, the file naming the process holding it,
//! and the marker of a creation not yet finished.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::StoreError;
use super::guard::catch_sled;
use super::integrity::{COMMIT_RECORD_FILE, sync_parent};
use super::state_log::is_log_name;

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

/// Whether `dir` holds sled's files.
pub(in crate::store) fn has_db_files(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// File beside the database naming the process that has it open, for the lock error.
const HOLDER_FILE: &str = "glint.pid";

/// File present while a store is being created: a folder holding it is an interrupted creation,
/// which the next creation clears and starts again.
pub(in crate::store) const CREATING_MARKER: &str = "glint-creating";

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
pub(in crate::store) fn touch_durably(path: &Path) -> std::io::Result<()> {
    std::fs::File::create(path)?.sync_all()?;
    sync_parent(path)
}

/// Remove what an interrupted creation left in `dir` (it holds [`CREATING_MARKER`]).
pub(in crate::store) fn clear_interrupted_creation(dir: &Path) -> Result<()> {
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
                    "it is open in glint process {pid}, and writing a cache needs the store to \
                     itself; wait for that process to end or stop it, then run this again (the \
                     workbench, explain, score and export open beside a running job)"
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

/// How long [`open_db_settled`] waits for this process's own dropped handles to let go.
const SETTLE: Duration = Duration::from_secs(3);

/// [`open_db`], waiting out a lock this process itself still holds with nothing serving it:
/// sled lets go of its files from background threads a moment after the last handle drops,
/// so reopening a store just closed (a merge, a resumed job) would otherwise fail at random.
pub(in crate::store) fn open_db_settled(dir: &Path) -> Result<sled::Db> {
    let deadline = Instant::now() + SETTLE;
    loop {
        match open_db(dir) {
            Err(_) if held_by_this_process(dir) && Instant::now() < deadline => {
                if super::remote::Client::connect(dir).is_some() {
                    return open_db(dir);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Whether the holder file names this process.
fn held_by_this_process(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(HOLDER_FILE))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        == Some(std::process::id())
}

/// The error for a database sled cannot read (it panicked).
pub(in crate::store) fn damaged_db(dir: &Path) -> anyhow::Error {
    anyhow::Error::new(StoreError::Damaged {
        path: dir.to_path_buf(),
        why: "its database cannot be read (sled failed on its files)".into(),
    })
}
