//! A loaded model + SAE pair and the layer it is tapped at, shared by every job.

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};

use crate::cli::ModelArgs;
use crate::model::anyres::ImageLayout;
use crate::model::llava_next::{ImageInput, SequenceMap};
use crate::model::load::{LoadOptions, LoadedModel, load_model, parse_device, parse_dtype};
use crate::model::preprocess::{load_image, preprocess};
use crate::model::tap::ForwardOptions;
use crate::sae::Sae;
use crate::sample;

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
    pub fn open(args: &ModelArgs, layer: Option<usize>) -> Result<Self> {
        let device = parse_device(&args.device)?;
        let dtype = parse_dtype(&args.dtype)?;
        let model_spec = args
            .model
            .clone()
            .unwrap_or_else(|| sample::default_model().display().to_string());
        let opts = LoadOptions {
            device: device.clone(),
            dtype,
            random_weights: args.random_weights,
        };
        let model = load_model(&model_spec, &opts)
            .with_context(|| format!("loading model {model_spec}"))?;
        let sae_spec = args
            .sae
            .clone()
            .unwrap_or_else(|| sample::default_sae().display().to_string());
        let sae_path = resolve_sae(&sae_spec, args.hookpoint.as_deref())?;
        // The SAE runs in f32 on the model's device, as the original does, unless the model is f32 anyway.
        let sae = Sae::load(&sae_path, args.hookpoint.as_deref(), &device, DType::F32)
            .with_context(|| format!("loading SAE {sae_spec}"))?;
        let text = &model.config.text_config;
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
            sae_id: sae_spec,
            sae_fingerprint,
        })
    }

    /// Token ids for an optional chat prompt around one image (the caching sequence without one).
    pub fn prompt_ids(&self, prompt: Option<&str>, with_image: bool) -> Result<Vec<u32>> {
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
            Some(path) => {
                let img = load_image(path, self.max_pixels)?;
                let proc = &self.model.processor;
                let pins = self.model.config.pinpoints();
                let patch = self.model.config.vision_config.patch_size as u32;
                Some(
                    preprocess(&img, proc, &pins, patch)
                        .with_context(|| format!("{}: preprocessing failed", path.display()))?,
                )
            }
            None => None,
        };
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

/// Config, hookpoint and a content sample (b_dec and the first encoder row) of an SAE.
fn sae_fingerprint(sae: &Sae) -> Result<String> {
    let mut fp = crate::util::hash::Fingerprint::new();
    fp.field(&serde_json::to_string(sae.cfg())?)
        .field(sae.hookpoint());
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
