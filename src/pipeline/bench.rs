//! `glint bench`: caching throughput, prefill latency and memory on one 672x672 image.
//!
//! Every figure is printed next to a baseline measured in the same run (the forward alone), so
//! ratios stay meaningful across machines. Random weights make the 8B shapes runnable anywhere.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::model::llava_next::ImageInput;
use crate::model::load::{LoadOptions, LoadedModel, load_model};
use crate::model::preprocess::preprocess;
use crate::model::tap::ForwardOptions;
use crate::sae::{Sae, SaeConfig};
use crate::store::{Aggregator, FeatureFilter, ImageRecord, RankRule};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Model folder or config.json.
    pub model: String,
    /// Invent weights from this seed.
    pub random_weights: Option<u64>,
    /// Device.
    pub device: Device,
    /// Model dtype.
    pub dtype: DType,
    /// SAE dtype.
    pub sae_dtype: DType,
    /// SAE latents (random SAE).
    pub latents: usize,
    /// SAE top-k.
    pub k: usize,
    /// Tapped layer.
    pub layer: usize,
    /// Timed images (after one warm-up).
    pub images: usize,
}

/// Measured figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Device description.
    pub device: String,
    /// Model dtype.
    pub dtype: String,
    /// Image tokens of the 672x672 image.
    pub image_tokens: usize,
    /// Sequence length (BOS + image).
    pub seq_len: usize,
    /// Seconds to build or load the model and SAE.
    pub load_s: f64,
    /// Forward to the tap alone (vision + layers 0..=L), images/s: the in-run baseline.
    pub forward_to_tap_img_per_s: f64,
    /// Full caching step (forward to tap + SAE top-k + aggregation), images/s.
    pub cache_img_per_s: f64,
    /// Cache step time over forward time (1.0 = no overhead).
    pub cache_overhead_ratio: f64,
    /// SAE encode of the image tokens alone, seconds per image.
    pub sae_encode_s: f64,
    /// Prefill of the whole model to last-position logits, seconds.
    pub prefill_s: f64,
    /// Peak resident host memory, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Peak GPU memory used during the run, bytes (from nvidia-smi), if on a GPU.
    pub peak_gpu_bytes: Option<u64>,
}

fn sync(device: &Device) -> Result<()> {
    device.synchronize().context("device synchronise")
}

/// A deterministic 672x672 test image (gradients and blocks).
pub fn bench_image() -> image::DynamicImage {
    let img = image::RgbImage::from_fn(672, 672, |x, y| {
        let block = ((x / 96 + y / 96) % 3) as u8;
        image::Rgb([(x / 3) as u8, (y / 3) as u8, 80 * block])
    });
    image::DynamicImage::ImageRgb8(img)
}

/// A random SAE built directly on the device.
pub fn random_sae_on_device(
    d: usize,
    n: usize,
    k: usize,
    layer: usize,
    dtype: DType,
    device: &Device,
) -> Result<Sae> {
    let mut cfg = SaeConfig::new(d);
    cfg.num_latents = n;
    cfg.k = k;
    let scale = 1.0 / (d as f64).sqrt();
    let w_enc = (Tensor::randn(0f32, 1f32, (n, d), device)? * scale)?.to_dtype(dtype)?;
    let w_dec = w_enc.clone();
    let b_enc = Tensor::zeros(n, dtype, device)?;
    let b_dec = Tensor::zeros(d, dtype, device)?;
    Sae::from_tensors(
        cfg,
        format!("model.layers.{layer}"),
        w_enc,
        b_enc,
        w_dec,
        b_dec,
    )
}

fn gpu_used_bytes(device: &Device) -> Option<u64> {
    let Device::Cuda(_) = device else { return None };
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mib: u64 = text.lines().next()?.trim().parse().ok()?;
    Some(mib * 1024 * 1024)
}

/// Run the benchmark.
pub fn run_bench(opts: &BenchOptions) -> Result<(BenchReport, LoadedModel)> {
    let t0 = Instant::now();
    let lo = LoadOptions {
        device: opts.device.clone(),
        dtype: opts.dtype,
        random_weights: opts.random_weights,
    };
    let loaded = load_model(&opts.model, &lo)?;
    let hidden = loaded.config.text_config.hidden_size;
    let sae = random_sae_on_device(
        hidden,
        opts.latents,
        opts.k,
        opts.layer,
        opts.sae_dtype,
        &opts.device,
    )?;
    sync(&opts.device)?;
    let load_s = t0.elapsed().as_secs_f64();
    let mut peak_gpu = gpu_used_bytes(&opts.device);
    let mut note_gpu = |d: &Device| {
        if let Some(now) = gpu_used_bytes(d) {
            peak_gpu = Some(peak_gpu.unwrap_or(0).max(now));
        }
    };

    let img = bench_image();
    let cfg = &loaded.config;
    let pre = preprocess(
        &img,
        &loaded.processor,
        &cfg.pinpoints(),
        cfg.vision_config.patch_size as u32,
    )?;
    let bos = cfg.text_config.bos_token_id.unwrap_or(1);
    let ids = vec![bos, cfg.image_token_index];
    let model = &loaded.model;
    let layer = opts.layer;
    let forward = || -> Result<Tensor> {
        let images = [ImageInput {
            pixel_values: &pre.pixel_values,
            layout: &pre.layout,
        }];
        let (embeds, _) = model.embed_sequence(&ids, &images)?;
        let out = model.forward(&embeds, 0, None, ForwardOptions::to_tap(layer))?;
        Ok(out.tapped.context("no tapped residual")?.squeeze(0)?)
    };
    // Image tokens other than newlines, as the cache scores them.
    let geometry = pre.layout.tokens();
    let keep: Vec<u32> = geometry
        .iter()
        .enumerate()
        .filter(|(_, t)| t.kind != crate::model::anyres::TokenKind::Newline)
        .map(|(i, _)| i as u32 + 1)
        .collect();
    let keep_t = Tensor::new(keep.as_slice(), &opts.device)?;
    let mut agg = Aggregator::new(opts.latents, 50, RankRule::Max, FeatureFilter::All)?;

    // Warm-up (kernel compilation, allocator).
    let h = forward()?;
    sae.encode(&h.index_select(&keep_t, 0)?)?;
    sync(&opts.device)?;
    note_gpu(&opts.device);

    let t = Instant::now();
    for _ in 0..opts.images {
        forward()?;
        sync(&opts.device)?;
    }
    let fwd_s = t.elapsed().as_secs_f64() / opts.images as f64;
    note_gpu(&opts.device);

    let (mut enc_total, t) = (0.0, Instant::now());
    for i in 0..opts.images {
        let h = forward()?;
        let te = Instant::now();
        let codes = sae.encode(&h.index_select(&keep_t, 0)?)?;
        let values = codes.values.to_vec2::<f32>()?;
        let indices = codes.indices.to_vec2::<u32>()?;
        enc_total += te.elapsed().as_secs_f64();
        let mut acts = Vec::new();
        for (r, tok) in keep.iter().enumerate() {
            for (f, v) in indices[r].iter().zip(&values[r]) {
                if *v > 1e-5 {
                    acts.push(((*tok - 1) as u16, *f, *v));
                }
            }
        }
        let record = ImageRecord {
            index: i as u32,
            id: format!("bench-{i}"),
            path: String::new(),
            width: 672,
            height: 672,
            layout: serde_json::Value::Null,
            n_tokens: pre.layout.num_image_tokens() as u32,
            top_features: Vec::new(),
        };
        agg.add_image(record, &acts, pre.layout.base_tokens(), keep.len())?;
    }
    sync(&opts.device)?;
    let cache_s = t.elapsed().as_secs_f64() / opts.images as f64;
    note_gpu(&opts.device);

    let images = [ImageInput {
        pixel_values: &pre.pixel_values,
        layout: &pre.layout,
    }];
    let (embeds, map) = model.embed_sequence(&ids, &images)?;
    model.forward(&embeds, 0, None, ForwardOptions::last_logits(None))?;
    sync(&opts.device)?;
    let t = Instant::now();
    let out = model.forward(&embeds, 0, None, ForwardOptions::last_logits(None))?;
    out.logits
        .context("no logits")?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    let prefill_s = t.elapsed().as_secs_f64();
    note_gpu(&opts.device);

    let report = BenchReport {
        device: format!("{:?}", opts.device),
        dtype: format!("{:?}", opts.dtype),
        image_tokens: pre.layout.num_image_tokens(),
        seq_len: map.len(),
        load_s,
        forward_to_tap_img_per_s: 1.0 / fwd_s,
        cache_img_per_s: 1.0 / cache_s,
        cache_overhead_ratio: cache_s / fwd_s,
        sae_encode_s: enc_total / opts.images as f64,
        prefill_s,
        peak_rss_bytes: super::cache::peak_rss_bytes(),
        peak_gpu_bytes: peak_gpu,
    };
    Ok((report, loaded))
}
