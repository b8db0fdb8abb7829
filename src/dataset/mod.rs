//! Image datasets: a folder of images (recursive), a JSONL manifest, or parquet shards with an
//! image column (extracted to files once, see [`parquet`]), in a stable order.
//!
//! The position of an image in the final list is its index everywhere (store, explanations,
//! exports), as the row index is in the original system; so the order is fixed by the input
//! and the optional seeded shuffle, never by the file system.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::util::hash::Fingerprint;
use crate::util::rng::SeededRng;

mod folder;
mod parquet;

pub use folder::Unlisted;

/// File extensions read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"];

/// One image of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetItem {
    /// Index in the dataset (after shuffle and limit).
    pub index: u32,
    /// Identifier (manifest `id`, else the relative path).
    pub id: String,
    /// Path relative to the dataset root, as given.
    pub rel: String,
    /// Ground-truth labels, when the manifest has them.
    pub labels: Vec<String>,
}

/// How to read a dataset.
#[derive(Debug, Clone, Default)]
pub struct DatasetOptions {
    /// Keep only the first N images (after shuffling).
    pub limit: Option<usize>,
    /// Shuffle with this seed before limiting.
    pub shuffle_seed: Option<u64>,
    /// Parquet datasets only: read the files of this split (`NAME-*.parquet`), not all.
    pub split: Option<String>,
}

/// An ordered list of images under a root folder.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Folder that relative paths start from.
    pub root: PathBuf,
    /// What the user named.
    pub source: String,
    /// The images, `items[i].index == i`.
    pub items: Vec<DatasetItem>,
    /// Paths under a dataset folder that were not listed, with the reason.
    pub unlisted: Vec<Unlisted>,
    options_key: String,
}

impl Dataset {
    /// Open a JSONL manifest, a folder of images, or a parquet file or folder of them.
    pub fn open(spec: &Path, opts: &DatasetOptions) -> Result<Self> {
        Self::open_in(spec, opts, None)
    }

    /// [`Dataset::open`], extracting parquet images under `parquet_cache` when given.
    fn open_in(spec: &Path, opts: &DatasetOptions, parquet_cache: Option<&Path>) -> Result<Self> {
        let mut from_parquet = None;
        let mut unlisted = Vec::new();
        let (root, mut items) = if parquet::is_parquet(spec) {
            let base = match parquet_cache {
                Some(base) => base.to_path_buf(),
                None => parquet::cache_base()?,
            };
            let (source, items) = parquet::ParquetSource::open(spec, opts.split.as_deref(), &base)?;
            let root = source.root().to_path_buf();
            from_parquet = Some(source);
            (root, items)
        } else if let Some(split) = &opts.split {
            bail!(
                "--split {split}: {} is not a parquet dataset; only parquet datasets have splits",
                spec.display()
            );
        } else if spec.is_dir() && spec.join(FOLDER_MANIFEST).is_file() {
            // The manifest says which files are the images (and names them); the rest of the
            // folder (masks, captions) is not data to cache.
            (spec.to_path_buf(), read_jsonl(&spec.join(FOLDER_MANIFEST))?)
        } else if spec.is_dir() {
            let (items, left_out) = scan_folder(spec)?;
            unlisted = left_out;
            (spec.to_path_buf(), items)
        } else if spec
            .extension()
            .is_some_and(|e| e == "jsonl" || e == "json")
        {
            (manifest_folder(spec), read_jsonl(spec)?)
        } else if !spec.exists() {
            bail!(
                "{}: no such dataset (expected a folder of images, a .jsonl manifest or .parquet files)",
                spec.display()
            );
        } else {
            bail!(
                "{}: expected a folder of images, a .jsonl manifest or .parquet files",
                spec.display()
            );
        };
        if let Some(seed) = opts.shuffle_seed {
            SeededRng::new(seed).shuffle(&mut items);
        }
        if let Some(limit) = opts.limit {
            items.truncate(limit);
        }
        if items.is_empty() {
            bail!("{}: the dataset has no images", spec.display());
        }
        if items.len() > u32::MAX as usize {
            bail!("{}: more than 2^32 images", spec.display());
        }
        if let Some(source) = &from_parquet {
            source.extract(&mut items)?;
        }
        for (i, item) in items.iter_mut().enumerate() {
            item.index = i as u32;
        }
        let mut options_key = format!("{:?}/{:?}", opts.shuffle_seed, opts.limit);
        if let Some(split) = &opts.split {
            options_key += &format!("/split={split}");
        }
        Ok(Self {
            root,
            source: spec.display().to_string(),
            items,
            unlisted,
            options_key,
        })
    }

    /// Absolute (or root-relative) path of an item.
    pub fn path(&self, item: &DatasetItem) -> PathBuf {
        self.root.join(&item.rel)
    }

    /// Fingerprint of the ordered image list and the options that produced it.
    pub fn fingerprint(&self) -> String {
        let mut fp = Fingerprint::new();
        fp.field(&self.options_key);
        for item in &self.items {
            fp.field(&item.id).field(&item.rel);
        }
        fp.hex()
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Folder that the images of the parquet dataset `source` were extracted to, or `None` when
/// `source` is no parquet dataset (or is not found here). Readers of a store use it as the root
/// of the image paths that a parquet dataset recorded.
pub fn parquet_image_root(source: &Path) -> Option<PathBuf> {
    if !parquet::is_parquet(source) {
        return None;
    }
    parquet::extraction_root(source, &parquet::cache_base().ok()?).ok()
}

/// Folder that a store's image paths are relative to, from the dataset its manifest records:
/// a parquet dataset's extraction folder, a manifest file's folder, or the image folder itself.
pub fn store_image_root(dataset: &str) -> PathBuf {
    let d = PathBuf::from(dataset);
    if let Some(root) = parquet_image_root(&d) {
        return root;
    }
    if d.extension().is_some_and(|e| e == "jsonl") {
        d.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        d
    }
}

/// Folder that the paths of the manifest file `manifest` are relative to: its parent, or `.` for
/// a bare file name (whose `parent()` is the empty path, which names no folder).
pub fn manifest_folder(manifest: &Path) -> PathBuf {
    match manifest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether `path` names an image file glint reads (by its extension).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// A folder holding this file is read through it, as if the file had been named.
pub const FOLDER_MANIFEST: &str = "manifest.jsonl";

fn scan_folder(root: &Path) -> Result<(Vec<DatasetItem>, Vec<Unlisted>)> {
    let (rels, unlisted) = folder::scan(root, |p| {
        is_image(p) && !folder::is_mask(p.strip_prefix(root).unwrap_or(p))
    })?;
    let items = rels
        .into_iter()
        .map(|rel| DatasetItem {
            index: 0,
            id: rel.clone(),
            rel,
            labels: Vec::new(),
        })
        .collect();
    Ok((items, unlisted))
}

fn read_jsonl(path: &Path) -> Result<Vec<DatasetItem>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the manifest", path.display()))?;
    let mut items = Vec::new();
    // Line of each id: two images under one id would be one image to every reader of a store.
    let mut lines = std::collections::HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        let rel = v["path"]
            .as_str()
            .or_else(|| v["image"].as_str())
            .with_context(|| format!("{}: no \"path\" field", at()))?
            .to_string();
        let id = v["id"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| rel.clone());
        if let Some(first) = lines.insert(id.clone(), n + 1) {
            bail!(
                "{}: id {id:?} is already the id of line {first}; give every image its own id",
                at()
            );
        }
        let labels = v["labels"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        items.push(DatasetItem {
            index: 0,
            id,
            rel,
            labels,
        });
    }
    Ok(items)
}

/// Which part of a dataset this process handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Parse `i/n`.
    pub fn parse(text: &str) -> Result<Self> {
        let (i, n) = text
            .split_once('/')
            .with_context(|| format!("--shard {text}: expected i/n, e.g. 0/4"))?;
        let index = i
            .trim()
            .parse()
            .with_context(|| format!("--shard {text}: bad index"))?;
        let count = n
            .trim()
            .parse()
            .with_context(|| format!("--shard {text}: bad count"))?;
        Self::new(index, count).with_context(|| format!("--shard {text}"))
    }

    fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            bail!("shard {index} of {count} does not exist (need 0 <= i < n)");
        }
        Ok(Self { index, count })
    }

    /// The launcher's rank and world size: torchrun (`RANK`/`WORLD_SIZE`), Slurm arrays, Slurm
    /// tasks, Open MPI, PMI — in that order — or `None` when no launcher set them.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let pairs = [
            ("RANK", "WORLD_SIZE"),
            ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
            ("SLURM_PROCID", "SLURM_NTASKS"),
            ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
            ("PMI_RANK", "PMI_SIZE"),
        ];
        for (r, w) in pairs {
            if let (Some(rank), Some(world)) = (get(r), get(w)) {
                let index = rank
                    .trim()
                    .parse()
                    .with_context(|| format!("{r}={rank}: not a number"))?;
                let count = world
                    .trim()
                    .parse()
                    .with_context(|| format!("{w}={world}: not a number"))?;
                return Self::new(index, count)
                    .map(Some)
                    .with_context(|| format!("{r}/{w}"));
            }
        }
        Ok(None)
    }

    /// Whether this shard handles dataset index `i` (strided, so shards stay balanced).
    pub fn owns(&self, i: u32) -> bool {
        i as usize % self.count == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_and_launcher_env() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        assert!(Shard::parse("4/4").is_err());
        assert!(Shard::parse("x").is_err());
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let torch = Shard::from_env(env(&[("RANK", "1"), ("WORLD_SIZE", "2")])).unwrap();
        assert_eq!(torch, Some(Shard { index: 1, count: 2 }));
        let slurm = Shard::from_env(env(&[("SLURM_PROCID", "3"), ("SLURM_NTASKS", "8")])).unwrap();
        assert_eq!(slurm, Some(Shard { index: 3, count: 8 }));
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
        assert!(Shard::from_env(env(&[("RANK", "2"), ("WORLD_SIZE", "2")])).is_err());
    }

    #[test]
    fn folders_are_scanned_in_sorted_order_and_shuffle_is_seeded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for name in ["b.png", "a.jpg", "sub/c.PNG", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let ds = Dataset::open(dir.path(), &DatasetOptions::default()).unwrap();
        let rels: Vec<&str> = ds.items.iter().map(|i| i.rel.as_str()).collect();
        assert_eq!(rels, ["a.jpg", "b.png", "sub/c.PNG"]);
        let opts = DatasetOptions {
            limit: Some(2),
            shuffle_seed: Some(5),
            split: None,
        };
        let a = Dataset::open(dir.path(), &opts).unwrap();
        let b = Dataset::open(dir.path(), &opts).unwrap();
        assert_eq!(a.items, b.items);
        assert_eq!(a.len(), 2);
        assert_ne!(a.fingerprint(), ds.fingerprint());
    }

    #[cfg(unix)]
    #[test]
    fn directory_links_are_followed_once_and_loops_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.png"), b"x").unwrap();
        std::fs::write(root.join("sub/b.png"), b"x").unwrap();
        let link =
            |target: &str, at: &str| std::os::unix::fs::symlink(target, root.join(at)).unwrap();
        link(".", "loop");
        link("..", "sub/up");
        link("sub", "alias");
        let ds = Dataset::open(root, &DatasetOptions::default()).unwrap();
        let rels: Vec<&str> = ds.items.iter().map(|i| i.rel.as_str()).collect();
        assert_eq!(rels, ["a.png", "sub/b.png"]);
        let left: Vec<&str> = ds.unlisted.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(left, ["alias", "loop", "sub/up"]);
        assert!(
            ds.unlisted[0].reason.contains("the folder sub again"),
            "{:?}",
            ds.unlisted
        );
        assert!(
            ds.unlisted[1].reason.contains("the folder . again"),
            "{:?}",
            ds.unlisted
        );
    }

    #[test]
    fn a_folder_with_a_manifest_is_read_through_it_and_masks_are_never_images() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["images", "masks", "more"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        for name in [
            "images/a.png",
            "masks/a-0.png",
            "more/b.png",
            "more/b_mask.png",
            "more/c-mask.jpg",
        ] {
            std::fs::write(root.join(name), b"x").unwrap();
        }
        let ds = Dataset::open(root, &DatasetOptions::default()).unwrap();
        let rels: Vec<&str> = ds.items.iter().map(|i| i.rel.as_str()).collect();
        assert_eq!(rels, ["images/a.png", "more/b.png"]);
        std::fs::write(
            root.join(FOLDER_MANIFEST),
            "{\"id\": \"first\", \"path\": \"images/a.png\"}\n",
        )
        .unwrap();
        let ds = Dataset::open(root, &DatasetOptions::default()).unwrap();
        let ids: Vec<(&str, &str)> = ds
            .items
            .iter()
            .map(|i| (i.id.as_str(), i.rel.as_str()))
            .collect();
        assert_eq!(ids, [("first", "images/a.png")]);
        // The sample world's folder: its 64 pictures, none of its 128 masks.
        let shapes = crate::sample::default_dataset();
        let folder = shapes.parent().unwrap();
        let ds = Dataset::open(folder, &DatasetOptions::default()).unwrap();
        assert_eq!(ds.len(), 64);
        assert!(ds.items.iter().all(|i| i.rel.starts_with("images/")));
        assert!(!folder::is_mask(Path::new("masks.png")));
        assert!(folder::is_mask(Path::new("a/Masks/x.png")));
    }

    #[test]
    fn a_bare_manifest_name_lies_in_the_working_folder() {
        assert_eq!(manifest_folder(Path::new("ds.jsonl")), PathBuf::from("."));
        assert_eq!(manifest_folder(Path::new("d/ds.jsonl")), PathBuf::from("d"));
    }

    #[test]
    fn manifest_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        std::fs::write(&path, "{\"path\": \"a.png\"}\n{\"id\": 3}\n").unwrap();
        let err = Dataset::open(&path, &DatasetOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.jsonl:2"), "{err}");
    }

    #[test]
    fn duplicate_manifest_ids_are_refused_naming_both_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let text = "{\"path\": \"a.png\", \"id\": \"x\"}\n{\"path\": \"b.png\"}\n\n{\"path\": \"c.png\", \"id\": \"x\"}\n";
        std::fs::write(&path, text).unwrap();
        let err = Dataset::open(&path, &DatasetOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.jsonl:4") && err.contains("line 1"), "{err}");
    }
}
