//! Training a TopK SAE with the sparsify recipe: rows streamed through a bounded shuffle buffer,
//! `b_dec` at the geometric median of the first buffer, unit-norm decoder rows, FVU + AuxK
//! (+ multi-TopK) loss, Adam with warm-up, dead latents counted in tokens since they last fired.
//!
//! Deterministic for a fixed seed on one machine: the data order derives from the seed alone and
//! a checkpoint holds everything else, so a resumed run ends with the same parameters, bit for
//! bit, as an uninterrupted one.

pub mod data;
pub mod grad;
pub mod metrics;
pub mod optim;
pub mod sparse;
pub mod state;
#[cfg(test)]
pub(crate) mod tests;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::sae::{Sae, SaeConfig};
use crate::util::phases;
use data::{Buffer, Plan, Position, RowSource};
use grad::{LossOptions, Params, loss_and_grads};
pub use metrics::{HeldOut, LogRecord, heldout_metrics};
use metrics::{Window, open_log};
use optim::{
    Adam, clip_grad_norm, geometric_median, lr_at, normalize_rows, remove_parallel_component,
};
pub use state::{STATE_FILE, TrainState};

/// File name of the JSONL training log inside the work folder.
pub const LOG_FILE: &str = "train_log.jsonl";

/// Everything that determines the trained parameters; a resume must match it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Hookpoint name of the SAE, e.g. `model.layers.2`.
    pub hookpoint: String,
    /// Row width (the model's hidden size).
    pub d_in: usize,
    /// Dictionary width N.
    pub num_latents: usize,
    /// Latents kept per row.
    pub k: usize,
    /// Add the multi-TopK term.
    pub multi_topk: bool,
    /// Rows per optimizer step (batches hold between this and twice this many).
    pub batch_rows: usize,
    /// Rows gathered before shuffling (whole items, so a little more).
    pub buffer_rows: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Optimizer steps of the whole run (the schedule decays to 0 there).
    pub total_steps: u64,
    /// Weight of the AuxK term.
    pub auxk_alpha: f64,
    /// A latent idle for more than this many rows is dead.
    pub dead_threshold: u64,
    /// Gradient-norm clip.
    pub max_grad_norm: f64,
    /// Seed of the initialisation and the data order.
    pub seed: u64,
    /// Fingerprint of the rows (model, layer, token kinds, dataset, split), set by the caller.
    pub data: String,
}

impl TrainConfig {
    /// The recipe's automatic learning rate, `2e-4 / sqrt(N / 2^14)`.
    pub fn default_lr(num_latents: usize) -> f64 {
        2e-4 / (num_latents as f64 / 16384.0).sqrt()
    }

    /// The `cfg.json` the trained SAE is saved with.
    pub fn sae_config(&self) -> SaeConfig {
        SaeConfig {
            num_latents: self.num_latents,
            k: self.k,
            multi_topk: self.multi_topk,
            ..SaeConfig::new(self.d_in)
        }
    }

    fn check(&self) -> Result<()> {
        self.sae_config()
            .validate()
            .context("SAE training config")?;
        if self.total_steps == 0 {
            bail!("nothing to train: the run has 0 steps");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("the learning rate must be positive, not {}", self.lr);
        }
        Ok(())
    }
}

/// How one invocation runs (none of it changes the trained parameters).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Folder for the checkpoint and the JSONL log.
    pub work_dir: PathBuf,
    /// Root the SAE folder (`<hookpoint>/`) is exported to at every checkpoint.
    pub export_dir: Option<PathBuf>,
    /// Checkpoint every this many steps (and at the end).
    pub save_every: u64,
    /// Log every this many steps.
    pub log_every: u64,
    /// Stop (with a checkpoint) after this many steps in this invocation.
    pub stop_after: Option<u64>,
    /// Continue from the checkpoint in `work_dir`.
    pub resume: bool,
    /// Device of the SAE and its optimizer.
    pub device: Device,
}

/// What a call to [`train`] ended with.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The SAE as of the last step.
    pub sae: Sae,
    /// The full trainer state (saved to the work folder).
    pub state: TrainState,
    /// Whether the run reached `total_steps` (false when stopped early).
    pub finished: bool,
}

/// Train (or continue training) an SAE on `items` of `source`.
pub fn train(
    source: &mut dyn RowSource,
    items: Vec<usize>,
    cfg: &TrainConfig,
    run: &RunOptions,
    on_log: &mut dyn FnMut(&LogRecord),
) -> Result<TrainOutcome> {
    cfg.check()?;
    if source.d_in() != cfg.d_in {
        bail!(
            "the activations have width {} but the SAE expects d_in = {}; the model's hidden size \
             and the SAE config disagree",
            source.d_in(),
            cfg.d_in
        );
    }
    std::fs::create_dir_all(&run.work_dir)
        .with_context(|| format!("cannot create training folder {}", run.work_dir.display()))?;
    let state_path = run.work_dir.join(STATE_FILE);
    let plan = Plan::new(source, items, cfg.batch_rows, cfg.buffer_rows, cfg.seed)?;
    let mut loaded: Option<((u64, usize), Buffer)> = None;
    let mut state = if run.resume {
        if !state_path.is_file() {
            bail!("nothing to resume: {} does not exist", state_path.display());
        }
        let st = TrainState::load(&state_path, &run.device)?;
        check_same_config(&st.config, cfg, &state_path)?;
        st
    } else {
        if state_path.exists() {
            bail!(
                "{} already holds a training run; pass --resume to continue it, or --force to start over",
                run.work_dir.display()
            );
        }
        let (st, buf) = fresh_state(source, &plan, cfg, &run.device)?;
        loaded = Some(((0, 0), buf));
        st
    };
    let mut log = open_log(
        &run.work_dir.join(LOG_FILE),
        run.resume.then_some(state.step),
    )?;

    let opts = LossOptions {
        k: cfg.k,
        auxk_alpha: cfg.auxk_alpha,
        multi_topk: cfg.multi_topk,
    };
    let started = Instant::now();
    let (start_step, start_tokens) = (state.step, state.tokens);
    let mut window = Window::default();
    let mut last_saved = state.step;
    let mut epoch_chunks = (u64::MAX, Vec::new());
    while state.step < cfg.total_steps {
        if epoch_chunks.0 != state.position.epoch {
            epoch_chunks = (state.position.epoch, plan.epoch(state.position.epoch));
        }
        let chunks = &epoch_chunks.1;
        let pos = plan.normalise(state.position, chunks);
        if pos != state.position {
            state.position = pos;
            continue;
        }
        let key = (pos.epoch, pos.chunk);
        if loaded.as_ref().map(|(k, _)| *k) != Some(key) {
            drop(loaded.take()); // free the old chunk before reading the next
            loaded = Some((
                key,
                plan.load(source, &chunks[pos.chunk], pos.epoch, pos.chunk)?,
            ));
        }
        let buffer = &loaded.as_ref().expect("chunk loaded above").1;
        let (s, e) = chunks[pos.chunk].batch_range(pos.batch);
        let x = buffer.batch(s, e, &run.device)?;
        let lr = lr_at(state.step, cfg.lr, cfg.warmup_steps, cfg.total_steps);
        let (loss, grad_norm) = train_step(&mut state, &x, &opts, lr)
            .with_context(|| format!("step {} of {}", state.step + 1, cfg.total_steps))
            .with_context(|| checkpoint_note(last_saved, &state_path))?;
        state.position.batch += 1;
        window.add(&loss, grad_norm);
        let done = state.step == cfg.total_steps;
        let stop = run.stop_after.is_some_and(|n| state.step - start_step >= n);
        if state.step % run.log_every.max(1) == 0 || done || stop {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            let record = window.record(&state, lr, (state.tokens - start_tokens) as f64 / secs);
            writeln!(log, "{}", serde_json::to_string(&record)?)?;
            log.flush()?;
            on_log(&record);
        }
        if state.step % run.save_every.max(1) == 0 || done || stop {
            state.position = plan.normalise(state.position, chunks);
            save_checkpoint(&state, &state_path, run)?;
            last_saved = state.step;
        }
        if stop {
            break;
        }
    }
    if last_saved != state.step {
        save_checkpoint(&state, &state_path, run)?;
    }
    let sae = state.params.to_sae(cfg.sae_config(), &cfg.hookpoint)?;
    let finished = state.step >= cfg.total_steps;
    Ok(TrainOutcome {
        sae,
        state,
        finished,
    })
}

/// One optimizer step on batch `x`; returns the loss and the gradient norm before clipping.
fn train_step(
    state: &mut TrainState,
    x: &Tensor,
    opts: &LossOptions,
    lr: f64,
) -> Result<(grad::BatchLoss, f64)> {
    let dev = x.device();
    phases::mark(dev, "step: batch and bookkeeping");
    let dead = state.dead_mask();
    let (loss, mut g) = loss_and_grads(&state.params, x, opts, Some(&dead))?;
    if !loss.total.is_finite() {
        bail!(
            "the loss is {} (FVU {}); training diverged (try a lower --lr)",
            loss.total,
            loss.fvu
        );
    }
    phases::mark(dev, "loss: statistics to the host");
    let grad_norm = clip_grad_norm(&mut g, state.config.max_grad_norm)?;
    phases::mark(dev, "step: gradient clipping");
    g.w_dec = remove_parallel_component(&g.w_dec, &state.params.w_dec)?;
    phases::mark(dev, "step: decoder gradient projection");
    state.adam.step(&mut state.params, &g, lr)?;
    phases::mark(dev, "step: Adam");
    state.params.w_dec = normalize_rows(&state.params.w_dec)?;
    phases::mark(dev, "step: decoder renorm");
    let rows = x.dims2()?.0 as u64;
    for c in state.since_fired.iter_mut() {
        *c = c.saturating_add(rows);
    }
    for &f in &loss.fired {
        state.since_fired[f as usize] = 0;
    }
    state.tokens += rows;
    state.step += 1;
    Ok((loss, grad_norm))
}

/// A new run: random SAE (tied init, unit decoder rows) with `b_dec` at the geometric median of
/// the first buffer, which is returned too so that it is not read twice.
fn fresh_state(
    source: &mut dyn RowSource,
    plan: &Plan,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<(TrainState, Buffer)> {
    let first = plan
        .epoch(0)
        .into_iter()
        .next()
        .context("the first epoch has no data")?;
    let buffer = plan.load(source, &first, 0, 0)?;
    let sae = Sae::random(cfg.sae_config(), &cfg.hookpoint, cfg.seed, device)?;
    let mut params = Params::from_sae(&sae);
    params.b_dec = geometric_median(&buffer.all(device)?, 100, 1e-5)?.to_dtype(DType::F32)?;
    let finite = params.b_dec.sum_all()?.to_scalar::<f32>()?.is_finite();
    if !finite {
        bail!(
            "the first buffer of activations holds non-finite values (NaN or infinity); check the model"
        );
    }
    let state = TrainState {
        config: cfg.clone(),
        step: 0,
        position: Position::default(),
        tokens: 0,
        adam: Adam::new(&params)?,
        params,
        since_fired: vec![0; cfg.num_latents],
    };
    Ok((state, buffer))
}

fn save_checkpoint(state: &TrainState, path: &std::path::Path, run: &RunOptions) -> Result<()> {
    state.save(path)?;
    if let Some(root) = &run.export_dir {
        let cfg = &state.config;
        state
            .params
            .to_sae(cfg.sae_config(), &cfg.hookpoint)?
            .save(root)?;
    }
    Ok(())
}

fn checkpoint_note(last_saved: u64, path: &std::path::Path) -> String {
    if last_saved == 0 {
        "training stopped before the first checkpoint".to_string()
    } else {
        format!(
            "training stopped; the checkpoint of step {last_saved} in {} is intact (--resume continues from it)",
            path.display()
        )
    }
}

/// Error naming every config field a resume would change.
fn check_same_config(saved: &TrainConfig, now: &TrainConfig, path: &std::path::Path) -> Result<()> {
    if saved == now {
        return Ok(());
    }
    let (a, b) = (serde_json::to_value(saved)?, serde_json::to_value(now)?);
    let diffs: Vec<String> = match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => a
            .iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| {
                format!(
                    "{k}: checkpoint {v}, now {}",
                    b.get(k).cloned().unwrap_or_default()
                )
            })
            .collect(),
        _ => vec![],
    };
    bail!(
        "cannot resume {}: the run settings differ ({}); repeat the original options or start over with --force",
        path.display(),
        diffs.join("; ")
    )
}
