//! SAE-training throughput for `glint bench --train-steps N`: the real trainer on synthetic
//! rows at the benchmark's SAE size (d_in from the model, N latents, top-k).

use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use serde::Serialize;

use crate::sae::train::data::VecSource;
use crate::sae::train::{RunOptions, TrainConfig, train};
use crate::util::rng::SeededRng;

/// Rows per item and per optimizer step.
const ROWS_PER_ITEM: usize = 4096;
/// Items held in memory; the trainer cycles through them epoch after epoch.
const ITEMS: usize = 4;

/// Size of the benchmarked SAE.
#[derive(Debug, Clone)]
pub struct TrainBenchSpec {
    /// Row width.
    pub d_in: usize,
    /// Dictionary width.
    pub latents: usize,
    /// Latents kept per row.
    pub k: usize,
    /// Optimizer steps to run (the first third is warm-up and is not timed).
    pub steps: usize,
}

/// What the training benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    /// Rows per optimizer step.
    pub batch_rows: usize,
    /// Steps timed.
    pub timed_steps: u64,
    /// Training rows (tokens) per second over the timed steps.
    pub tokens_per_s: f64,
    /// FVU of the last logged step (synthetic Gaussian rows: only a sanity check).
    pub last_fvu: f64,
    /// Largest relative error of the step's sparse code products against the dense ones, on
    /// the same device.
    pub sparse_check: f64,
}

/// Train on synthetic rows and time the steps after warm-up.
pub fn run(spec: &TrainBenchSpec, device: &Device) -> Result<TrainBench> {
    let mut rng = SeededRng::new(7);
    let items = (0..ITEMS)
        .map(|_| {
            (0..ROWS_PER_ITEM * spec.d_in)
                .map(|_| rng.normal() as f32)
                .collect()
        })
        .collect();
    let mut source = VecSource {
        d: spec.d_in,
        items,
    };
    let steps = spec.steps.max(3) as u64;
    let cfg = TrainConfig {
        hookpoint: "bench".into(),
        d_in: spec.d_in,
        num_latents: spec.latents,
        k: spec.k,
        multi_topk: false,
        batch_rows: ROWS_PER_ITEM,
        buffer_rows: ROWS_PER_ITEM * ITEMS,
        lr: TrainConfig::default_lr(spec.latents),
        warmup_steps: 1,
        total_steps: steps,
        auxk_alpha: 1.0 / 32.0,
        dead_threshold: 10_000_000,
        max_grad_norm: 1.0,
        seed: 7,
        data: "bench".into(),
    };
    let work = tempfile_dir()?;
    let run = RunOptions {
        work_dir: work.clone(),
        export_dir: None,
        save_every: u64::MAX,
        log_every: 1,
        stop_after: None,
        resume: false,
        device: device.clone(),
    };
    let mut marks: Vec<(Instant, u64, u64, f64)> = Vec::new();
    let outcome = train(&mut source, (0..ITEMS).collect(), &cfg, &run, &mut |rec| {
        marks.push((Instant::now(), rec.step, rec.tokens, rec.fvu));
    });
    let _ = std::fs::remove_dir_all(&work);
    outcome?;
    let from = marks.len() / 3;
    let (Some(first), Some(last)) = (marks.get(from), marks.last()) else {
        anyhow::bail!("the training benchmark logged no steps");
    };
    let seconds = last.0.duration_since(first.0).as_secs_f64().max(1e-9);
    // GLINT_PROFILE=1: where a step's time went, warm-up steps included.
    for (name, s, n) in crate::util::phases::take() {
        eprintln!("  {name:<40} {:>9.2} ms a step", 1e3 * s / n.max(1) as f64);
    }
    let sparse_check = crate::sae::train::sparse::check_against_dense(device)?;
    if sparse_check.is_nan() || sparse_check >= 1e-3 {
        anyhow::bail!(
            "the sparse code products differ from the dense ones by {sparse_check:e} on this \
             device; the training step cannot be trusted here"
        );
    }
    Ok(TrainBench {
        batch_rows: ROWS_PER_ITEM,
        timed_steps: last.1 - first.1,
        tokens_per_s: (last.2 - first.2) as f64 / seconds,
        last_fvu: last.3,
        sparse_check,
    })
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("glint-train-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
