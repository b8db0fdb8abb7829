//! Writing safetensors files the way PyTorch's `save_file` does, so transformers and sparsify
//! load them as shipped.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Tensor;

/// Write `tensors` (by name) to `path` with the `format: pt` header entry that transformers
/// checks, through a `.partial` file renamed into place so a crash never leaves half a file.
pub fn save_pt<'a, I>(tensors: I, path: &Path) -> Result<()>
where
    I: IntoIterator<Item = (&'a str, &'a Tensor)>,
{
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    safetensors::serialize_to_file(tensors, Some(meta), &partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot move {} into place", partial.display()))
}

/// The `format` header entry of the safetensors file at `path`, for tests of the writers.
#[cfg(test)]
pub(crate) fn format_entry(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    meta.metadata().as_ref()?.get("format").cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_carry_the_pytorch_format_entry_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let t = Tensor::new(&[1f32, 2., 3.], &candle_core::Device::Cpu).unwrap();
        save_pt([("a", &t)], &path).unwrap();
        assert_eq!(format_entry(&path).as_deref(), Some("pt"));
        let back = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
        assert_eq!(back["a"].to_vec1::<f32>().unwrap(), vec![1., 2., 3.]);
        assert!(!dir.path().join("w.safetensors.partial").exists());
    }
}
