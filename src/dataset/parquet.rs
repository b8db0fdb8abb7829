//! Parquet datasets as Hugging Face publishes them: shards with an image column.
//!
//! The rest of the pipeline reads images by path, so the image bytes of each row that a run
//! needs are written once to a cache folder keyed by the fingerprint of the parquet files and
//! reused by every later open. Image bytes are read row by row from the column chunks (the
//! reader holds one page of them), so a file's images are never all in memory at once.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use parquet::basic::Type as Physical;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::{DatasetItem, IMAGE_EXTENSIONS};
use crate::util::hash::Fingerprint;

mod columns;
mod extract;

use columns::{Column, ImageColumn, image_column, leaf};
use extract::{extracted, write_rows};

/// Extension of the placeholder file written for a row without image bytes.
const EMPTY_EXTENSION: &str = "empty";

/// Whether `spec` names a parquet dataset: a `.parquet` file, or a folder with `.parquet`
/// files at its top or, as in Hugging Face dataset repositories, under `data/`.
pub fn is_parquet(spec: &Path) -> bool {
    if has_parquet_extension(spec) {
        return !spec.is_dir();
    }
    spec.is_dir() && all_files(spec).is_ok_and(|f| !f.is_empty())
}

/// Folder that extracted parquet images go under: `$GLINT_CACHE_DIR/parquet`, else
/// `$XDG_CACHE_HOME/glint/parquet`, else `~/.cache/glint/parquet`.
pub fn cache_base() -> Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("GLINT_CACHE_DIR") {
        return Ok(dir.join("parquet"));
    }
    if let Some(dir) = var("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Ok(dir.join("glint").join("parquet"));
    }
    let home = dirs::home_dir()
        .context("no home folder to keep extracted parquet images in; set GLINT_CACHE_DIR")?;
    Ok(home.join(".cache").join("glint").join("parquet"))
}

/// Folder the images of the parquet dataset `spec` are extracted to under `base`. It depends
/// only on the parquet files (names, sizes, footers), so every split and option shares it.
pub fn extraction_root(spec: &Path, base: &Path) -> Result<PathBuf> {
    Ok(base.join(fingerprint(&all_files(spec)?)?))
}

fn has_parquet_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// `.parquet` files directly in `dir`, by name.
fn parquet_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let path = entry
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .path();
        if has_parquet_extension(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Every parquet file of `spec`, in name order.
fn all_files(spec: &Path) -> Result<Vec<PathBuf>> {
    if !spec.is_dir() {
        return Ok(vec![spec.to_path_buf()]);
    }
    let top = parquet_in(spec)?;
    let data = spec.join("data");
    if top.is_empty() && data.is_dir() {
        return parquet_in(&data);
    }
    Ok(top)
}

/// Name, size and footer of each file: the footer holds the schema, the row groups' offsets
/// and statistics, so a changed file changes it, while copying or touching a file does not.
fn fingerprint(files: &[PathBuf]) -> Result<String> {
    let mut fp = Fingerprint::new();
    for path in files {
        let shown = path.display();
        let mut file = File::open(path).with_context(|| format!("{shown}: cannot open"))?;
        let len = file
            .metadata()
            .with_context(|| format!("{shown}: cannot read"))?
            .len();
        let mut tail = [0u8; 8];
        if len < 12 {
            bail!("{shown}: not a parquet file (only {len} bytes)");
        }
        file.seek(SeekFrom::Start(len - 8))
            .and_then(|_| file.read_exact(&mut tail))
            .with_context(|| format!("{shown}: cannot read the footer"))?;
        if &tail[4..] != b"PAR1" {
            bail!(
                "{shown}: not a parquet file (no PAR1 footer; encrypted files are not supported)"
            );
        }
        let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        if footer_len + 12 > len {
            bail!("{shown}: corrupt parquet footer");
        }
        let mut footer = vec![0u8; footer_len as usize];
        file.seek(SeekFrom::Start(len - 8 - footer_len))
            .and_then(|_| file.read_exact(&mut footer))
            .with_context(|| format!("{shown}: cannot read the footer"))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        fp.field(&name).field(&len.to_string()).update(&footer);
    }
    Ok(fp.hex())
}

/// One selected parquet file.
#[derive(Debug)]
struct Shard {
    path: PathBuf,
    /// Subfolder of the extraction root, and the prefix of fallback ids.
    stem: String,
    /// Digits of the row numbers in file names.
    width: usize,
    column: ImageColumn,
}

/// Where a dataset item comes from.
#[derive(Debug)]
struct RowRef {
    shard: usize,
    row: u64,
    /// Image extension named by the struct's `path`, used when the bytes are not sniffed.
    ext_hint: Option<String>,
}

/// A parquet dataset opened for reading: its selected files and where their images go.
#[derive(Debug)]
pub struct ParquetSource {
    root: PathBuf,
    shards: Vec<Shard>,
    rows: Vec<RowRef>,
}

fn open_reader(path: &Path) -> Result<SerializedFileReader<File>> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    SerializedFileReader::new(file)
        .with_context(|| format!("{}: cannot read as parquet", path.display()))
}

/// Files of `all` that belong to `split`: named `SPLIT-…` or `SPLIT.parquet`.
fn select_split(spec: &Path, all: Vec<PathBuf>, split: Option<&str>) -> Result<Vec<PathBuf>> {
    let Some(split) = split else { return Ok(all) };
    let stem = |p: &PathBuf| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let prefix = format!("{split}-");
    let (chosen, others): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|p| stem(p) == split || stem(p).starts_with(&prefix));
    if chosen.is_empty() {
        let mut names: Vec<String> = others
            .iter()
            .map(|p| stem(p).split('-').next().unwrap_or_default().to_string())
            .collect();
        names.dedup();
        bail!(
            "{}: no parquet file of split {split:?} (files named `{split}-*.parquet`); splits here: {}",
            spec.display(),
            names.join(", ")
        );
    }
    Ok(chosen)
}

impl ParquetSource {
    /// Open the parquet dataset `spec` (only the files of `split`, if given), extracting to a
    /// folder under `base`. Items come in file then row order, `index` = that position, and
    /// `rel` without an extension until [`ParquetSource::extract`] fills it in.
    pub fn open(spec: &Path, split: Option<&str>, base: &Path) -> Result<(Self, Vec<DatasetItem>)> {
        let all = all_files(spec)?;
        if all.is_empty() {
            bail!("{}: no .parquet files here or under data/", spec.display());
        }
        let root = base.join(fingerprint(&all)?);
        let files = select_split(spec, all, split)?;
        let mut shards = Vec::new();
        let mut rows = Vec::new();
        let mut paths: Vec<Option<String>> = Vec::new();
        let mut labels: Vec<Option<String>> = Vec::new();
        for path in files {
            let reader = open_reader(&path)?;
            let meta = reader.metadata();
            let schema = meta.file_metadata().schema_descr();
            let column = image_column(&path, schema)?;
            let types = [Physical::BYTE_ARRAY, Physical::INT32, Physical::INT64];
            let label =
                leaf(schema, &["label"], &types).or_else(|| leaf(schema, &["labels"], &types));
            let total = meta.file_metadata().num_rows().max(0) as u64;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let at = |what: &str| format!("{}: cannot read {what}", path.display());
            let mut row = 0u64;
            for g in 0..reader.num_row_groups() {
                let rg = reader.get_row_group(g).with_context(|| at("a row group"))?;
                let n = rg.metadata().num_rows().max(0) as usize;
                let texts =
                    |leaf: Option<(usize, i16)>, what: &str| -> Result<Vec<Option<String>>> {
                        let Some(leaf) = leaf else {
                            return Ok(vec![None; n]);
                        };
                        let mut col = Column::open(rg.as_ref(), leaf).with_context(|| at(what))?;
                        let values = col.next(n).with_context(|| at(what))?;
                        Ok(values
                            .into_iter()
                            .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
                            .collect())
                    };
                let group_paths = texts(column.path, "the image paths")?;
                labels.extend(texts(label, "the labels")?);
                for p in group_paths {
                    let ext_hint = p.as_deref().and_then(|p| {
                        let ext = Path::new(p).extension()?.to_str()?.to_ascii_lowercase();
                        IMAGE_EXTENSIONS.contains(&ext.as_str()).then_some(ext)
                    });
                    rows.push(RowRef {
                        shard: shards.len(),
                        row,
                        ext_hint,
                    });
                    paths.push(p.filter(|p| !p.is_empty()));
                    row += 1;
                }
            }
            shards.push(Shard {
                path,
                stem,
                width: total.max(row).to_string().len().max(6),
                column,
            });
        }
        let mut seen = HashSet::new();
        let unique = paths
            .iter()
            .all(|p| p.as_ref().is_some_and(|p| seen.insert(p)));
        let items = rows
            .iter()
            .zip(paths)
            .zip(labels)
            .enumerate()
            .map(|(i, ((r, path), label))| {
                let shard = &shards[r.shard];
                DatasetItem {
                    index: i as u32,
                    id: match path {
                        Some(p) if unique => p,
                        _ => format!("{}/{}", shard.stem, r.row),
                    },
                    rel: format!("{}/{:0w$}", shard.stem, r.row, w = shard.width),
                    labels: label.filter(|l| !l.is_empty()).into_iter().collect(),
                }
            })
            .collect();
        Ok((Self { root, shards, rows }, items))
    }

    /// Folder the images are extracted to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Write the images of `items` (those not extracted yet) and point their `rel` at them.
    /// `items[k].index` must still be the position given by [`ParquetSource::open`].
    pub fn extract(&self, items: &mut [DatasetItem]) -> Result<()> {
        let mut wanted: Vec<Vec<(u64, usize)>> = vec![Vec::new(); self.shards.len()];
        for (k, item) in items.iter().enumerate() {
            let r = self
                .rows
                .get(item.index as usize)
                .context("parquet item out of range")?;
            wanted[r.shard].push((r.row, k));
        }
        for (s, want) in wanted.iter_mut().enumerate() {
            if want.is_empty() {
                continue;
            }
            want.sort_unstable();
            let shard = &self.shards[s];
            let dir = self.root.join(&shard.stem);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create the image folder", dir.display()))?;
            let mut names = extracted(&dir)?;
            let missing: Vec<u64> = want
                .iter()
                .map(|&(row, _)| row)
                .filter(|row| !names.contains_key(row))
                .collect();
            if !missing.is_empty() {
                let hints: HashMap<u64, &str> = self
                    .rows
                    .iter()
                    .filter(|r| r.shard == s)
                    .filter_map(|r| Some((r.row, r.ext_hint.as_deref()?)))
                    .collect();
                write_rows(shard, &dir, &missing, &hints, &mut names)?;
            }
            for &(row, k) in want.iter() {
                let name = names.get(&row).with_context(|| {
                    format!("{}: row {row} was not extracted", shard.path.display())
                })?;
                items[k].rel = format!("{}/{name}", shard.stem);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Dataset, DatasetOptions};
    use super::*;
    use crate::util::rng::SeededRng;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/parquet")
            .join(rel)
    }

    fn shape(n: u32) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("sample-data/shapes/images/shape-{n:04}.png"));
        std::fs::read(path).unwrap()
    }

    fn open(spec: &Path, opts: &DatasetOptions, cache: &Path) -> Result<Dataset> {
        Dataset::open_in(spec, opts, Some(cache))
    }

    fn split(name: &str) -> DatasetOptions {
        DatasetOptions {
            split: Some(name.into()),
            ..DatasetOptions::default()
        }
    }

    #[test]
    fn a_hf_folder_reads_every_split_in_file_name_order() {
        let cache = tempfile::tempdir().unwrap();
        let ds = open(&fixture("hf"), &DatasetOptions::default(), cache.path()).unwrap();
        let rels: Vec<&str> = ds.items.iter().map(|i| i.rel.as_str()).collect();
        assert_eq!(
            rels,
            [
                "test-00000-of-00001/000000.png",
                "test-00000-of-00001/000001.empty",
                "train-00000-of-00002/000000.png",
                "train-00000-of-00002/000001.png",
                "train-00000-of-00002/000002.png",
                "train-00001-of-00002/000000.png",
                "train-00001-of-00002/000001.png",
            ]
        );
        // shape-0003.png is in two splits and one row has no path: ids fall back to file/row.
        assert_eq!(ds.items[1].id, "test-00000-of-00001/1");
        assert_eq!(ds.items[1].labels, ["missing"]);
        assert_eq!(ds.items[2].labels, ["red cross"]);
        // Snappy, zstd (two row groups) and gzip shards all give back the original bytes.
        for (k, n) in [(0, 3), (2, 0), (3, 3), (4, 4), (5, 5), (6, 6)] {
            let bytes = std::fs::read(ds.path(&ds.items[k])).unwrap();
            assert!(bytes == shape(n), "item {k} is not shape {n}");
        }
        assert_eq!(std::fs::read(ds.path(&ds.items[1])).unwrap().len(), 0);
        assert_eq!(ds.source, fixture("hf").display().to_string());
        assert!(ds.root.starts_with(cache.path()));
    }

    #[test]
    fn a_split_selects_its_files_and_unique_struct_paths_become_ids() {
        let cache = tempfile::tempdir().unwrap();
        let spec = fixture("hf");
        let ds = open(&spec, &split("train"), cache.path()).unwrap();
        let ids: Vec<&str> = ds.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "shape-0000.png",
                "shape-0003.png",
                "shape-0004.png",
                "shape-0005.png",
                "shape-0006.png"
            ]
        );
        let all = open(&spec, &DatasetOptions::default(), cache.path()).unwrap();
        // One extraction folder per set of files, whatever the split.
        assert_eq!(ds.root, all.root);
        assert_eq!(ds.root, extraction_root(&spec, cache.path()).unwrap());
        assert_ne!(ds.fingerprint(), all.fingerprint());
        let err = open(&spec, &split("validation"), cache.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"validation\"") && err.contains("test, train"),
            "{err}"
        );
    }

    #[test]
    fn limit_and_shuffle_extract_only_the_chosen_rows() {
        let cache = tempfile::tempdir().unwrap();
        let spec = fixture("hf/data");
        let opts = DatasetOptions {
            limit: Some(2),
            shuffle_seed: Some(3),
            split: Some("train".into()),
        };
        let a = open(&spec, &opts, cache.path()).unwrap();
        let b = open(&spec, &opts, cache.path()).unwrap();
        assert_eq!(a.items, b.items);
        assert_eq!(a.len(), 2);
        let mut expected: Vec<String> = ["0000", "0003", "0004", "0005", "0006"]
            .iter()
            .map(|n| format!("shape-{n}.png"))
            .collect();
        SeededRng::new(3).shuffle(&mut expected);
        let ids: Vec<&str> = a.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, expected[..2]);
        let written: usize = std::fs::read_dir(&a.root)
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum();
        assert_eq!(written, 2);
    }

    #[test]
    fn extracted_images_are_reused_not_rewritten() {
        let cache = tempfile::tempdir().unwrap();
        let spec = fixture("hf/data/train-00001-of-00002.parquet");
        let opts = DatasetOptions {
            limit: Some(1),
            ..DatasetOptions::default()
        };
        let first = open(&spec, &opts, cache.path()).unwrap();
        let path = first.path(&first.items[0]);
        assert!(std::fs::read(&path).unwrap() == shape(5));
        std::fs::write(&path, b"marker").unwrap();
        let again = open(&spec, &opts, cache.path()).unwrap();
        assert_eq!(again.items, first.items);
        assert_eq!(std::fs::read(&path).unwrap(), b"marker");
        assert_eq!(again.items[0].id, "shape-0005.png");
    }

    #[test]
    fn a_plain_binary_image_column_is_read() {
        let cache = tempfile::tempdir().unwrap();
        let ds = open(
            &fixture("plain_image.parquet"),
            &DatasetOptions::default(),
            cache.path(),
        )
        .unwrap();
        assert_eq!(ds.items[0].id, "plain_image/0");
        assert_eq!(ds.items[0].labels, ["7"]);
        assert!(std::fs::read(ds.path(&ds.items[0])).unwrap() == shape(6));
    }

    #[test]
    fn a_file_without_an_image_column_is_named_with_its_columns() {
        let cache = tempfile::tempdir().unwrap();
        let spec = fixture("no_image.parquet");
        let err = format!(
            "{:#}",
            open(&spec, &DatasetOptions::default(), cache.path()).unwrap_err()
        );
        assert!(err.contains("no_image.parquet"), "{err}");
        assert!(err.contains("text (string), label (int64)"), "{err}");
    }

    #[test]
    fn splits_are_refused_for_other_datasets_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"x").unwrap();
        let err = open(dir.path(), &split("train"), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a parquet dataset"), "{err}");
        let fake = dir.path().join("fake.parquet");
        std::fs::write(&fake, b"not parquet at all").unwrap();
        let err = open(&fake, &DatasetOptions::default(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("fake.parquet: not a parquet file"), "{err}");
    }

    #[test]
    fn magic_numbers_name_the_extension() {
        assert_eq!(extract::sniff(&shape(0)), Some("png"));
        assert_eq!(extract::sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("jpg"));
        assert_eq!(extract::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("webp"));
        assert_eq!(extract::sniff(b"GIF89a"), Some("gif"));
        assert_eq!(extract::sniff(b"hello"), None);
    }
}
