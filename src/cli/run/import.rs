//! Runs `glint --batch import`: a cache made by the original system, opened as a store.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::args::{ImportArgs, ImportFormat, ModelArgs};
use crate::dataset::{Dataset, DatasetOptions};
use crate::model::anyres::ImageLayout;
use crate::model::config::LlavaNextConfig;
use crate::sae::SaeConfig;
use crate::sample;
use crate::store::{FeatureFilter, GLINT_VERSION, ImageRecord, Manifest, SCHEMA_VERSION};

/// A filter file into feature list `--list` of the existing store `--out`.
fn import_list(args: &ImportArgs) -> Result<()> {
    let Some(name) = &args.list else {
        bail!("--format filter reads a filter file into a feature list: name it with --list");
    };
    let store = crate::store::Store::open(&args.out)
        .with_context(|| format!("--out {}: the store to add the list to", args.out.display()))?;
    let text = std::fs::read_to_string(&args.from)
        .with_context(|| format!("{}: cannot read the filter file", args.from.display()))?;
    // The file's own order, for the list; the parsed filter checks its shape.
    FeatureFilter::from_seed_json(&text, &store.manifest().hookpoint)
        .with_context(|| format!("{}: bad filter file", args.from.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let mut ids: Vec<u32> = Vec::new();
    for f in v[&store.manifest().hookpoint]
        .as_array()
        .into_iter()
        .flatten()
    {
        let f = f.as_u64().unwrap_or_default() as u32;
        if !ids.contains(&f) {
            ids.push(f);
        }
    }
    let list = store.replace_list(name, &ids)?;
    println!(
        "list {name:?} of {} now holds {} features",
        args.out.display(),
        list.entries.len()
    );
    Ok(())
}

/// `glint --batch import`: reads only the model's and SAE's configs, never their weights.
pub fn run(model: &ModelArgs, args: &ImportArgs) -> Result<()> {
    if args.format == ImportFormat::Filter {
        return import_list(args);
    }
    let model_spec = model
        .model
        .clone()
        .unwrap_or_else(|| sample::default_model().display().to_string());
    let model_dir = crate::model::load::resolve_repo(&model_spec, &["config.json"])?;
    let cfg_path = model_dir.join("config.json");
    let cfg_text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("{}: cannot read", cfg_path.display()))?;
    let config = LlavaNextConfig::from_json(&cfg_text, &cfg_path.display().to_string())?;
    let sae_spec = model
        .sae
        .clone()
        .unwrap_or_else(|| sample::default_sae().display().to_string());
    let (sae_cfg, hookpoint) = read_sae_config(Path::new(&sae_spec), model.hookpoint.as_deref())?;
    let spec = args.dataset.clone().unwrap_or_else(sample::default_dataset);
    let dataset = Dataset::open(&spec, &DatasetOptions::default())?;
    let rank = args.rank;
    let layer = crate::sae::layer_of_hookpoint(&hookpoint)
        .with_context(|| format!("hookpoint {hookpoint} names no layer"))?;
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        glint_version: GLINT_VERSION.to_string(),
        model_id: model_spec,
        model_fingerprint: crate::util::hash::Fingerprint::new().field(&cfg_text).hex(),
        sae_id: sae_spec,
        sae_fingerprint: crate::util::hash::Fingerprint::new()
            .field(&sae_cfg.to_json()?)
            .hex(),
        hookpoint: hookpoint.clone(),
        layer,
        num_latents: sae_cfg.width(),
        k: sae_cfg.k,
        dataset: dataset.source.clone(),
        dataset_fingerprint: dataset.fingerprint(),
        preprocessing: serde_json::json!({"imported_from": args.from.display().to_string()}),
        rank,
        top_n: args.top_n,
        shard: None,
        features: FeatureFilter::All,
        tokens: Default::default(),
        range_sample: args.range_sample,
    };
    let pins = config.pinpoints();
    let (tile, patch) = (
        config.vision_config.image_size as u32,
        config.vision_config.patch_size as u32,
    );
    let mut record = |i: u32| -> Result<ImageRecord> {
        let item = &dataset.items[i as usize];
        let path = dataset.path(item);
        let (w, h) = image::image_dimensions(&path)
            .with_context(|| format!("{}: cannot read the image size", path.display()))?;
        let layout = ImageLayout::new((h, w), &pins, tile, patch)?;
        Ok(ImageRecord::new(
            i,
            item.id.clone(),
            item.rel.clone(),
            layout,
        ))
    };
    let store = crate::store::import_seed(
        &args.out,
        &args.from,
        &manifest,
        dataset.len() as u32,
        &mut record,
    )?;
    println!(
        "imported {} images into {}",
        store.progress()?.images,
        args.out.display()
    );
    Ok(())
}

/// An SAE's config and hookpoint without loading its weights.
fn read_sae_config(path: &Path, hookpoint: Option<&str>) -> Result<(SaeConfig, String)> {
    let dir = match hookpoint {
        Some(h) if path.join(h).is_dir() => path.join(h),
        _ => path.to_path_buf(),
    };
    let dir = if dir.join("cfg.json").is_file() {
        dir
    } else {
        let subs: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("{}: cannot list the SAE folder", dir.display()))?
            .flatten()
            .filter(|e| e.path().join("cfg.json").is_file())
            .collect();
        match subs.as_slice() {
            [one] => one.path(),
            _ => bail!(
                "{}: expected one hookpoint folder with cfg.json; pass --hookpoint",
                dir.display()
            ),
        }
    };
    let cfg_path = dir.join("cfg.json");
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("{}: cannot read", cfg_path.display()))?;
    let cfg = SaeConfig::from_json(&text)
        .with_context(|| format!("{}: bad SAE config", cfg_path.display()))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((cfg, name))
}
