//! What `glint train` reports: held-out numbers, feature-region matches, the JSON report and
//! the text summary.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Tensor;
use serde::Serialize;

use super::source::{ModelSource, RowTag};
use crate::dataset::Dataset;
use crate::heatmap::Upsample;
use crate::sae::Sae;
use crate::sae::evaluate::{
    EvalOptions, EvalSummary, FeatureScore, ImageActivations, ImageRank, ImageTruth, MapGrid,
    score_features, summarize,
};
use crate::sae::train::data::RowSource;
use crate::sae::train::{LogRecord, TrainConfig};
use crate::sample::shapes::read_manifest;

/// File name of the run summary inside the work folder.
pub const REPORT_FILE: &str = "report.json";
/// File name of every feature's region scores inside the work folder.
pub const FEATURES_FILE: &str = "features.json";

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
    /// Upsampling of the maps to pixels.
    pub upsample: Upsample,
    /// Activation threshold as a fraction of each image's maximum.
    pub threshold: f32,
    /// Images per feature.
    pub top_images: usize,
    /// How they were ranked.
    pub rank: ImageRank,
    /// Mean IOU counted as a match.
    pub pass_iou: f64,
    /// Images evaluated.
    pub images: usize,
    /// The counts and the matching features.
    pub summary: EvalSummary,
    /// Every scored feature (written to `features.json`, not to the report).
    #[serde(skip)]
    pub scores: Vec<FeatureScore>,
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
    /// Latents that fired on no token of the evaluated images (`silent_images` of them: the
    /// held-out ones, or every image when features are scored).
    pub silent_fraction: Option<f64>,
    /// Images behind `silent_fraction`.
    pub silent_images: usize,
    /// Held-out FVU and L0 (with `--holdout`).
    pub heldout: Option<HeldOutReport>,
    /// Feature-region matches (for manifests with masks).
    pub features: Option<FeatureReport>,
}

pub(super) fn silent(fired: &[bool]) -> f64 {
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

impl TrainReport {
    /// An empty report for the SAE in `sae_dir` trained on `train_images` images.
    pub fn new(sae_dir: PathBuf, train_images: usize) -> Self {
        Self {
            sae_dir,
            config: None,
            step: 0,
            finished: true,
            train_images,
            tokens_per_epoch: 0,
            train_seconds: 0.0,
            last_log: None,
            dead_fraction: None,
            silent_fraction: None,
            silent_images: 0,
            heldout: None,
            features: None,
        }
    }
}

/// Score features on every image of a manifest with masks; `None` when there are no masks.
pub(super) fn evaluate_features(
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
        let Some(entry) = entries
            .iter()
            .find(|e| e.id == item.id)
            .filter(|e| !e.objects.is_empty())
        else {
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
        images.push(ImageActivations {
            layout: source.layout(i)?,
            truth,
            acts,
        });
    }
    if images.is_empty() {
        return Ok(None);
    }
    let scores = score_features(&images, opts)?;
    let report = FeatureReport {
        grid: opts.grid,
        upsample: opts.upsample,
        threshold: opts.threshold,
        top_images: opts.top_images,
        rank: opts.rank,
        pass_iou: opts.pass_iou,
        images: images.len(),
        summary: summarize(&scores, opts.pass_iou),
        scores,
    };
    Ok(Some((report, fired)))
}

/// Write `report.json` (and `features.json` with every feature's scores) into `work`.
pub(super) fn write_report(work: &Path, report: &TrainReport) -> Result<()> {
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let path = work.join(REPORT_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(report)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(f) = &report.features {
        let path = work.join(FEATURES_FILE);
        std::fs::write(&path, serde_json::to_string(&f.scores)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Human-readable summary of a report.
pub fn format_report(r: &TrainReport) -> String {
    let mut out = match &r.config {
        Some(c) => format!(
            "SAE {} (step {} of {}, {:.0} s of training)\n",
            r.sae_dir.display(),
            r.step,
            c.total_steps,
            r.train_seconds
        ),
        None => format!("SAE {} (evaluated as found)\n", r.sae_dir.display()),
    };
    if let Some(h) = &r.heldout {
        out += &format!(
            "held-out: {} images, {} tokens, FVU {:.4}, L0 {:.2}\n",
            h.images, h.tokens, h.fvu, h.l0
        );
    }
    if let Some(d) = r.dead_fraction {
        out += &format!("dead latents (training counter): {:.1}%\n", 100.0 * d);
    }
    if let Some(s) = r.silent_fraction {
        out += &format!(
            "latents firing on no token of the {} evaluated images: {:.1}%\n",
            r.silent_images,
            100.0 * s
        );
    }
    if let Some(f) = &r.features {
        let s = &f.summary;
        out += &format!(
            "features matching a region at mean IOU >= {} over their top {} images by {:?} ({:?} grid, {:?}, threshold {}):\n  \
             object or colour {} (object {}, colour {}), shape {}, of {} scored\n",
            f.pass_iou,
            f.top_images,
            f.rank,
            f.grid,
            f.upsample,
            f.threshold,
            s.object_or_colour,
            s.object,
            s.colour,
            s.shape,
            s.scored
        );
        for (feature, kind, name, iou) in s.matches.iter().take(12) {
            out += &format!(
                "  {feature:>6}  {:<7} {name:<16} {iou:.3}\n",
                format!("{kind:?}").to_lowercase()
            );
        }
    }
    out
}
