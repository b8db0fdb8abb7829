//! The offline sample world: shapes dataset, tiny checkpoint and tiny SAE, generated deterministically.
//!
//! Every glint command falls back to this world when no model, SAE or dataset is named, so a
//! fresh checkout runs end to end without downloads.

pub mod checkpoint;
pub mod clip;
pub mod model_eval;
pub mod patch_labels;
pub mod patch_probe;
pub mod qa;
pub mod shapes;
pub mod tokenizer_gen;
pub mod train_examples;
pub mod train_model;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;

use crate::sae::{Sae, SaeConfig};

/// Folder name of the tiny checkpoint inside the sample world.
pub const MODEL_DIR: &str = "llava-next-tiny";
/// Folder name of the tiny SAE root inside the sample world.
pub const SAE_DIR: &str = "sae-tiny";
/// Folder name of the shapes dataset inside the sample world.
pub const SHAPES_DIR: &str = "shapes";

/// Root of the sample world: `$GLINT_SAMPLE_DATA`, else `./sample-data`, else the source tree's.
pub fn sample_root() -> PathBuf {
    if let Ok(dir) = std::env::var("GLINT_SAMPLE_DATA") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("sample-data");
    if local.join(MODEL_DIR).is_dir() {
        return local;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/sample-data"))
}

/// The default model folder.
pub fn default_model() -> PathBuf {
    sample_root().join(MODEL_DIR)
}

/// The default SAE root (holding one hookpoint folder).
pub fn default_sae() -> PathBuf {
    sample_root().join(SAE_DIR)
}

/// The default dataset manifest.
pub fn default_dataset() -> PathBuf {
    sample_root().join(SHAPES_DIR).join("manifest.jsonl")
}

/// What `glint sample-data` wrote.
#[derive(Debug, serde::Serialize)]
pub struct SampleSummary {
    /// Images in the shapes dataset.
    pub images: usize,
    /// Objects (and masks) in it.
    pub objects: usize,
    /// Total bytes written under the root.
    pub bytes: u64,
}

/// Generate the whole sample world under `root` (deterministic for a seed).
///
/// `with_sae` writes a randomly initialised SAE; the committed sample world instead carries
/// one trained by `glint --batch train` on the shapes (see the README).
pub fn generate_sample_world(root: &Path, seed: u64, with_sae: bool) -> Result<SampleSummary> {
    std::fs::create_dir_all(root).with_context(|| format!("{}: cannot create", root.display()))?;
    let shapes = shapes::generate_shapes(
        &root.join(SHAPES_DIR),
        &shapes::ShapesSpec {
            seed,
            ..Default::default()
        },
    )?;
    let config = checkpoint::write_sample_checkpoint(&root.join(MODEL_DIR), seed)?;
    checkpoint::write_bench_configs(root)?;
    clip::write_clip_tiny(&root.join(clip::CLIP_DIR), seed)?;
    if with_sae {
        let mut cfg = SaeConfig::new(config.text_config.hidden_size);
        cfg.num_latents = 256;
        cfg.k = 8;
        let hook = format!("model.layers.{}", checkpoint::SAMPLE_TAP_LAYER);
        Sae::random(cfg, &hook, seed, &Device::Cpu)?.save(&root.join(SAE_DIR))?;
    }
    Ok(SampleSummary {
        images: shapes.images,
        objects: shapes.objects,
        bytes: dir_size(root),
    })
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
