//! `glint train`: train a TopK SAE on a model's residual stream over an image dataset, then
//! measure it: held-out FVU and L0, dead latents, and (for datasets with masks) how many
//! features' activation maps match a labelled region.

pub mod report;
pub mod source;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};

use crate::dataset::{Dataset, DatasetOptions};
use crate::heatmap::Upsample;
use crate::model::load::{LoadOptions, load_model};
use crate::sae::Sae;
use crate::sae::evaluate::{EvalOptions, ImageRank, MapGrid};
use crate::sae::train::data::{Plan, RowSource};
use crate::sae::train::{LOG_FILE, RunOptions, STATE_FILE, TrainConfig, heldout_metrics, train};
use crate::session::ModelSpec;
use crate::session::encode::TokenSelection;
use crate::util::hash::Fingerprint;
use crate::util::rng::SeededRng;
pub use report::{
    FEATURES_FILE, FeatureReport, HeldOutReport, REPORT_FILE, TrainReport, format_report,
    progress_line,
};
use report::{evaluate_features, silent, write_report};
use source::ModelSource;

/// What `glint --batch train` is asked to do.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Images: a JSONL manifest (masks in it enable the feature check) or a folder. Defaults to the
    /// sample shapes.
    pub dataset: Option<PathBuf>,
    /// Use only the first N images.
    pub limit: Option<usize>,
    /// Root the SAE is written to, as <out>/model.layers.<L>/{cfg.json, sae.safetensors}.
    pub out: PathBuf,
    /// Folder for the checkpoint, log, report and activation cache (default: --out).
    pub work: Option<PathBuf>,
    /// Decoder layer whose output is read (default: the middle layer).
    pub layer: Option<usize>,
    /// Dictionary width (default: 32 x the hidden size).
    pub latents: Option<usize>,
    /// Latents kept per token.
    pub k: usize,
    /// Optimizer steps (default: one epoch).
    pub steps: Option<u64>,
    /// Passes over the training images.
    pub epochs: Option<u64>,
    /// Tokens per optimizer step (a batch holds between this and twice this many).
    pub batch_tokens: usize,
    /// Tokens gathered (whole images) before shuffling.
    pub buffer_tokens: usize,
    /// Peak learning rate (default: 2e-4 / sqrt(latents / 2^14)).
    pub lr: Option<f64>,
    /// Linear warm-up steps (default: a tenth of the run, at most 1000).
    pub warmup_steps: Option<u64>,
    /// Weight of the AuxK loss on dead latents (0 turns it off).
    pub auxk_alpha: f64,
    /// A latent idle for more than this many tokens counts as dead.
    pub dead_threshold: u64,
    /// Add the multi-TopK (4k) loss term.
    pub multi_topk: bool,
    /// Seed of the initialisation, data order and held-out split.
    pub seed: u64,
    /// Which positions are training tokens.
    pub tokens: TokenSelection,
    /// Images held out of training to measure FVU on.
    pub holdout: usize,
    /// Checkpoint every N steps (and at the end).
    pub save_every: u64,
    /// Progress line and log record every N steps.
    pub log_every: u64,
    /// Stop after N steps in this invocation (with a checkpoint); --resume continues.
    pub stop_after: Option<u64>,
    /// Continue the run checkpointed in the work folder (same options).
    pub resume: bool,
    /// Discard a checkpoint, log and report already in the work folder.
    pub force: bool,
    /// Keep the activations on disk (<work>/activations) so the model runs once per image.
    pub cache_activations: bool,
    /// Skip training; evaluate the SAE already in --out.
    pub eval_only: bool,
    /// Skip the feature-mask evaluation.
    pub no_eval: bool,
    /// Grid of the activation maps in the feature evaluation.
    pub eval_grid: MapGrid,
    /// Upsampling of the activation maps to pixels in the feature evaluation.
    pub eval_upsample: Upsample,
    /// A map pixel is active above this fraction of the image's maximum activation.
    pub eval_threshold: f32,
    /// Ranking of a feature's images in the feature evaluation.
    pub eval_rank: ImageRank,
    /// Top images per feature in the feature evaluation.
    pub eval_top: usize,
}

/// Train (or evaluate) as `args` asks, printing progress to stderr.
pub fn run_train(model_args: &ModelSpec, args: &TrainOptions) -> Result<TrainReport> {
    let spec = args
        .dataset
        .clone()
        .unwrap_or_else(crate::sample::default_dataset);
    let dataset = Dataset::open(
        &spec,
        &DatasetOptions {
            limit: args.limit,
            shuffle_seed: None,
            split: None,
        },
    )?;
    let device = model_args.device.open()?;
    let opts = LoadOptions {
        device: device.clone(),
        dtype: model_args.dtype,
        random_weights: model_args.random_weights,
    };
    let model_spec = model_args.model_or_sample();
    let model =
        load_model(&model_spec, &opts).with_context(|| format!("loading model {model_spec}"))?;
    let layers = model.config.text_config.num_hidden_layers;
    let layer = args.layer.unwrap_or(layers / 2);
    if layer >= layers {
        bail!(
            "--layer {layer} is out of range: {model_spec} has {layers} decoder layers (0..{})",
            layers - 1
        );
    }
    let hookpoint = format!("model.layers.{layer}");
    let (train_items, held) = split(dataset.len(), args.holdout, args.seed)?;
    let work = args.work.clone().unwrap_or_else(|| args.out.clone());
    if args.force {
        for name in [STATE_FILE, LOG_FILE, REPORT_FILE, FEATURES_FILE] {
            let path = work.join(name);
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    let cache = args.cache_activations.then(|| work.join("activations"));
    let mut source = ModelSource::new(
        &model,
        &dataset,
        layer,
        args.tokens,
        model_args.max_pixels,
        cache,
    )?;

    let mut report = TrainReport::new(args.out.join(&hookpoint), train_items.len());
    let sae = if args.eval_only {
        Sae::load(&args.out, Some(&hookpoint), &device, DType::F32)
            .with_context(|| format!("--eval-only reads the SAE in {}", args.out.display()))?
    } else {
        let ctx = Fit {
            args,
            hookpoint: &hookpoint,
            work: &work,
            device: &device,
        };
        match fit(&ctx, &mut source, train_items, &mut report)? {
            Some(sae) => sae,
            None => {
                eprintln!("stopped at step {}; continue with --resume", report.step);
                write_report(&work, &report)?;
                return Ok(report);
            }
        }
    };

    if !held.is_empty() {
        let h = heldout_metrics(&sae, &mut source, &held)?;
        report.heldout = Some(HeldOutReport {
            images: held.len(),
            tokens: h.rows,
            fvu: h.fvu,
            l0: h.l0,
        });
        report.silent_fraction = Some(silent(&h.fired));
        report.silent_images = held.len();
    }
    if !args.no_eval && args.tokens != TokenSelection::Text {
        let opts = EvalOptions {
            grid: args.eval_grid,
            top_images: args.eval_top,
            rank: args.eval_rank,
            upsample: args.eval_upsample,
            threshold: args.eval_threshold,
            pass_iou: 0.5,
        };
        if let Some((features, fired)) =
            evaluate_features(&sae, &mut source, &dataset, &spec, &opts)?
        {
            report.silent_fraction = Some(silent(&fired));
            report.silent_images = features.images;
            report.features = Some(features);
        }
    }
    write_report(&work, &report)?;
    Ok(report)
}

/// Where a training run writes and what it was asked for.
struct Fit<'a> {
    args: &'a TrainOptions,
    hookpoint: &'a str,
    work: &'a PathBuf,
    device: &'a Device,
}

/// Train (or resume) and fill in `report`; the SAE when the run finished, `None` when stopped.
fn fit(
    ctx: &Fit<'_>,
    source: &mut ModelSource<'_>,
    items: Vec<usize>,
    report: &mut TrainReport,
) -> Result<Option<Sae>> {
    let args = ctx.args;
    let d_in = source.d_in();
    let num_latents = args.latents.unwrap_or(d_in * 32);
    let plan = Plan::new(
        source,
        items.clone(),
        args.batch_tokens,
        args.buffer_tokens,
        args.seed,
    )?;
    report.tokens_per_epoch = plan.rows_per_epoch();
    let total_steps = match (args.steps, args.epochs) {
        (Some(s), _) => s,
        (None, e) => plan.steps_in(e.unwrap_or(1)),
    };
    let mut data = Fingerprint::new();
    data.field(&source.fingerprint())
        .field(&format!("{items:?}"));
    let cfg = TrainConfig {
        hookpoint: ctx.hookpoint.to_string(),
        d_in,
        num_latents,
        k: args.k,
        multi_topk: args.multi_topk,
        batch_rows: args.batch_tokens,
        buffer_rows: args.buffer_tokens,
        lr: args
            .lr
            .unwrap_or_else(|| TrainConfig::default_lr(num_latents)),
        warmup_steps: args.warmup_steps.unwrap_or((total_steps / 10).min(1000)),
        total_steps,
        auxk_alpha: args.auxk_alpha,
        dead_threshold: args.dead_threshold,
        max_grad_norm: 1.0,
        seed: args.seed,
        data: data.hex(),
    };
    let run = RunOptions {
        work_dir: ctx.work.clone(),
        export_dir: Some(args.out.clone()),
        save_every: args.save_every,
        log_every: args.log_every,
        stop_after: args.stop_after,
        resume: args.resume,
        device: ctx.device.clone(),
    };
    eprintln!(
        "training {}: {num_latents} latents, k {}, {total_steps} steps over {} images \
         ({} tokens an epoch), lr {:.3e}",
        ctx.hookpoint,
        cfg.k,
        items.len(),
        report.tokens_per_epoch,
        cfg.lr
    );
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last = None;
    let outcome = train(source, items, &cfg, &run, &mut |r| {
        if tty {
            eprint!("\r\x1b[2K{}", progress_line(r));
        } else {
            eprintln!("{}", progress_line(r));
        }
        last = Some(r.clone());
    });
    if tty {
        eprintln!();
    }
    let outcome = outcome?;
    report.train_seconds = started.elapsed().as_secs_f64();
    report.step = outcome.state.step;
    report.finished = outcome.finished;
    report.dead_fraction = Some(outcome.state.dead_fraction());
    report.last_log = last;
    report.config = Some(cfg);
    Ok(outcome.finished.then_some(outcome.sae))
}

/// Held-out and training item indices: `holdout` items drawn with the seed, both sorted.
fn split(len: usize, holdout: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if holdout >= len {
        bail!("--holdout {holdout} leaves no training images (the dataset has {len})");
    }
    let mut order: Vec<usize> = (0..len).collect();
    SeededRng::for_name(seed, "sae-train/holdout").shuffle(&mut order);
    let mut held = order[..holdout].to_vec();
    let mut train = order[holdout..].to_vec();
    held.sort_unstable();
    train.sort_unstable();
    Ok((train, held))
}
