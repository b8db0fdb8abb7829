//! What a session loads and how it runs: the typed form of the model flags.

use candle_core::DType;

pub use crate::model::device::{DeviceSpec, parse_dtype};

use crate::sample;

/// Where the model and SAE come from and how they run.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// A local Hugging Face folder, a hub id or a bare config.json; `None` is the sample model.
    pub model: Option<String>,
    /// An SAE folder, root, hub id or `random:N:K[:SEED]`; `None` is the sample SAE.
    pub sae: Option<String>,
    /// Hookpoint folder inside an SAE root or hub repository.
    pub hookpoint: Option<String>,
    /// Device the model and SAE run on.
    pub device: DeviceSpec,
    /// Compute dtype of the model.
    pub dtype: DType,
    /// Compute dtype of the SAE (f32 unless asked, as the original).
    pub sae_dtype: DType,
    /// Invent deterministic weights from this seed instead of reading them.
    pub random_weights: Option<u64>,
    /// Largest image accepted, in pixels.
    pub max_pixels: u64,
    /// Largest image file read for the model, in bytes (checked before reading it).
    pub max_file_bytes: u64,
}

/// Default of [`ModelSpec::max_pixels`].
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

impl Default for ModelSpec {
    /// The sample world on the CPU in f32.
    fn default() -> Self {
        Self {
            model: None,
            sae: None,
            hookpoint: None,
            device: DeviceSpec::Cpu,
            dtype: DType::F32,
            sae_dtype: DType::F32,
            random_weights: None,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_file_bytes: crate::model::image_file::DEFAULT_MAX_FILE_BYTES,
        }
    }
}

impl ModelSpec {
    /// The model as named, or the sample world's checkpoint.
    pub fn model_or_sample(&self) -> String {
        self.model
            .clone()
            .unwrap_or_else(|| sample::default_model().display().to_string())
    }

    /// The SAE as named, or the sample world's SAE.
    pub fn sae_or_sample(&self) -> String {
        self.sae
            .clone()
            .unwrap_or_else(|| sample::default_sae().display().to_string())
    }
}
