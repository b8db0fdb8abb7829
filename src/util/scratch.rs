//! A scratch folder under the system's temporary directory, deleted when dropped.

use std::path::{Path, PathBuf};

/// A folder path unique to this process and moment, removed (with what it holds) on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A fresh path `glint-<what>-<pid>-<nanos>` in the temporary directory (not created).
    pub fn new(what: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("glint-{what}-{}-{nanos}", std::process::id());
        Self(std::env::temp_dir().join(name))
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover folder in the temporary directory harms nothing.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_goes_with_its_handle() {
        let s = ScratchDir::new("scratch-test");
        std::fs::create_dir_all(s.path().join("a")).unwrap();
        let kept = s.path().to_path_buf();
        assert!(kept.exists());
        drop(s);
        assert!(!kept.exists());
    }
}
