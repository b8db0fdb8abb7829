//! `glint train`: train a TopK SAE on a model's residual stream over an image dataset, then
//! measure it: held-out FVU and L0, dead latents, and (for datasets with masks) how many
//! features' activation maps match a labelled region.

pub mod source;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use serde::Serialize;

use crate::cli::{EvalGrid, ModelArgs, TrainArgs, TrainTokens};
use crate::model::load::{LoadOptions, load_model, parse_device, parse_dtype};
use crate::pipeline::dataset::{Dataset, DatasetOptions};
use crate::sae::Sae;
use crate::sae::evaluate::{EvalOptions, EvalSummary, ImageActivations, ImageTruth, MapGrid, score_features, summarize};
use crate::sae::train::data::{Plan, RowSource};
use crate::sae::train::{LOG_FILE, LogRecord, RunOptions, STATE_FILE, TrainConfig, heldout_metrics, train};
use crate::sample::shapes::read_manifest;
use crate::util::hash::Fingerprint;
use crate::util::rng::SeededRng;
use source::{ModelSource, RowTag};

/// File name of the run summary inside the work folder.
pub const REPORT_FILE: &str = "report.json";

/// Held-out reconstruction numbers.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOutReport {
    /// Held-out images.
    pub images: usize,
    /// Their tokens.
    pub tokens: usize,
    /// FVU over all of them together.
    pub fvu: f64,
    /// Mean active latents per token.
    pub l0: f64,
}

/// How the features matched the ground-truth regions.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureReport {
    /// Grid of the activation maps (`Base` or `HighRes`).
    pub grid: MapGrid,
    /// Activation threshold as a fraction of each image's maximum.
    pub threshold: f32,
    /// Images per feature.
    pub top_images: usize,
    /// Mean IOU counted as a match.
    pub pass_iou: f64,
    /// Images evaluated.
    pub images: usize,
    /// The counts and the matching features.
    pub summary: EvalSummary,
}

/// Everything `glint train` measured, also written to `<work>/report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Folder holding `cfg.json` and `sae.safetensors`.
    pub sae_dir: PathBuf,
    /// The run settings (absent for `--eval-only`).
    pub config: Option<TrainConfig>,
    /// Optimizer steps taken.
    pub step: u64,
    /// Whether the run reached its last step.
    pub finished: bool,
    /// Training images.
    pub train_images: usize,
    /// Training tokens per epoch.
    pub tokens_per_epoch: usize,
    /// Seconds spent in this invocation's training loop.
    pub train_seconds: f64,
    /// The last training log record.
    pub last_log: Option<LogRecord>,
    /// Latents past the dead threshold at the end of training.
    pub dead_fraction: Option<f64>,
    /// Latents that fired on no token of the evaluated images.
    pub silent_fraction: Option<f64>,
    /// Held-out FVU and L0 (with `--holdout`).
    pub heldout: Option<HeldOutReport>,
    /// Feature-region matches (for manifests with masks).
    pub features: Option<FeatureReport>,
}

/// Run `glint train` with `args`, printing progress to stderr.
pub fn run_train(model_args: &ModelArgs, args: &TrainArgs) -> Result<TrainReport> {
    let spec = args.dataset.clone().unwrap_or_else(crate::sample::default_dataset);
    let dataset = Dataset::open(&spec, &DatasetOptions { limit: args.limit, shuffle_seed: None })?;
    let device = parse_device(&model_args.device)?;
    let opts = LoadOptions { device: device.clone(), dtype: parse_dtype(&model_args.dtype)?, random_weights: model_args.random_weights };
    let model_spec = model_args.model.clone().unwrap_or_else(|| crate::sample::default_model().display().to_string());
    let model = load_model(&model_spec, &opts).with_context(|| format!("loading model {model_spec}"))?;
    let layers = model.config.text_config.num_hidden_layers;
    let layer = args.layer.unwrap_or(layers / 2);
    if layer >= layers {
        bail!("--layer {layer} is out of range: {model_spec} has {layers} decoder layers (0..{})", layers - 1);
    }
    let hookpoint = format!("model.layers.{layer}");
    let (train_items, held) = split(dataset.len(), args.holdout, args.seed)?;
    let work = args.work.clone().unwrap_or_else(|| args.out.clone());
    if args.force {
        for name in [STATE_FILE, LOG_FILE, REPORT_FILE] {
            let path = work.join(name);
            if path.exists() {
                std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    let cache = args.cache_activations.then(|| work.join("activations"));
    let mut source = ModelSource::new(&model, &dataset, layer, args.tokens, model_args.max_pixels, cache)?;

    let mut report = TrainReport {
        sae_dir: args.out.join(&hookpoint),
        config: None,
        step: 0,
        finished: true,
        train_images: train_items.len(),
        tokens_per_epoch: 0,
        train_seconds: 0.0,
        last_log: None,
        dead_fraction: None,
        silent_fraction: None,
        heldout: None,
        features: None,
    };
    let sae = if args.eval_only {
        Sae::load(&args.out, Some(&hookpoint), &device, candle_core::DType::F32)
            .with_context(|| format!("--eval-only reads the SAE in {}", args.out.display()))?
    } else {
        let d_in = source.d_in();
        let num_latents = args.latents.unwrap_or(d_in * 32);
        let plan = Plan::new(&mut source, train_items.clone(), args.batch_tokens, args.buffer_tokens, args.seed)?;
        report.tokens_per_epoch = plan.rows_per_epoch();
        let total_steps = match (args.steps, args.epochs) {
            (Some(s), _) => s,
            (None, e) => plan.steps_in(e.unwrap_or(1)),
        };
        let mut data = Fingerprint::new();
        data.field(&source.fingerprint()).field(&format!("{train_items:?}"));
        let cfg = TrainConfig {
            hookpoint: hookpoint.clone(),
            d_in,
            num_latents,
            k: args.k,
            multi_topk: args.multi_topk,
            batch_rows: args.batch_tokens,
            buffer_rows: args.buffer_tokens,
            lr: args.lr.unwrap_or_else(|| TrainConfig::default_lr(num_latents)),
            warmup_steps: args.warmup_steps.unwrap_or((total_steps / 10).min(1000)),
            total_steps,
            auxk_alpha: args.auxk_alpha,
            dead_threshold: args.dead_threshold,
            max_grad_norm: 1.0,
            seed: args.seed,
            data: data.hex(),
        };
        let run = RunOptions {
            work_dir: work.clone(),
            export_dir: Some(args.out.clone()),
            save_every: args.save_every,
            log_every: args.log_every,
            stop_after: args.stop_after,
            resume: args.resume,
            device: device.clone(),
        };
        eprintln!(
            "training {hookpoint}: {num_latents} latents, k {}, {} steps over {} images ({} tokens an epoch), lr {:.3e}",
            cfg.k,
            cfg.total_steps,
            train_items.len(),
            report.tokens_per_epoch,
            cfg.lr
        );
        let started = Instant::now();
        let tty = std::io::stderr().is_terminal();
        let mut last = None;
        let outcome = train(&mut source, train_items.clone(), &cfg, &run, &mut |r| {
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
        if !outcome.finished {
            eprintln!("stopped at step {}; continue with --resume", outcome.state.step);
            write_report(&work, &report)?;
            return Ok(report);
        }
        outcome.sae
    };

    if !held.is_empty() {
        let h = heldout_metrics(&sae, &mut source, &held)?;
        report.heldout = Some(HeldOutReport { images: held.len(), tokens: h.rows, fvu: h.fvu, l0: h.l0 });
        report.silent_fraction = Some(silent(&h.fired));
    }
    if !args.no_eval && args.tokens != TrainTokens::Text {
        let opts = EvalOptions {
            grid: match args.eval_grid {
                EvalGrid::Base => MapGrid::Base,
                EvalGrid::Highres => MapGrid::HighRes,
            },
            top_images: args.eval_top,
            threshold: args.eval_threshold,
            pass_iou: 0.5,
        };
        if let Some((features, fired)) = evaluate_features(&sae, &mut source, &dataset, &spec, &opts)? {
            report.silent_fraction = Some(silent(&fired));
            report.features = Some(features);
        }
    }
    write_report(&work, &report)?;
    Ok(report)
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

fn silent(fired: &[bool]) -> f64 {
    fired.iter().filter(|&&f| !f).count() as f64 / fired.len().max(1) as f64
}

/// One line of live progress.
pub fn progress_line(r: &LogRecord) -> String {
    format!(
        "step {}/{}  epoch {}  fvu {:.4}  l0 {:.2}  dead {:.1}%  auxk {:.3}  lr {:.2e}  {:.0} tok/s",
        r.step,
        r.total_steps,
        r.epoch,
        r.fvu,
        r.l0,
        100.0 * r.dead_fraction,
        r.auxk,
        r.lr,
        r.tokens_per_s
    )
}

/// Score features on every image of a manifest with masks; `None` when there are no masks.
fn evaluate_features(
    sae: &Sae,
    source: &mut ModelSource<'_>,
    dataset: &Dataset,
    spec: &Path,
    opts: &EvalOptions,
) -> Result<Option<(FeatureReport, Vec<bool>)>> {
    if spec.is_dir() {
        return Ok(None);
    }
    let entries = read_manifest(spec)?;
    let mut images = Vec::new();
    let mut fired = vec![false; sae.num_latents()];
    for (i, item) in dataset.items.iter().enumerate() {
        let Some(entry) = entries.iter().find(|e| e.id == item.id).filter(|e| !e.objects.is_empty()) else {
            continue;
        };
        let truth = ImageTruth::from_manifest(entry, &dataset.root)?;
        let (_, tags) = source.tags(i)?;
        let rows = source.rows(i)?;
        let x = Tensor::from_vec(rows, (tags.len(), sae.d_in()), sae.device())?;
        let codes = sae.encode(&x)?;
        let values = codes.values.to_vec2::<f32>()?;
        let indices = codes.indices.to_vec2::<u32>()?;
        let mut acts = Vec::new();
        for (r, tag) in tags.iter().enumerate() {
            for (&f, &v) in indices[r].iter().zip(&values[r]) {
                if v > 0.0 {
                    fired[f as usize] = true;
                    if let RowTag::Image(t) = tag {
                        acts.push((*t, f, v));
                    }
                }
            }
        }
        images.push(ImageActivations { layout: source.layout(i)?, truth, acts });
    }
    if images.is_empty() {
        return Ok(None);
    }
    let scores = score_features(&images, opts)?;
    let report = FeatureReport {
        grid: opts.grid,
        threshold: opts.threshold,
        top_images: opts.top_images,
        pass_iou: opts.pass_iou,
        images: images.len(),
        summary: summarize(&scores, opts.pass_iou),
    };
    Ok(Some((report, fired)))
}

fn write_report(work: &Path, report: &TrainReport) -> Result<()> {
    let path = work.join(REPORT_FILE);
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    std::fs::write(&path, serde_json::to_string_pretty(report)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Human-readable summary of a report.
pub fn format_report(r: &TrainReport) -> String {
    let mut out = format!("SAE {} (step {})\n", r.sae_dir.display(), r.step);
    if let Some(h) = &r.heldout {
        out += &format!("held-out: {} images, {} tokens, FVU {:.4}, L0 {:.2}\n", h.images, h.tokens, h.fvu, h.l0);
    }
    if let Some(d) = r.dead_fraction {
        out += &format!("dead latents (training counter): {:.1}%\n", 100.0 * d);
    }
    if let Some(s) = r.silent_fraction {
        out += &format!("latents firing on no evaluated token: {:.1}%\n", 100.0 * s);
    }
    if let Some(f) = &r.features {
        let s = &f.summary;
        out += &format!(
            "features matching a region at mean IOU >= {} over their top {} images ({:?} grid, threshold {}):\n  \
             object or colour {} (object {}, colour {}), shape {}, of {} scored\n",
            f.pass_iou, f.top_images, f.grid, f.threshold, s.object_or_colour, s.object, s.colour, s.shape, s.scored
        );
        for (feature, kind, name, iou) in s.matches.iter().take(12) {
            out += &format!("  {feature:>6}  {:<7} {name:<16} {iou:.3}\n", format!("{kind:?}").to_lowercase());
        }
    }
    out
}
