//! Progress records, the JSONL log, and held-out reconstruction metrics.

use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Tensor};
use serde::Serialize;

use super::data::RowSource;
use super::grad::BatchLoss;
use super::state::TrainState;
use crate::sae::Sae;

/// One progress record: averages over the steps since the previous one.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    /// Optimizer steps taken.
    pub step: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Current epoch.
    pub epoch: u64,
    /// Rows trained on so far.
    pub tokens: u64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Mean batch FVU.
    pub fvu: f64,
    /// Mean AuxK term.
    pub auxk: f64,
    /// Mean multi-TopK FVU.
    pub multi_topk: f64,
    /// Mean active latents per row.
    pub l0: f64,
    /// Fraction of latents past the dead threshold.
    pub dead_fraction: f64,
    /// Mean gradient norm before clipping.
    pub grad_norm: f64,
    /// Rows per second in this invocation.
    pub tokens_per_s: f64,
}

/// Open the log for appending; on resume drop records past the checkpoint's step.
pub(super) fn open_log(path: &Path, keep_until: Option<u64>) -> Result<std::fs::File> {
    let kept = match (keep_until, std::fs::read_to_string(path)) {
        (Some(step), Ok(text)) => text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                    .is_some_and(|s| s <= step)
            })
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        _ => String::new(),
    };
    std::fs::write(path, kept)
        .with_context(|| format!("cannot write training log {}", path.display()))?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open training log {}", path.display()))
}

/// Running sums between two log records.
#[derive(Default)]
pub(super) struct Window {
    n: f64,
    fvu: f64,
    auxk: f64,
    multi: f64,
    l0: f64,
    grad: f64,
}

impl Window {
    pub(super) fn add(&mut self, l: &BatchLoss, grad_norm: f64) {
        self.n += 1.0;
        self.fvu += l.fvu;
        self.auxk += l.auxk;
        self.multi += l.multi_topk;
        self.l0 += l.l0;
        self.grad += grad_norm;
    }

    pub(super) fn record(&mut self, st: &TrainState, lr: f64, tokens_per_s: f64) -> LogRecord {
        let n = self.n.max(1.0);
        let r = LogRecord {
            step: st.step,
            total_steps: st.config.total_steps,
            epoch: st.position.epoch,
            tokens: st.tokens,
            lr,
            fvu: self.fvu / n,
            auxk: self.auxk / n,
            multi_topk: self.multi / n,
            l0: self.l0 / n,
            dead_fraction: st.dead_fraction(),
            grad_norm: self.grad / n,
            tokens_per_s,
        };
        *self = Window::default();
        r
    }
}

/// Reconstruction quality of an SAE on some items, through the inference encode/decode.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOut {
    /// Rows evaluated.
    pub rows: usize,
    /// `Σ‖x - x̂‖² / Σ‖x - mean‖²` over all rows together.
    pub fvu: f64,
    /// Mean positive activations per row.
    pub l0: f64,
    /// Which latents fired on some row.
    pub fired: Vec<bool>,
}

/// FVU and L0 of `sae` on `items` of `source`, one item at a time.
pub fn heldout_metrics(sae: &Sae, source: &mut dyn RowSource, items: &[usize]) -> Result<HeldOut> {
    let d = sae.d_in();
    if source.d_in() != d {
        bail!(
            "the activations have width {} but the SAE has d_in = {d}",
            source.d_in()
        );
    }
    let (mut rows, mut sse, mut sq, mut active) = (0usize, 0.0f64, 0.0f64, 0usize);
    let mut sum = vec![0.0f64; d];
    let mut fired = vec![false; sae.num_latents()];
    for &item in items {
        let data = source
            .rows(item)
            .with_context(|| format!("reading activations of {}", source.name(item)))?;
        let r = data.len() / d;
        if r == 0 {
            continue;
        }
        let x = Tensor::from_vec(data, (r, d), sae.device())?.to_dtype(sae.dtype())?;
        let codes = sae.encode(&x)?;
        let err = (sae.decode(&codes)? - &x)?.to_dtype(DType::F64)?;
        sse += err.sqr()?.sum_all()?.to_scalar::<f64>()?;
        let x64 = x.to_dtype(DType::F64)?;
        sq += x64.sqr()?.sum_all()?.to_scalar::<f64>()?;
        for (s, v) in sum.iter_mut().zip(x64.sum(0)?.to_vec1::<f64>()?) {
            *s += v;
        }
        let vals = codes.values.flatten_all()?.to_vec1::<f32>()?;
        let ids = codes.indices.flatten_all()?.to_vec1::<u32>()?;
        for (v, i) in vals.iter().zip(ids) {
            if *v > 0.0 {
                active += 1;
                fired[i as usize] = true;
            }
        }
        rows += r;
    }
    if rows == 0 {
        bail!("no held-out tokens to evaluate");
    }
    let tv = sq - sum.iter().map(|s| s * s).sum::<f64>() / rows as f64;
    Ok(HeldOut {
        rows,
        fvu: sse / tv,
        l0: active as f64 / rows as f64,
        fired,
    })
}
