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

use crate::cli::{EvalGrid, EvalRank, EvalUpsample, ModelArgs, TrainArgs, TrainTokens};
use crate::model::load::{LoadOptions, load_model, parse_device, parse_dtype};
use crate::pipeline::dataset::{Dataset, DatasetOptions};
use crate::sae::Sae;
use crate::sae::evaluate::{EvalOptions, ImageRank, MapGrid, Upsample};
use crate::sae::train::data::{Plan, RowSource};
use crate::sae::train::{LOG_FILE, RunOptions, STATE_FILE, TrainConfig, heldout_metrics, train};
use crate::util::hash::Fingerprint;
use crate::util::rng::SeededRng;
pub use report::{
    FEATURES_FILE, FeatureReport, HeldOutReport, REPORT_FILE, TrainReport, format_report,
    progress_line,
};
use report::{evaluate_features, silent, write_report};
use source::ModelSource;

/// Run `glint train` with `args`, printing progress to stderr.
pub fn run_train(model_args: &ModelArgs, args: &TrainArgs) -> Result<TrainReport> {
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
    let device = parse_device(&model_args.device)?;
    let opts = LoadOptions {
        device: device.clone(),
        dtype: parse_dtype(&model_args.dtype)?,
        random_weights: model_args.random_weights,
    };
    let model_spec = model_args
        .model
        .clone()
        .unwrap_or_else(|| crate::sample::default_model().display().to_string());
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
    if !args.no_eval && args.tokens != TrainTokens::Text {
        let opts = EvalOptions {
            grid: match args.eval_grid {
                EvalGrid::Base => MapGrid::Base,
                EvalGrid::Highres => MapGrid::HighRes,
                EvalGrid::Auto => MapGrid::Auto,
            },
            top_images: args.eval_top,
            rank: match args.eval_rank {
                EvalRank::Mean => ImageRank::Mean,
                EvalRank::Max => ImageRank::Max,
            },
            upsample: match args.eval_upsample {
                EvalUpsample::Nearest => Upsample::Nearest,
                EvalUpsample::Bilinear => Upsample::Bilinear,
            },
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
    args: &'a TrainArgs,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> (ModelArgs, TrainArgs) {
        let cli = Cli::try_parse_from([&["glint", "--batch", "train"], args].concat()).unwrap();
        match cli.command {
            Some(Command::Train(t)) => (cli.model, t),
            other => panic!("not a train command: {other:?}"),
        }
    }

    /// A few steps on one sample image (another held out), then the same SAE evaluated again with
    /// --eval-only.
    #[test]
    fn trains_on_sample_images_and_reevaluates() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, work) = (tmp.path().join("out"), tmp.path().join("work"));
        let dataset = crate::sample::default_dataset();
        let common = [
            "--dataset",
            dataset.to_str().unwrap(),
            "--limit",
            "2",
            "--holdout",
            "1",
            "--latents",
            "32",
            "--k",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--work",
            work.to_str().unwrap(),
            "--cache-activations",
        ];
        let extra = [
            "--steps",
            "6",
            "--batch-tokens",
            "256",
            "--buffer-tokens",
            "1024",
            "--log-every",
            "2",
        ];
        let (m, a) = parse(&[&common[..], &extra[..]].concat());
        let r = run_train(&m, &a).unwrap();
        assert!(r.finished && r.step == 6 && r.train_images == 1, "{r:?}");
        assert_eq!(r.sae_dir, out.join("model.layers.2"));
        let h = r.heldout.clone().unwrap();
        assert!(
            h.fvu.is_finite() && h.fvu > 0.0 && h.l0 <= 4.0 && h.tokens > 500,
            "{h:?}"
        );
        let f = r.features.clone().unwrap();
        assert_eq!(f.images, 2);
        assert!(f.summary.scored > 0);
        let cached = std::fs::read_dir(work.join("activations")).unwrap().count();
        assert_eq!(cached, 3, "two images and the cache key");
        let text = std::fs::read_to_string(work.join(REPORT_FILE)).unwrap();
        assert!(text.contains("\"heldout\""), "{text}");
        assert!(format_report(&r).contains("held-out: 1 images"));

        let (m, a) = parse(&[&common[..], &["--eval-only"][..]].concat());
        let again = run_train(&m, &a).unwrap();
        assert!(again.config.is_none());
        assert_eq!(again.heldout.unwrap().fvu, h.fvu);
        assert_eq!(again.features.unwrap().summary.scored, f.summary.scored);

        let (m, a) = parse(&[
            "--dataset",
            dataset.to_str().unwrap(),
            "--limit",
            "2",
            "--holdout",
            "2",
            "--out",
            "x",
        ]);
        assert!(
            run_train(&m, &a)
                .unwrap_err()
                .to_string()
                .contains("no training images")
        );
    }
}
