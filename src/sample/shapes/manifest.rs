//! The JSONL manifest of a labelled image set: one [`ManifestEntry`] per line, paths relative to
//! the manifest's folder.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One image of a manifest with its labels and ground-truth objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Stable image id, e.g. `shape-0000`.
    pub id: String,
    /// Image path, relative to the manifest's folder, with `/` separators.
    pub path: String,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Every object label in the image, e.g. `"red circle"`, in object order.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Ground-truth objects, back to front.
    #[serde(default)]
    pub objects: Vec<ManifestObject>,
}

/// One object of an image: what it is, and where its mask lies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    /// Colour name, e.g. `red`.
    pub colour: String,
    /// Shape name, e.g. `circle`.
    pub shape: String,
    /// `"<colour> <shape>"`.
    pub label: String,
    /// Greyscale mask path (255 visible, 0 elsewhere), relative to the manifest's folder.
    pub mask: String,
    /// Tight box of the mask, `[x0, y0, x1, y1]` in pixels, end-exclusive.
    pub bbox: [u32; 4],
}

impl ManifestEntry {
    /// The image file, given the folder that holds the manifest.
    pub fn image_path(&self, root: &Path) -> PathBuf {
        root.join(&self.path)
    }
}

impl ManifestObject {
    /// The mask file, given the folder that holds the manifest.
    pub fn mask_path(&self, root: &Path) -> PathBuf {
        root.join(&self.mask)
    }
}

/// Reads a JSONL manifest; blank lines are skipped, and a bad line is reported with its number.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestEntry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read image manifest {}", path.display()))?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry: ManifestEntry = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: not a manifest entry (expected a JSON object with id, path, width, height)",
                path.display(),
                i + 1
            )
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Renders entries as JSONL text, one compact object per line.
pub fn manifest_text(entries: &[ManifestEntry]) -> Result<String> {
    let mut text = String::new();
    for entry in entries {
        text.push_str(
            &serde_json::to_string(entry)
                .with_context(|| format!("cannot encode manifest entry {}", entry.id))?,
        );
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("manifest.jsonl");
        let good = r#"{"id":"a","path":"images/a.png","width":4,"height":3}"#;
        std::fs::write(&path, format!("{good}\n\n{{\"id\": 5}}\n")).expect("write");
        let err = format!("{:#}", read_manifest(&path).expect_err("line 3 is bad"));
        assert!(err.contains("manifest.jsonl:3"), "{err}");
    }

    #[test]
    fn missing_optional_fields_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.jsonl");
        std::fs::write(&path, r#"{"id":"a","path":"a.png","width":4,"height":3}"#).expect("write");
        let entries = read_manifest(&path).expect("read");
        assert_eq!(entries.len(), 1);
        assert!(entries[0].objects.is_empty() && entries[0].labels.is_empty());
        assert_eq!(entries[0].image_path(dir.path()), dir.path().join("a.png"));
    }

    #[test]
    fn missing_file_is_named() {
        let err = format!(
            "{:#}",
            read_manifest(Path::new("no/such/manifest.jsonl")).expect_err("missing")
        );
        assert!(err.contains("no/such/manifest.jsonl"), "{err}");
    }
}
