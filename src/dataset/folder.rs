//! Listing the images of a dataset folder: recursive, in sorted order, each directory once.
//!
//! Directory symlinks are followed (a dataset may link in other folders), but a directory
//! reached a second time — a `loop -> .` link, or two links to one folder — is not listed
//! again: it would list the same files under new names, or never end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

/// A path under a dataset folder that was not listed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unlisted {
    /// Path relative to the dataset root.
    pub path: String,
    /// Why it was left out.
    pub reason: String,
}

/// What identifies a directory however it is reached: device and inode where there are such.
#[cfg(unix)]
fn dir_key(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn dir_key(path: &Path) -> std::io::Result<PathBuf> {
    std::fs::canonicalize(path)
}

/// Whether an image file at `rel` (relative to the dataset root) is a segmentation mask rather
/// than a picture: it sits in a `masks` or `mask` folder, or its name ends in `_mask`, `-mask`
/// or `.mask`.
pub fn is_mask(rel: &Path) -> bool {
    let in_mask_folder = rel.parent().is_some_and(|dir| {
        dir.components().any(|c| {
            let name = c.as_os_str().to_string_lossy().to_ascii_lowercase();
            name == "masks" || name == "mask"
        })
    });
    let stem = rel
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    in_mask_folder
        || ["_mask", "-mask", ".mask"]
            .iter()
            .any(|m| stem.ends_with(m))
}

fn rel_of(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let s = rel.to_string_lossy().replace('\\', "/");
    if s.is_empty() { ".".into() } else { s }
}

/// The image files under `root` (relative paths, sorted) and the directories left out.
pub fn scan(root: &Path, is_image: impl Fn(&Path) -> bool) -> Result<(Vec<String>, Vec<Unlisted>)> {
    let mut rels = Vec::new();
    let mut unlisted = Vec::new();
    let mut seen = HashMap::new();
    let key = dir_key(root).with_context(|| format!("{}: cannot list", root.display()))?;
    seen.insert(key, ".".to_string());
    // Depth first in sorted order, so which of two paths to one directory is kept never
    // depends on the order the file system lists entries in.
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("{}: cannot list", dir.display()))?;
        // Real folders before links to them, so a folder keeps its own name.
        entries.sort_by_key(|p| (p.is_symlink(), p.clone()));
        let mut subdirs = Vec::new();
        for path in entries {
            if path.is_dir() {
                let rel = rel_of(root, &path);
                match dir_key(&path) {
                    Ok(key) => match seen.get(&key) {
                        Some(first) => unlisted.push(Unlisted {
                            path: rel,
                            reason: format!(
                                "the folder {first} again (a directory link); listed once"
                            ),
                        }),
                        None => {
                            seen.insert(key, rel);
                            subdirs.push(path);
                        }
                    },
                    Err(e) => unlisted.push(Unlisted {
                        path: rel,
                        reason: format!("cannot read the folder: {e}"),
                    }),
                }
            } else if is_image(&path) {
                rels.push(rel_of(root, &path));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    rels.sort();
    Ok((rels, unlisted))
}
