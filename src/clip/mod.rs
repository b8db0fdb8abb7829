//! CLIP in candle for scoring explanations: `max(100 · cos(image, text), 0)` per image.
//!
//! Loads a Hugging Face `CLIPModel` folder or hub id (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `preprocessor_config.json`) and reproduces torchmetrics' `CLIPScore`,
//! which the original scorer used: PIL-style preprocessing, texts cut to 77 ids, unit-normalised
//! projected features, `100 · cos` clamped at zero. The original's baseline scores the same text
//! against random dataset images; [`baseline_draws`] picks those images reproducibly.

pub mod config;
pub mod model;
pub mod preprocess;
pub mod resample;
pub mod tokenize;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::DynamicImage;

use crate::util::rng::SeededRng;
use config::ClipConfig;
use model::{ClipModel, l2_normalize};
use preprocess::ClipProcessorConfig;
use tokenize::ClipTokenizer;

/// Files of a CLIP folder, in the order they are fetched from the hub.
pub const CLIP_FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "preprocessor_config.json",
];

/// Runs of random images in the original's baseline (`random` mode).
pub const BASELINE_RUNS: usize = 30;
/// Images per baseline run.
pub const BASELINE_PER_RUN: usize = 5;

/// Images embedded per forward pass, to bound memory on large batches.
const IMAGE_CHUNK: usize = 32;
/// Texts embedded per forward pass.
const TEXT_CHUNK: usize = 64;

/// A loaded CLIP model with its tokenizer and image processor.
pub struct ClipScorer {
    model: ClipModel,
    tokenizer: ClipTokenizer,
    processor: ClipProcessorConfig,
    config: ClipConfig,
    device: Device,
    dir: PathBuf,
}

/// `max(100 · cos, 0)`, the score of one image against one text.
pub fn clip_score(cos: f32) -> f32 {
    (100.0 * cos).max(0.0)
}

/// Scores of every row of `images` against the single row of `text` (both unit-normalised).
pub fn scores_from_embeddings(text: &Tensor, images: &Tensor) -> Result<Vec<f32>> {
    let (n_text, _) = text.dims2().context("text embedding must be [1, dim]")?;
    if n_text != 1 {
        bail!("expected one text embedding, got {n_text}");
    }
    let cos = images
        .to_dtype(DType::F32)?
        .matmul(&text.to_dtype(DType::F32)?.t()?)?
        .squeeze(1)?
        .to_vec1::<f32>()?;
    Ok(cos.into_iter().map(clip_score).collect())
}

/// The original's random baseline: `runs` independent permutations of `pool` images, the first
/// `per_run` of each (fewer when the pool is smaller), seeded so reruns pick the same images.
pub fn baseline_draws(pool: usize, runs: usize, per_run: usize, seed: u64) -> Vec<Vec<usize>> {
    (0..runs)
        .map(|run| {
            let mut rng = SeededRng::for_name(seed, &format!("clip-baseline-{run}"));
            let mut idx: Vec<usize> = (0..pool).collect();
            rng.shuffle(&mut idx);
            idx.truncate(per_run);
            idx
        })
        .collect()
}

fn read_file(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{}: missing; a CLIP model folder needs {}",
            path.display(),
            CLIP_FILES.join(", ")
        );
    }
    std::fs::read_to_string(&path).with_context(|| format!("{}: unreadable", path.display()))
}

impl ClipScorer {
    /// Load from a local folder or a hub id.
    pub fn load(model: &str, device: &Device) -> Result<Self> {
        let dir = crate::model::load::resolve_repo(model, &CLIP_FILES)
            .with_context(|| format!("cannot find CLIP model {model}"))?;
        Self::load_dir(&dir, device)
    }

    /// Load from a folder holding the four CLIP files.
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        let shown = dir.display();
        let config = ClipConfig::from_json(
            &read_file(dir, "config.json")?,
            &format!("{shown}/config.json"),
        )?;
        let processor = ClipProcessorConfig::from_json(
            &read_file(dir, "preprocessor_config.json")?,
            &format!("{shown}/preprocessor_config.json"),
        )?;
        let side = config.vision_config.image_size as u32;
        if processor.output_size() != (side, side) {
            bail!(
                "{shown}/preprocessor_config.json: images come out {:?} but vision_config.image_size is {side}; \
                 make crop_size match it",
                processor.output_size()
            );
        }
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.exists() {
            bail!(
                "{}: missing; CLIP needs the fast tokenizer file (save it with \
                 CLIPTokenizerFast.save_pretrained)",
                tok_path.display()
            );
        }
        let tokenizer =
            ClipTokenizer::from_file(&tok_path, config.text_config.max_position_embeddings)?;
        let files = weight_files(dir)?;
        // SAFETY: mapped read-only; glint never writes model files, and a change by another
        // process during loading could only corrupt this load.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }
            .with_context(|| format!("{shown}: cannot read the safetensors weights"))?;
        let vb = VarBuilder::from_backend(Box::new(st), DType::F32, device.clone());
        let model = ClipModel::load(&config, vb).with_context(|| {
            format!(
                "{shown}: the weights do not match config.json (is this a CLIPModel checkpoint?)"
            )
        })?;
        Ok(Self {
            model,
            tokenizer,
            processor,
            config,
            device: device.clone(),
            dir: dir.to_path_buf(),
        })
    }

    /// Folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed `config.json`.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The learned temperature `exp(logit_scale)` (100 for OpenAI CLIP).
    pub fn logit_scale(&self) -> f32 {
        self.model.logit_scale.exp()
    }

    /// Token ids of each text as the model sees them (start/end tokens, cut to the context).
    pub fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.tokenizer.encode(t)).collect()
    }

    /// `[n, 3, S, S]` pixel values on the CPU, as the image processor makes them.
    pub fn pixel_values(&self, images: &[DynamicImage]) -> Result<Tensor> {
        self.processor.pixel_values(images)
    }

    /// Unit-normalised text embeddings, one row per text.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Tensor> {
        if texts.is_empty() {
            bail!("embed_texts: no texts given");
        }
        let ids = self.token_ids(texts)?;
        let mut parts = Vec::new();
        for chunk in ids.chunks(TEXT_CHUNK) {
            parts.push(self.model.text_features(chunk)?);
        }
        Ok(l2_normalize(&Tensor::cat(&parts, 0)?)?)
    }

    /// Unit-normalised image embeddings for already-processed `[n, 3, S, S]` pixels.
    pub fn embed_pixels(&self, pixels: &Tensor) -> Result<Tensor> {
        let feats = self
            .model
            .image_features(&pixels.to_device(&self.device)?)?;
        Ok(l2_normalize(&feats)?)
    }

    /// Unit-normalised image embeddings, one row per image.
    pub fn embed_images(&self, images: &[DynamicImage]) -> Result<Tensor> {
        if images.is_empty() {
            bail!("embed_images: no images given");
        }
        let mut parts = Vec::new();
        for chunk in images.chunks(IMAGE_CHUNK) {
            parts.push(self.embed_pixels(&self.pixel_values(chunk)?)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// max(100 * cos, 0) of `text` with each image, as the original computes it.
    pub fn scores(&self, text: &str, images: &[DynamicImage]) -> Result<Vec<f32>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        scores_from_embeddings(&self.embed_texts(&[text])?, &self.embed_images(images)?)
    }
}

/// `model.safetensors`, or the shards of `model.safetensors.index.json`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    if dir.join("model.safetensors.index.json").exists() {
        return crate::model::load::weight_files(dir);
    }
    bail!(
        "{}: missing; CLIP weights must be safetensors (convert pytorch_model.bin with \
         transformers' save_pretrained(safe_serialization=True))",
        single.display()
    )
}

#[cfg(test)]
mod tests;
