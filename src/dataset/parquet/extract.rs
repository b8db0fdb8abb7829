//! Writing image bytes out of a parquet file, once, under stable names.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use parquet::file::reader::FileReader;

use super::columns::Column;
use super::{EMPTY_EXTENSION, Shard, open_reader};

/// Extracted files in `dir`, by row (temporary files start with a dot and are left out).
pub(super) fn extracted(dir: &Path) -> Result<HashMap<u64, String>> {
    let mut names = HashMap::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let name = entry
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some((row, _)) = name.split_once('.')
            && let Ok(row) = row.parse()
        {
            names.insert(row, name);
        }
    }
    Ok(names)
}

/// File extension of image `bytes` from their magic number.
pub(super) fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let ext = match bytes {
        [0x89, b'P', b'N', b'G', ..] => "png",
        [0xff, 0xd8, 0xff, ..] => "jpg",
        [b'G', b'I', b'F', b'8', ..] => "gif",
        [b'B', b'M', ..] => "bmp",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "webp",
        [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => "tiff",
        _ => return None,
    };
    Some(ext)
}

/// Stream the image column of `shard` and write rows `missing` (sorted) to `dir`.
pub(super) fn write_rows(
    shard: &Shard,
    dir: &Path,
    missing: &[u64],
    hints: &HashMap<u64, &str>,
    names: &mut HashMap<u64, String>,
) -> Result<()> {
    let reader = open_reader(&shard.path)?;
    let at = || {
        format!(
            "{}: cannot read column {}",
            shard.path.display(),
            shard.column.name
        )
    };
    let mut next = missing.iter().copied().peekable();
    let mut start = 0u64;
    for g in 0..reader.num_row_groups() {
        let Some(&first) = next.peek() else { break };
        let n = reader.metadata().row_group(g).num_rows().max(0) as u64;
        let end = start + n;
        if first >= end {
            start = end;
            continue;
        }
        let rg = reader.get_row_group(g).with_context(at)?;
        let mut col = Column::open(rg.as_ref(), shard.column.bytes).with_context(at)?;
        let mut cursor = start;
        while let Some(row) = next.next_if(|&r| r < end) {
            col.skip((row - cursor) as usize).with_context(at)?;
            let bytes = col
                .next(1)
                .with_context(at)?
                .pop()
                .flatten()
                .unwrap_or_default();
            cursor = row + 1;
            let ext = if bytes.is_empty() {
                EMPTY_EXTENSION
            } else {
                sniff(&bytes)
                    .or_else(|| hints.get(&row).copied())
                    .unwrap_or("bin")
            };
            let name = format!("{row:0w$}.{ext}", w = shard.width);
            let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
            let path = dir.join(&name);
            std::fs::write(&tmp, &bytes)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .with_context(|| format!("{}: cannot write the extracted image", path.display()))?;
            names.insert(row, name);
        }
        start = end;
    }
    if let Some(row) = next.next() {
        bail!("{}: has no row {row}", shard.path.display());
    }
    Ok(())
}
