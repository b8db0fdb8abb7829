//! Content hashes of large files (model and SAE weights): xxh3-64 of every byte, so a file
//! changed in place under the same path is told apart, remembered beside the file so an
//! unchanged multi-GB checkpoint is not read again on every run.
//!
//! The remembered hash is keyed by the file's size, modification time and (on Unix) change
//! time and inode: a write updates the change time even when the modification time is set back.

use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64;

/// Bytes read per call while hashing.
const CHUNK: usize = 8 << 20;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    modified_ns: u128,
    changed: (i64, i64),
    inode: u64,
}

/// A remembered hash: the stamp of the file it was computed on, and the hash.
#[derive(Debug, Serialize, Deserialize)]
struct Remembered {
    stamp: Stamp,
    xxh3: String,
}

fn stamp(path: &Path) -> Result<Stamp> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let (changed, inode) = {
        use std::os::unix::fs::MetadataExt;
        ((meta.ctime(), meta.ctime_nsec()), meta.ino())
    };
    #[cfg(not(unix))]
    let (changed, inode) = ((0, 0), 0);
    Ok(Stamp {
        size: meta.len(),
        modified_ns,
        changed,
        inode,
    })
}

/// Where the hash of `path` is remembered: `.<name>.glint-hash` in its folder.
fn remembered_at(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy();
    Some(path.with_file_name(format!(".{name}.glint-hash")))
}

/// xxh3-64 of the bytes of `path`, as 16 hex digits.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut hasher = XxHash3_64::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

/// [`hash_file`], taken from beside the file when it is unchanged since it was remembered.
/// A folder that cannot be written to only costs the reading, every time.
pub fn content_hash(path: &Path) -> Result<String> {
    // Follow a link (the Hugging Face cache links snapshots to blobs): the blob is what changes.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let before = stamp(&path)?;
    let at = remembered_at(&path);
    if let Some(at) = &at
        && let Ok(text) = std::fs::read_to_string(at)
        && let Ok(r) = serde_json::from_str::<Remembered>(&text)
        && r.stamp == before
    {
        return Ok(r.xxh3);
    }
    let xxh3 = hash_file(&path)?;
    // Only a file that did not change while it was read is remembered.
    if let Some(at) = at
        && stamp(&path)? == before
        && let Ok(text) = serde_json::to_string(&Remembered {
            stamp: before,
            xxh3: xxh3.clone(),
        })
    {
        let tmp = at.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &at);
        }
    }
    Ok(xxh3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn a_change_in_place_changes_the_hash_even_with_size_and_mtime_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        std::fs::write(&path, vec![7u8; 3 * CHUNK + 5]).unwrap();
        let first = content_hash(&path).unwrap();
        assert!(remembered_at(&path).unwrap().is_file());
        assert_eq!(content_hash(&path).unwrap(), first, "remembered");
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(2 * CHUNK as u64 + 1)).unwrap();
        f.write_all(&[8]).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let second = content_hash(&path).unwrap();
        assert_ne!(second, first);
        assert_eq!(second, hash_file(&path).unwrap());
    }
}
