//! A loaded model + SAE pair and the layer it is tapped at, shared by every job.

pub mod encode;
pub mod spec;

pub use encode::{ACTIVE_MIN, encode_image_tokens};
pub use spec::{DeviceSpec, ModelSpec};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};

use crate::model::anyres::ImageLayout;
use crate::model::llava_next::{ImageInput, SequenceMap};
use crate::model::load::{LoadOptions, LoadedModel, load_model};
use crate::model::preprocess::{ImageLimits, PreprocessedImage, load_image_within, preprocess};
use crate::model::tap::ForwardOptions;
use crate::sae::{Sae, SaeConfig};

/// Model, SAE and tap layer, checked against each other.
pub struct Session {
    /// The LLaVA-NeXT model and its tokenizer and processor.
    pub model: LoadedModel,
    /// The SAE reading the tap.
    pub sae: Sae,
    /// Decoder layer whose output is tapped.
    pub layer: usize,
    /// Largest image accepted, in pixels.
    pub max_pixels: u64,
    /// Largest image file read, in bytes.
    pub max_file_bytes: u64,
    /// The SAE as the user named it.
    pub sae_id: String,
    /// Fingerprint of the SAE's config and a sample of its weights.
    pub sae_fingerprint: String,
}

/// One prompt run to the tap.
pub struct TapRun {
    /// Token ids as given to the model (one placeholder per image).
    pub ids: Vec<u32>,
    /// What each sequence position holds.
    pub map: SequenceMap,
    /// Layout of the (single) image, if any.
    pub layout: Option<ImageLayout>,
    /// Residual after the tapped layer, f32 `[T, hidden]`.
    pub residual: Tensor,
}

impl Session {
    /// Load what `args` names (the sample world by default), tapping `layer` or the SAE's hookpoint.
    pub fn open(args: &ModelSpec, layer: Option<usize>) -> Result<Self> {
        let device = args.device.open()?;
        let dtype = args.dtype;
        let model_spec = args.model_or_sample();
        let opts = LoadOptions {
            device: device.clone(),
            dtype,
            random_weights: args.random_weights,
        };
        let model = load_model(&model_spec, &opts)
            .with_context(|| format!("loading model {model_spec}"))?;
        let sae_spec = args.sae_or_sample();
        let text = &model.config.text_config;
        let sae = if let Some(size) = sae_spec.strip_prefix("random:") {
            let from_hookpoint = args
                .hookpoint
                .as_deref()
                .and_then(|h| h.rsplit('.').next()?.parse().ok());
            let layer = layer.or(from_hookpoint).context(
                "a random SAE (--sae random:N:K) needs its layer: --hookpoint model.layers.L",
            )?;
            random_sae(size, text.hidden_size, layer, &device, args.sae_dtype)?
        } else {
            let sae_path = resolve_sae(&sae_spec, args.hookpoint.as_deref())?;
            Sae::load(
                &sae_path,
                args.hookpoint.as_deref(),
                &device,
                args.sae_dtype,
            )
            .with_context(|| format!("loading SAE {sae_spec}"))?
        };
        sae.check_compatible(text.hidden_size, text.num_hidden_layers)?;
        let layer = match (layer, sae.hookpoint_layer()) {
            (Some(l), _) | (None, Some(l)) => l,
            (None, None) => anyhow::bail!(
                "SAE hookpoint {:?} names no decoder layer; pass --layer",
                sae.hookpoint()
            ),
        };
        if layer >= text.num_hidden_layers {
            anyhow::bail!(
                "--layer {layer} is out of range: {} has {} decoder layers (0..{})",
                model.id,
                text.num_hidden_layers,
                text.num_hidden_layers - 1
            );
        }
        let sae_fingerprint = sae_fingerprint(&sae)?;
        Ok(Self {
            model,
            sae,
            layer,
            max_pixels: args.max_pixels,
            max_file_bytes: args.max_file_bytes,
            sae_id: sae_spec,
            sae_fingerprint,
        })
    }

    /// Token ids for an optional chat prompt around one image (the caching sequence without one).
    pub fn prompt_ids(&self, prompt: Option<&str>, with_image: bool) -> Result<Vec<u32>> {
        let cfg = &self.model.config;
        if prompt.is_none() && with_image && self.model.tokenizer.is_none() {
            // A bare config (random weights) caches `BOS <image>` without a tokenizer.
            return Ok(vec![
                cfg.text_config.bos_token_id.unwrap_or(1),
                cfg.image_token_index,
            ]);
        }
        let tok = self.model.tokenizer()?;
        match prompt {
            Some(p) => tok.chat_prompt_ids(p, with_image),
            None if with_image => tok.cache_prompt_ids(),
            None => anyhow::bail!("nothing to run: give an image or a prompt"),
        }
    }

    /// Run `ids` with an optional image file to the tap; the forward stops there.
    pub fn run_to_tap(&self, ids: Vec<u32>, image: Option<&std::path::Path>) -> Result<TapRun> {
        let prepared = match image {
            Some(path) => Some(self.image_prep().prepare(path)?),
            None => None,
        };
        self.run_prepared(ids, prepared)
    }

    /// What an image file may be, as the user set it.
    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_pixels: self.max_pixels,
            max_file_bytes: self.max_file_bytes,
        }
    }

    /// What preparing an image needs, detached from the model so other threads can do it.
    pub fn image_prep(&self) -> ImagePrep {
        ImagePrep::for_model(&self.model, self.image_limits())
    }

    /// [`Session::run_to_tap`] with the image already prepared (see [`ImagePrep`]).
    pub fn run_prepared(
        &self,
        ids: Vec<u32>,
        prepared: Option<PreprocessedImage>,
    ) -> Result<TapRun> {
        let images: Vec<ImageInput<'_>> = prepared
            .iter()
            .map(|p| ImageInput {
                pixel_values: &p.pixel_values,
                layout: &p.layout,
            })
            .collect();
        let m = &self.model.model;
        let (embeds, map) = m.embed_sequence(&ids, &images)?;
        let out = m.forward(&embeds, 0, None, ForwardOptions::to_tap(self.layer))?;
        let residual = out
            .tapped
            .context("the forward returned no tapped residual")?
            .squeeze(0)?
            .to_dtype(DType::F32)?;
        Ok(TapRun {
            ids,
            map,
            layout: prepared.map(|p| p.layout),
            residual,
        })
    }
}

/// Image loading and preprocessing settings of a session: plain data, cheap to clone and send
/// to worker threads, so images are decoded and resized while the device runs the model.
#[derive(Debug, Clone)]
pub struct ImagePrep {
    processor: crate::model::preprocess::ImageProcessorConfig,
    pinpoints: Vec<(u32, u32)>,
    patch: u32,
    limits: ImageLimits,
}

impl ImagePrep {
    /// The preparation `model` needs, refusing images beyond `limits`.
    pub fn for_model(model: &LoadedModel, limits: ImageLimits) -> Self {
        Self {
            processor: model.processor.clone(),
            pinpoints: model.config.pinpoints(),
            patch: model.config.vision_config.patch_size as u32,
            limits,
        }
    }

    /// Decode `path` and preprocess it for the model (anyres views and geometry).
    pub fn prepare(&self, path: &std::path::Path) -> Result<PreprocessedImage> {
        let img = load_image_within(path, self.limits)?;
        preprocess(&img, &self.processor, &self.pinpoints, self.patch)
            .with_context(|| format!("{}: preprocessing failed", path.display()))
    }
}

/// A local SAE path as is; a hub id through the Hugging Face cache (needs `--hookpoint`).
fn resolve_sae(spec: &str, hookpoint: Option<&str>) -> Result<std::path::PathBuf> {
    let path = std::path::Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let hook = hookpoint.with_context(|| {
        format!(
            "SAE {spec}: no such folder; for a hub id also pass --hookpoint (e.g. model.layers.24)"
        )
    })?;
    let cfg = format!("{hook}/cfg.json");
    let weights = format!("{hook}/sae.safetensors");
    let root = crate::model::load::resolve_repo(spec, &[&cfg, &weights])?;
    Ok(root.join(hook))
}

/// A seeded random SAE from `N:K[:SEED]` (benchmarks and multi-GPU checks on random models):
/// the same spec gives the same weights in every process on the same kind of device, computing
/// in `dtype`.
fn random_sae(
    size: &str,
    hidden: usize,
    layer: usize,
    device: &Device,
    dtype: DType,
) -> Result<Sae> {
    let parts: Vec<&str> = size.split(':').collect();
    let num = |i: usize, what: &str| -> Result<u64> {
        parts
            .get(i)
            .with_context(|| {
                format!("--sae random:{size}: expected random:N:K[:SEED], {what} missing")
            })?
            .parse()
            .with_context(|| format!("--sae random:{size}: {what} is not a number"))
    };
    let (n, k) = (num(0, "N")? as usize, num(1, "K")? as usize);
    let seed = if parts.len() > 2 { num(2, "SEED")? } else { 0 };
    if device.is_cpu() {
        let mut cfg = SaeConfig::new(hidden);
        cfg.num_latents = n;
        cfg.k = k;
        Sae::random(cfg, &format!("model.layers.{layer}"), seed, device)?.to_dtype(dtype)
    } else {
        device
            .set_seed(seed)
            .context("seeding the device generator")?;
        crate::jobs::bench::random_sae_on_device(hidden, n, k, layer, dtype, device)
    }
}

/// Config, hookpoint and the weight bytes of an SAE (a content sample for a random one).
fn sae_fingerprint(sae: &Sae) -> Result<String> {
    let mut fp = crate::util::hash::Fingerprint::new();
    fp.field(&serde_json::to_string(sae.cfg())?)
        .field(sae.hookpoint());
    if let Some(dir) = sae.source() {
        // Every byte of the weights: a change in place keeps config and shapes.
        let weights = dir.join(crate::sae::sae::WEIGHTS_FILE);
        fp.field(&crate::util::file_hash::content_hash(&weights)?);
        return Ok(fp.hex());
    }
    // A random SAE has no file; its seeded values are sampled instead.
    let sample = Tensor::cat(
        &[
            sae.b_dec().to_dtype(DType::F32)?,
            sae.w_enc().get(0)?.to_dtype(DType::F32)?,
        ],
        0,
    )?;
    for v in sample.to_vec1::<f32>()? {
        fp.update(&v.to_le_bytes());
    }
    Ok(fp.hex())
}
