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
use crate::store::{Aggregator, FeatureFilter, ImageRecord, RankRule};

use crate::generate::PreparedPrompt;
use crate::session::Session;

pub mod attribute;
pub mod flash_check;
pub mod kernels;
pub mod pages;
pub mod setup;
pub mod train;

pub use setup::{TopkCheck, bench_image, random_sae_on_device};
use setup::{check_topk, gpu_used_bytes};

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
    /// Decode steps timed per generation (0 skips the decode benchmark).
    pub decode_tokens: usize,
    /// Optimizer steps of the SAE-training benchmark (0 skips it).
    pub train_steps: usize,
    /// Time attribution (one forward and backward) against the per-latent ablation loop.
    pub attribute: bool,
}

/// Measured figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Device description.
    pub device: String,
    /// Model dtype.
    pub dtype: String,
    /// SAE dtype.
    pub sae_dtype: String,
    /// Image tokens of the 672x672 image.
    pub image_tokens: usize,
    /// Sequence length (BOS + image).
    pub seq_len: usize,
    /// Seconds to build or load the model and SAE.
    pub load_s: f64,
    /// Forward to the tap alone (vision + layers 0..=L), images/s: the in-run baseline.
    pub forward_to_tap_img_per_s: f64,
    /// Full caching step (forward to tap + SAE top-k + aggregation on a host thread alongside),
    /// images/s.
    pub cache_img_per_s: f64,
    /// Host aggregation of one image's codes into the top-example lists, seconds.
    pub aggregate_s: f64,
    /// Cache step time over forward time (1.0 = no overhead).
    pub cache_overhead_ratio: f64,
    /// SAE encode of the image tokens alone, seconds per image.
    pub sae_encode_s: f64,
    /// Vision tower, projector and embedding of the sequence, seconds per image.
    pub vision_embed_s: f64,
    /// Decoder layers up to the tap, seconds per image.
    pub layers_to_tap_s: f64,
    /// Whether the fused kernels ran (`GLINT_FUSED=0` turns them off).
    pub fused_kernels: bool,
    /// The device top-k against the host top-k of the same pre-activations (accelerators only).
    pub topk_check: Option<TopkCheck>,
    /// The decoder-layer kernels against composed f32 ops on this card (CUDA only).
    pub kernel_check: Option<kernels::KernelCheck>,
    /// Flash attention against attention composed in f32 on the same card (CUDA only).
    pub flash_check: Option<flash_check::FlashCheck>,
    /// Prefill of the whole model to last-position logits, seconds.
    pub prefill_s: f64,
    /// Greedy decode tokens/s with the image prompt, unsteered.
    pub decode_tok_per_s: Option<f64>,
    /// The same with the original's steering (SAE reconstruction replaces the tapped residual
    /// at every position, one feature set).
    pub decode_steered_tok_per_s: Option<f64>,
    /// SAE training throughput on synthetic rows at the benchmark's SAE size.
    pub train: Option<train::TrainBench>,
    /// Attribution of one item on the benchmark's prompt and image.
    pub attribute: Option<attribute::AttributeBench>,
    /// Peak resident host memory, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Peak GPU memory used during the run, bytes (from nvidia-smi), if on a GPU.
    pub peak_gpu_bytes: Option<u64>,
}

fn sync(device: &Device) -> Result<()> {
    device.synchronize().context("device synchronise")
}

/// The reference pipeline's prompt: BOS, 10 text tokens, the image, 20 text tokens.
fn bench_ids(bos: u32, image: u32, vocab: usize) -> Vec<u32> {
    let text = |r: std::ops::Range<u32>| r.map(move |i| i % vocab as u32);
    std::iter::once(bos)
        .chain(text(1000..1010))
        .chain(std::iter::once(image))
        .chain(text(2000..2020))
        .collect()
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
    let ids = bench_ids(bos, cfg.image_token_index, cfg.text_config.vocab_size);
    let model = &loaded.model;
    let layer = opts.layer;
    let images = [ImageInput {
        pixel_values: &pre.pixel_values,
        layout: &pre.layout,
    }];
    let forward = || -> Result<Tensor> {
        let (embeds, _) = model.embed_sequence(&ids, &images)?;
        let out = model.forward(&embeds, 0, None, ForwardOptions::to_tap(layer))?;
        Ok(out.tapped.context("no tapped residual")?.squeeze(0)?)
    };
    // Image tokens other than newlines, as the cache scores them, by sequence position.
    let (_, seq) = model.embed_sequence(&ids, &images)?;
    let keep = crate::session::encode::scored_tokens(
        &seq,
        &pre.layout,
        crate::session::encode::TokenSelection::Image,
    )
    .positions;
    let first_image = seq.image_positions(0).first().copied().unwrap_or(0) as u32;
    let keep_t = Tensor::new(keep.as_slice(), &opts.device)?;
    let mut agg = Aggregator::new(opts.latents, 50, RankRule::Max, FeatureFilter::All)?;

    // Warm-up (kernel compilation, allocator).
    let h = forward()?;
    sae.encode(&h.index_select(&keep_t, 0)?)?;
    sync(&opts.device)?;
    note_gpu(&opts.device);
    let topk_check = if opts.device.is_cpu() {
        None
    } else {
        let rows = h.index_select(&keep_t, 0)?;
        let rows = rows.narrow(0, 0, rows.dim(0)?.min(64))?;
        Some(check_topk(&sae, &rows)?)
    };

    let tc = &cfg.text_config;
    let layer_shape = kernels::LayerShape {
        rows: seq.tokens.len(),
        hidden: tc.hidden_size,
        inter: tc.intermediate_size,
        heads: tc.num_attention_heads,
        kv_heads: tc.kv_heads(),
        head_dim: tc.head_dim(),
    };
    let kernel_check = kernels::check(&opts.device, opts.dtype, &layer_shape)?;
    let vc = &cfg.vision_config;
    let attention_shapes = flash_check::AttentionShapes {
        tokens: seq.tokens.len(),
        heads: tc.num_attention_heads,
        kv_heads: tc.kv_heads(),
        head_dim: tc.head_dim(),
        crops: pre.pixel_values.dim(0)?,
        vision_tokens: (vc.image_size / vc.patch_size).pow(2) + 1,
        vision_heads: vc.num_attention_heads,
        vision_head_dim: vc.hidden_size / vc.num_attention_heads,
    };
    let flash_check = flash_check::check(&opts.device, opts.dtype, &attention_shapes)?;

    let t = Instant::now();
    for _ in 0..opts.images {
        forward()?;
        sync(&opts.device)?;
    }
    let fwd_s = t.elapsed().as_secs_f64() / opts.images as f64;
    note_gpu(&opts.device);

    // The forward's two halves, each timed on its own.
    let (mut vision_s, mut layers_s) = (0.0, 0.0);
    for _ in 0..opts.images {
        let t = Instant::now();
        let (embeds, _) = model.embed_sequence(&ids, &images)?;
        sync(&opts.device)?;
        vision_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        model.forward(&embeds, 0, None, ForwardOptions::to_tap(layer))?;
        sync(&opts.device)?;
        layers_s += t.elapsed().as_secs_f64();
    }

    // The caching step as `glint --batch cache` runs it: the device encodes image i + 1 while a
    // host thread folds image i into the top-example lists.
    let (mut enc_total, t) = (0.0, Instant::now());
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u32, Vec<Vec<f32>>, Vec<Vec<u32>>)>(2);
    let aggregate_total = std::thread::scope(|scope| -> Result<f64> {
        let n_tokens = pre.layout.num_image_tokens() as u32;
        let base_tokens = pre.layout.base_tokens();
        let tokens: Vec<u16> = keep.iter().map(|t| (t - first_image) as u16).collect();
        let (keep, agg) = (&keep, &mut agg);
        let folder = scope.spawn(move || -> Result<f64> {
            let mut busy = 0.0;
            for (i, values, indices) in rx {
                let ta = Instant::now();
                let acts = crate::session::encode::sparse_acts(&tokens, &values, &indices);
                let record = ImageRecord {
                    index: i,
                    id: format!("bench-{i}"),
                    path: String::new(),
                    width: 672,
                    height: 672,
                    layout: None,
                    n_tokens,
                    top_features: Vec::new(),
                };
                agg.add_image(record, &acts, base_tokens, keep.len())?;
                busy += ta.elapsed().as_secs_f64();
            }
            Ok(busy)
        });
        for i in 0..opts.images {
            let h = forward()?;
            sync(&opts.device)?;
            let te = Instant::now();
            let codes = sae.encode(&h.index_select(&keep_t, 0)?)?;
            let values = codes.values.to_vec2::<f32>()?;
            let indices = codes.indices.to_vec2::<u32>()?;
            enc_total += te.elapsed().as_secs_f64();
            if tx.send((i as u32, values, indices)).is_err() {
                break;
            }
        }
        drop(tx);
        folder
            .join()
            .map_err(|_| anyhow::anyhow!("the aggregation thread panicked"))?
    })?;
    sync(&opts.device)?;
    let cache_s = t.elapsed().as_secs_f64() / opts.images as f64;
    note_gpu(&opts.device);

    // Prefill as the reference times it: vision, embedding and every layer to the last logits.
    let prefill = || -> Result<usize> {
        let (embeds, map) = model.embed_sequence(&ids, &images)?;
        let out = model.forward(&embeds, 0, None, ForwardOptions::last_logits(None))?;
        out.logits
            .context("no logits")?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        Ok(map.len())
    };
    prefill()?;
    let t = Instant::now();
    let seq_len = prefill()?;
    let prefill_s = t.elapsed().as_secs_f64();
    note_gpu(&opts.device);

    let attribution = if opts.attribute {
        // Two ordinary token ids stand in for the answer and baseline words.
        let vocab = cfg.text_config.vocab_size as u32;
        let pair = (1234 % vocab, 5678 % vocab);
        Some(attribute::run(&loaded, &sae, layer, &ids, &pre, pair)?)
    } else {
        None
    };
    note_gpu(&opts.device);

    let session = Session {
        model: loaded,
        sae,
        layer,
        max_pixels: u64::MAX,
        max_file_bytes: u64::MAX,
        sae_id: "random".into(),
        sae_fingerprint: String::new(),
    };
    let (decode, decode_steered) = if opts.decode_tokens > 0 {
        let (plain, steered) = bench_decode(&session, &ids, opts.decode_tokens)?;
        (Some(plain), Some(steered))
    } else {
        (None, None)
    };
    note_gpu(&opts.device);
    let train = if opts.train_steps > 0 {
        let d = session.model.config.text_config.hidden_size;
        let spec = train::TrainBenchSpec {
            d_in: d,
            latents: opts.latents,
            k: opts.k,
            steps: opts.train_steps,
        };
        Some(train::run(&spec, &opts.device)?)
    } else {
        None
    };
    note_gpu(&opts.device);

    let report = BenchReport {
        device: format!("{:?}", opts.device),
        dtype: format!("{:?}", opts.dtype),
        sae_dtype: format!("{:?}", opts.sae_dtype),
        image_tokens: pre.layout.num_image_tokens(),
        seq_len,
        load_s,
        forward_to_tap_img_per_s: 1.0 / fwd_s,
        cache_img_per_s: 1.0 / cache_s,
        cache_overhead_ratio: cache_s / fwd_s,
        sae_encode_s: enc_total / opts.images as f64,
        aggregate_s: aggregate_total / opts.images as f64,
        vision_embed_s: vision_s / opts.images as f64,
        layers_to_tap_s: layers_s / opts.images as f64,
        fused_kernels: !crate::kernels::fused_disabled(),
        topk_check,
        kernel_check,
        flash_check,
        decode_tok_per_s: decode,
        decode_steered_tok_per_s: decode_steered,
        train,
        attribute: attribution,
        prefill_s,
        peak_rss_bytes: super::cache::peak_rss_bytes(),
        peak_gpu_bytes: peak_gpu,
    };
    Ok((report, session.model))
}

/// Decode tokens/s on the bench image's prompt, plain and with the original's steering
/// (`replace`: feature 123, or 0 in small SAEs, set to 50, the layer output replaced by the
/// SAE reconstruction at every position).
fn bench_decode(session: &Session, ids: &[u32], tokens: usize) -> Result<(f64, f64)> {
    let path = std::env::temp_dir().join(format!("glint-bench-{}.png", std::process::id()));
    bench_image()
        .save(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let prompt = PreparedPrompt::from_ids(session, ids.to_vec(), Some(&path));
    let _ = std::fs::remove_file(&path);
    let feature = if session.sae.num_latents() > 123 {
        123
    } else {
        0
    };
    super::steer::bench_decode_prompt(
        session,
        &prompt?,
        tokens,
        crate::sae::intervene::Mode::Replace,
        feature,
        50.0,
    )
}
