//! Finding and loading a LLaVA-NeXT checkpoint: local folder or hub id, weight layouts, device, dtype.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::config::LlavaNextConfig;
use super::llava_next::LlavaNext;
use super::preprocess::ImageProcessorConfig;
use super::random::RandomWeights;
use super::tokenizer::PromptTokenizer;
use crate::util::file_hash::content_hash;
use crate::util::hash::Fingerprint;

/// Where to run and in which precision.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Device for weights and activations.
    pub device: Device,
    /// Compute dtype of the model.
    pub dtype: DType,
    /// Invent weights from this seed instead of reading them (benchmarks without weights).
    pub random_weights: Option<u64>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            random_weights: None,
        }
    }
}

/// A model with everything needed to feed it.
pub struct LoadedModel {
    /// The network.
    pub model: LlavaNext,
    /// Its configuration.
    pub config: LlavaNextConfig,
    /// Prompt tokenizer and chat template (absent for a bare config with random weights).
    pub tokenizer: Option<PromptTokenizer>,
    /// Image preprocessing settings.
    pub processor: ImageProcessorConfig,
    /// Folder the model came from (or the config's folder).
    pub dir: PathBuf,
    /// What the user named: a folder, hub id or config file.
    pub id: String,
    /// Fingerprint of config.json, the weight index (names, shapes, dtypes) and the bytes of
    /// every weight file.
    pub fingerprint: String,
}

impl LoadedModel {
    /// The tokenizer, or an error saying why a bare config has none.
    pub fn tokenizer(&self) -> Result<&PromptTokenizer> {
        self.tokenizer.as_ref().with_context(|| {
            format!(
                "model {}: no tokenizer.json next to the config; text prompts need one",
                self.id
            )
        })
    }
}

pub use super::device::parse_dtype;

/// Open the device named by `spec` (`cpu`, `cuda`, `cuda:N`).
pub fn parse_device(spec: &str) -> Result<Device> {
    spec.parse::<super::device::DeviceSpec>()?.open()
}

/// Resolve a model argument: an existing folder, or a hub id looked up in the Hugging Face cache
/// (downloaded when missing unless `HF_HUB_OFFLINE=1`).
pub fn resolve_repo(spec: &str, files: &[&str]) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        bail!("{spec}: expected a model folder or a hub id, found a file");
    }
    if !looks_like_hub_id(spec) {
        bail!("{spec}: no such folder (and not a hub id like owner/name)");
    }
    let cache = hub_cache();
    let repo = cache.model(spec.to_string());
    if let Some(found) = files.iter().find_map(|f| repo.get(f))
        && let Some(dir) = snapshot_dir(&found, files)
    {
        return Ok(dir);
    }
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") {
        bail!(
            "{spec}: not in the Hugging Face cache at {} and HF_HUB_OFFLINE=1; download it first or pass a local folder",
            cache.path().display()
        );
    }
    download(spec, files, &cache)
}

fn looks_like_hub_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    parts.len() == 2 && parts.iter().all(|p| !p.is_empty() && !p.starts_with('.'))
}

fn hub_cache() -> hf_hub::Cache {
    match std::env::var("HF_HUB_CACHE") {
        Ok(dir) => hf_hub::Cache::new(dir.into()),
        Err(_) => hf_hub::Cache::from_env(),
    }
}

/// The snapshot folder containing `file`, where `file` is one of `names` (which may be nested).
fn snapshot_dir(file: &Path, names: &[&str]) -> Option<PathBuf> {
    let rel = names.iter().find(|n| file.ends_with(n))?;
    let depth = Path::new(rel).components().count();
    let mut dir = file.to_path_buf();
    for _ in 0..depth {
        dir.pop();
    }
    Some(dir)
}

fn download(spec: &str, files: &[&str], cache: &hf_hub::Cache) -> Result<PathBuf> {
    let api = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
        .build()
        .with_context(|| format!("{spec}: cannot reach the Hugging Face hub"))?;
    let repo = api.model(spec.to_string());
    let mut first = None;
    for f in files {
        match repo.get(f) {
            Ok(p) => {
                first.get_or_insert(p);
            }
            Err(e) if f.ends_with(".json") && *f != "config.json" => {
                // Optional side files (templates, generation config) may not exist.
                let _ = e;
            }
            Err(e) => return Err(e).with_context(|| format!("{spec}: cannot download {f}")),
        }
    }
    let first = first.with_context(|| format!("{spec}: nothing could be downloaded"))?;
    snapshot_dir(&first, files).with_context(|| format!("{spec}: unexpected cache layout"))
}

/// Weight files of a model folder: sharded (`model.safetensors.index.json`) or single.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("{}: unreadable", index.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", index.display()))?;
        let map = json["weight_map"]
            .as_object()
            .with_context(|| format!("{}: no weight_map", index.display()))?;
        let mut shards: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        shards.sort();
        shards.dedup();
        return Ok(shards.into_iter().map(|s| dir.join(s)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    bail!(
        "{}: no model.safetensors or model.safetensors.index.json; is this a Hugging Face LLaVA-NeXT folder?",
        dir.display()
    )
}

/// Map a weight name in the older layout (which the model asks for) to the name present on disk.
///
/// transformers ≥ 4.52 saves `model.language_model.*`, `model.vision_tower.*`,
/// `model.multi_modal_projector.*`, `model.image_newline` and a top-level `lm_head`.
fn on_disk_name(requested: &str, present: &HashSet<String>) -> String {
    if present.contains(requested) {
        return requested.to_string();
    }
    let candidates = [
        requested
            .strip_prefix("language_model.model.")
            .map(|r| format!("model.language_model.{r}")),
        requested
            .strip_prefix("language_model.")
            .map(|r| r.to_string()),
        // transformers 5 saves the CLIP tower without its `vision_model.` segment.
        requested
            .strip_prefix("vision_tower.vision_model.")
            .map(|r| format!("vision_tower.{r}")),
        Some(format!("model.{requested}")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|c| present.contains(c))
        .unwrap_or_else(|| requested.to_string())
}

/// Load a model from a folder or hub id (or from a bare config.json with random weights).
pub fn load_model(spec: &str, opts: &LoadOptions) -> Result<LoadedModel> {
    let as_path = Path::new(spec);
    let (dir, config_path) = if as_path.is_file() {
        let dir = as_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        (dir, as_path.to_path_buf())
    } else {
        let files = [
            "config.json",
            "model.safetensors.index.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "preprocessor_config.json",
            "chat_template.json",
            "generation_config.json",
            "special_tokens_map.json",
        ];
        let dir = resolve_repo(spec, &files)?;
        let cfg = dir.join("config.json");
        (dir, cfg)
    };
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("{}: cannot read the model config", config_path.display()))?;
    let config = LlavaNextConfig::from_json(&text, &config_path.display().to_string())?;
    let processor = load_processor(&dir, &config)?;
    let tokenizer = if dir.join("tokenizer.json").exists() {
        Some(PromptTokenizer::from_dir(&dir, config.image_token_index)?)
    } else {
        None
    };
    let mut fp = Fingerprint::new();
    fp.field(&text);
    let (vb, fingerprint) = match opts.random_weights {
        Some(seed) => {
            fp.field(&format!("random:{seed}"));
            let backend = RandomWeights::new(seed);
            (
                VarBuilder::from_backend(Box::new(backend), opts.dtype, opts.device.clone()),
                fp.hex(),
            )
        }
        None => {
            let files = weight_files(&dir)?;
            // SAFETY: the files are memory-mapped read-only; glint never writes model files,
            // and a change by another process while loading would only corrupt this load.
            let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }
                .with_context(|| {
                    format!("{}: cannot read the safetensors weights", dir.display())
                })?;
            let mut names: Vec<(String, String)> = st
                .tensors()
                .into_iter()
                .map(|(n, v)| (n, format!("{:?}{:?}", v.shape(), v.dtype())))
                .collect();
            names.sort();
            for (n, s) in &names {
                fp.field(n).field(s);
            }
            // The bytes too: weights changed in place keep their names and shapes.
            for file in &files {
                fp.field(&content_hash(file)?);
            }
            let present: HashSet<String> = names.into_iter().map(|(n, _)| n).collect();
            let vb = VarBuilder::from_backend(Box::new(st), opts.dtype, opts.device.clone())
                .rename_f(move |name: &str| on_disk_name(name, &present));
            (vb, fp.hex())
        }
    };
    let model = LlavaNext::load(&config, vb).with_context(|| {
        let defaulted = config.defaulted_shape_keys(&text);
        if defaulted.is_empty() {
            format!(
                "{}: the weights do not match config.json (is this a LLaVA-NeXT checkpoint?)",
                dir.display()
            )
        } else {
            format!(
                "{}: the weights do not match config.json, which lacks {} (transformers' \
                 defaults, taken instead); add the checkpoint's values to config.json",
                config_path.display(),
                defaulted.join(", ")
            )
        }
    })?;
    Ok(LoadedModel {
        model,
        config,
        tokenizer,
        processor,
        dir,
        id: spec.to_string(),
        fingerprint,
    })
}

fn load_processor(dir: &Path, config: &LlavaNextConfig) -> Result<ImageProcessorConfig> {
    let path = dir.join("preprocessor_config.json");
    let mut proc = if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: unreadable", path.display()))?;
        ImageProcessorConfig::from_json(&text, &path.display().to_string())?
    } else {
        ImageProcessorConfig::from_json("{}", "default preprocessor")?
    };
    if proc.image_grid_pinpoints.is_none() {
        proc.image_grid_pinpoints = Some(config.image_grid_pinpoints.clone());
    }
    Ok(proc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_layout_names_are_found() {
        let present: HashSet<String> = [
            "model.language_model.layers.0.mlp.up_proj.weight",
            "lm_head.weight",
            "model.vision_tower.vision_model.embeddings.class_embedding",
            "model.image_newline",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            on_disk_name("language_model.model.layers.0.mlp.up_proj.weight", &present),
            "model.language_model.layers.0.mlp.up_proj.weight"
        );
        assert_eq!(
            on_disk_name("language_model.lm_head.weight", &present),
            "lm_head.weight"
        );
        assert_eq!(
            on_disk_name(
                "vision_tower.vision_model.embeddings.class_embedding",
                &present
            ),
            "model.vision_tower.vision_model.embeddings.class_embedding"
        );
        assert_eq!(
            on_disk_name("image_newline", &present),
            "model.image_newline"
        );
    }

    #[test]
    fn device_and_dtype_specs() {
        assert!(matches!(parse_device("cpu").unwrap(), Device::Cpu));
        assert!(parse_device("tpu").is_err());
        assert_eq!(parse_dtype("--dtype", "bf16").unwrap(), DType::BF16);
        assert!(
            parse_dtype("--sae-dtype", "f8")
                .unwrap_err()
                .to_string()
                .contains("--sae-dtype f8")
        );
    }

    #[test]
    fn hub_ids_are_recognised() {
        assert!(looks_like_hub_id("llava-hf/llama3-llava-next-8b-hf"));
        assert!(!looks_like_hub_id("./model"));
        assert!(!looks_like_hub_id("a/b/c"));
    }
}
