//! The global flags naming the model and SAE, and their typed form.

use anyhow::Result;
use clap::Args;

use crate::session::{ModelSpec, spec::parse_dtype};

/// Where the model and SAE come from and how they run.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// LLaVA-NeXT model: a local Hugging Face folder, a hub id, or a config.json (with --random-weights).
    /// Defaults to the sample world's tiny checkpoint.
    #[arg(long, global = true, env = "GLINT_MODEL")]
    pub model: Option<String>,

    /// SAE: a hookpoint folder (cfg.json + sae.safetensors), a root holding one, or a hub id.
    /// Defaults to the sample world's SAE.
    #[arg(long, global = true, env = "GLINT_SAE")]
    pub sae: Option<String>,

    /// Hookpoint folder inside an SAE root or hub repo (e.g. model.layers.24).
    #[arg(long, global = true)]
    pub hookpoint: Option<String>,

    /// Device: cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "cpu", env = "GLINT_DEVICE")]
    pub device: String,

    /// Model compute dtype: f32, bf16 or f16.
    #[arg(long, global = true, default_value = "f32")]
    pub dtype: String,

    /// SAE compute dtype: f32 (as the original), bf16 or f16. On a GPU, bf16 makes the SAE
    /// encode several times cheaper; its codes then carry bf16 rounding.
    #[arg(long, global = true, default_value = "f32")]
    pub sae_dtype: String,

    /// Invent deterministic weights from this seed instead of reading them (benchmarks).
    #[arg(long, global = true, value_name = "SEED", num_args = 0..=1, default_missing_value = "0")]
    pub random_weights: Option<u64>,

    /// Largest image accepted, in pixels (width x height).
    #[arg(long, global = true, default_value_t = crate::session::spec::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,

    /// Largest image file read for the model (cache, probe, steer), in bytes; checked before
    /// reading it.
    #[arg(long, global = true, default_value_t = crate::model::image_file::DEFAULT_MAX_FILE_BYTES)]
    pub max_file_bytes: u64,
}

impl ModelArgs {
    /// The typed model settings (device and dtype checked, nothing opened yet).
    pub fn spec(&self) -> Result<ModelSpec> {
        Ok(ModelSpec {
            model: self.model.clone(),
            sae: self.sae.clone(),
            hookpoint: self.hookpoint.clone(),
            device: self.device.parse()?,
            dtype: parse_dtype("--dtype", &self.dtype)?,
            sae_dtype: parse_dtype("--sae-dtype", &self.sae_dtype)?,
            random_weights: self.random_weights,
            max_pixels: self.max_pixels,
            max_file_bytes: self.max_file_bytes,
        })
    }
}
