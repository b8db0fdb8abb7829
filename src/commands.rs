//! Glue from parsed command lines to pipeline jobs, with their terminal output.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::{BenchArgs, CacheArgs, ExportArgs, ImportArgs, MergeArgs, ModelArgs};
use crate::model::anyres::ImageLayout;
use crate::model::config::LlavaNextConfig;
use crate::pipeline::cache::{CacheOptions, run_cache};
use crate::pipeline::dataset::{Dataset, DatasetOptions, Shard};
use crate::pipeline::session::Session;
use crate::sae::SaeConfig;
use crate::sample;
use crate::store::{
    FeatureFilter, GLINT_VERSION, ImageRecord, Manifest, RankRule, SCHEMA_VERSION, Store,
};

/// The feature filter named by `--features A..B` or `--filter file.json`.
pub fn feature_filter(
    range: Option<&str>,
    file: Option<&Path>,
    hookpoint: &str,
) -> Result<FeatureFilter> {
    match (range, file) {
        (Some(r), _) => FeatureFilter::parse_range(r).with_context(|| format!("--features {r}")),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("{}: cannot read the filter file", f.display()))?;
            FeatureFilter::from_seed_json(&text, hookpoint)
                .with_context(|| format!("{}: bad filter file", f.display()))
        }
        (None, None) => Ok(FeatureFilter::All),
    }
}

/// `glint --batch cache`.
pub fn cache(model: &ModelArgs, args: &CacheArgs) -> Result<()> {
    let session = Session::open(model, None)?;
    let spec = args.dataset.clone().unwrap_or_else(sample::default_dataset);
    let opts = DatasetOptions {
        limit: args.limit,
        shuffle_seed: args.shuffle.then_some(args.seed),
        split: args.split.clone(),
    };
    let dataset = Dataset::open(&spec, &opts)?;
    let shard = match &args.shard {
        Some(s) => Some(Shard::parse(s)?),
        None => Shard::from_env(|k| std::env::var(k).ok())?,
    };
    let features = feature_filter(
        args.features.as_deref(),
        args.filter.as_deref(),
        session.sae.hookpoint(),
    )?;
    let rank: RankRule = args
        .rank
        .parse()
        .with_context(|| format!("--rank {}", args.rank))?;
    let opts = CacheOptions {
        out: args.out.clone(),
        top_n: args.top_n,
        rank,
        features,
        shard,
        commit_every: args.commit_every,
        progress_bar: std::io::stderr().is_terminal() && !args.json,
    };
    let summary = run_cache(&session, &dataset, &opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "cached {} images ({} resumed, {} skipped) into {} · {:.2} images/s · {:.0} tokens/s · store {:.1} MB, {:.0} KB/image",
            summary.images_done,
            summary.images_resumed,
            summary.skipped.len(),
            summary.store,
            summary.images_per_second,
            summary.tokens_per_second,
            summary.store_bytes as f64 / 1e6,
            summary.store_bytes_per_image / 1e3
        );
        let st = &summary.stages;
        println!(
            "  busy seconds per stage: waiting for images {:.1} · device {:.1} · aggregation {:.1} · commits {:.1} built, {:.1} written",
            st.wait_for_images_s,
            st.device_s,
            st.aggregate_s,
            st.commit_prepare_s,
            st.commit_write_s
        );
        for s in &summary.skipped {
            println!("  skipped {} ({}): {}", s.index, s.path, s.reason);
        }
    }
    Ok(())
}

/// `glint --batch merge`.
pub fn merge(args: &MergeArgs) -> Result<()> {
    let store = crate::store::merge(&args.out, &args.shards)?;
    let p = store.progress()?;
    println!(
        "merged {} shards into {}: {} images",
        args.shards.len(),
        args.out.display(),
        p.images
    );
    Ok(())
}

/// `glint --batch export`.
pub fn export(args: &ExportArgs) -> Result<()> {
    if matches!(args.format.as_str(), "csv" | "json") {
        return crate::score::export::run(args);
    }
    if args.format != "seed" {
        bail!(
            "--format {}: use seed (the original system's layout), csv or json",
            args.format
        );
    }
    let store = Store::open(&args.store)?;
    let files =
        crate::store::export_seed(&store, &args.out, args.n_splits, args.reproduce_split_bug)?;
    println!("wrote {} files under {}", files.len(), args.out.display());
    Ok(())
}

/// `glint --batch import`: reads only the model's and SAE's configs, never their weights.
pub fn import(model: &ModelArgs, args: &ImportArgs) -> Result<()> {
    if args.format != "seed" {
        bail!(
            "--format {}: only `seed` (the original system's layout) is supported",
            args.format
        );
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
    let rank: RankRule = args
        .rank
        .parse()
        .with_context(|| format!("--rank {}", args.rank))?;
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
        Ok(ImageRecord {
            index: i,
            id: item.id.clone(),
            path: item.rel.clone(),
            width: w,
            height: h,
            n_tokens: layout.num_image_tokens() as u32,
            layout: serde_json::to_value(&layout)?,
            top_features: Vec::new(),
        })
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

/// `glint bench`.
pub fn bench(model: &ModelArgs, args: &BenchArgs) -> Result<()> {
    use crate::model::load::{parse_device, parse_dtype};
    if let Some(crate::cli::BenchPart::Store(a)) = &args.part {
        return bench_store(a);
    }
    use crate::pipeline::bench::{BenchOptions, run_bench};
    let spec = args
        .config
        .clone()
        .or_else(|| model.model.clone())
        .unwrap_or_else(|| {
            sample::sample_root()
                .join("configs/llama3-llava-next-8b.json")
                .display()
                .to_string()
        });
    let dtype = parse_dtype(&model.dtype)?;
    let sae_dtype = match &args.sae_dtype {
        Some(d) => parse_dtype(d)?,
        None => dtype,
    };
    // A bare config has no weights: random ones are implied.
    let random = model
        .random_weights
        .or(spec.ends_with(".json").then_some(0));
    let text = if spec.ends_with(".json") {
        std::fs::read_to_string(&spec).with_context(|| format!("{spec}: cannot read"))?
    } else {
        std::fs::read_to_string(Path::new(&spec).join("config.json"))
            .with_context(|| format!("{spec}/config.json: cannot read"))?
    };
    let layers = LlavaNextConfig::from_json(&text, &spec)?
        .text_config
        .num_hidden_layers;
    let opts = BenchOptions {
        model: spec,
        random_weights: random,
        device: parse_device(&model.device)?,
        dtype,
        sae_dtype,
        latents: args.latents,
        k: args.k,
        layer: args.layer.unwrap_or(24.min(layers - 1)),
        images: args.images.max(1),
        decode_tokens: args.decode_tokens,
        train_steps: args.train_steps,
        attribute: args.attribute,
    };
    let (report, _loaded) = run_bench(&opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "device {} · {} · {} image tokens, {} positions",
            report.device, report.dtype, report.image_tokens, report.seq_len
        );
        println!("load                   {:>10.2} s", report.load_s);
        println!(
            "forward to tap         {:>10.2} images/s   (baseline)",
            report.forward_to_tap_img_per_s
        );
        println!(
            "cache step             {:>10.2} images/s   ({:.2}x the forward's time)",
            report.cache_img_per_s, report.cache_overhead_ratio
        );
        println!(
            "SAE encode             {:>10.4} s/image",
            report.sae_encode_s
        );
        println!(
            "  vision + embedding   {:>10.4} s/image",
            report.vision_embed_s
        );
        println!(
            "  layers to the tap    {:>10.4} s/image",
            report.layers_to_tap_s
        );
        println!("prefill (full model)   {:>10.4} s", report.prefill_s);
        if let (Some(p), Some(s)) = (report.decode_tok_per_s, report.decode_steered_tok_per_s) {
            println!("decode                 {p:>10.2} tokens/s   steered {s:.2} tokens/s");
        }
        if let Some(a) = &report.attribute {
            println!(
                "attribution            {:>10.3} s        ({} latents; per-latent ablation loop {:.0} s, {:.0}x)",
                a.total_s, a.active_latents, a.per_latent_loop_s, a.speedup
            );
        }
        if let Some(t) = &report.train {
            println!(
                "SAE training           {:>10.0} tokens/s   ({} steps of {} rows)",
                t.tokens_per_s, t.timed_steps, t.batch_rows
            );
        }
        println!(
            "fused kernels          {}",
            if report.fused_kernels {
                "on"
            } else {
                "off (GLINT_FUSED=0)"
            }
        );
        if let Some(b) = report.peak_rss_bytes {
            println!("peak host memory       {:>10.2} GB", b as f64 / 1e9);
        }
        if let Some(b) = report.peak_gpu_bytes {
            println!("peak GPU memory        {:>10.2} GB", b as f64 / 1e9);
        }
    }
    Ok(())
}

/// `glint bench store`.
fn bench_store(a: &crate::cli::StoreBenchArgs) -> Result<()> {
    use crate::store::bench::{StoreBenchOptions, run_store_bench};
    let r = run_store_bench(&StoreBenchOptions {
        latents: a.latents,
        k: a.k,
        tokens: a.tokens,
        images: a.images,
        top_n: a.top_n,
        profile: a.profile,
        seed: a.seed,
        commit_every: a.commit_every,
        out: a.out.clone(),
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let rate = |x: &Option<crate::store::bench::Rates>| {
        x.as_ref()
            .map_or("-".into(), |r| format!("{:.2}", r.images_per_second))
    };
    println!(
        "store bench ({:?}, {} latents, k {}, {} tokens, {} images, top {}): {:.2} images/s \
         ({:.2e} codes/s); first 10% {} images/s, last 10% {}",
        r.profile,
        r.latents,
        r.k,
        r.tokens,
        r.images,
        r.top_n,
        r.overall.images_per_second,
        r.overall.codes_per_second,
        rate(&r.first_10pct),
        rate(&r.last_10pct)
    );
    let d = &r.disk;
    println!(
        "  written {:.1} MB ({:.0} KB/image) · store {:.1} MB ({:.0} KB/image) · examples listed \
         {}, most stored {} (bound {})",
        r.bytes_written as f64 / 1e6,
        r.bytes_written_per_image / 1e3,
        d.store_bytes as f64 / 1e6,
        d.store_bytes_per_image / 1e3,
        d.listed_examples,
        d.most_stored_examples,
        d.stored_examples_bound
    );
    let s = &r.stages;
    println!(
        "  busy seconds: codes {:.1} · aggregation {:.1} · commits {:.1} built, {:.1} written",
        r.generate_s, s.aggregate_s, s.commit_prepare_s, s.commit_write_s
    );
    Ok(())
}
