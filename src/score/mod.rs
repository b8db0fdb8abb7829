//! Scoring explanations: IOU against grounding or ground-truth masks and CLIP score (the original
//! system's scorers), and image versions of delphi's detection and fuzzing. Scores are stored per
//! feature and method with the hash of the prompts and recipe that made them; a run skips what is
//! already stored for the same explanation, so it resumes where it stopped.

pub mod batch;
pub mod clip;
pub mod coco;
pub mod detection;
pub mod export;
pub mod fuzzing;
pub mod iou;
pub mod judge;
pub mod masks;
pub mod prompt;
pub mod refine;
#[cfg(test)]
pub(crate) mod testworld;

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};

use crate::llm::ChatClient;
use crate::store::{Explanation, Score, Store, unix_now};
use crate::util::hash::Fingerprint;
pub use batch::{RunOptions, ScoreSummary, run_scores};
use fuzzing::FuzzType;
use iou::IouScorer;
use prompt::ScorePrompt;
use refine::{Refiner, is_declined};

/// A scoring method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// IOU of the label's mask with the binarised activation map (the original's segment scorer).
    Iou,
    /// CLIP score of the label against the top images, with a random-image baseline.
    Clip,
    /// Which of a mix of activating and non-activating images fit the explanation.
    Detection,
    /// Which highlighted regions (true or random) fit the explanation.
    Fuzzing,
}

crate::util::choice::choice!(Method, "scoring method" { Iou => "iou", Clip => "clip", Detection => "detection", Fuzzing => "fuzzing" });

/// What scoring one feature gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The headline number, `None` if nothing could be scored.
    pub value: Option<f64>,
    /// Samples scored.
    pub n: usize,
    /// Samples that failed.
    pub failures: usize,
    /// Method-specific numbers.
    pub details: Value,
}

/// A scorer that runs on the calling thread (CLIP, on the model's device).
pub trait LocalScorer {
    /// Name stored as the score's model.
    fn model_name(&self) -> String;
    /// What the score depends on besides the label, for the prompt hash.
    fn recipe(&self) -> String;
    /// Score `label` for feature `f`.
    fn score(&self, store: &Store, f: u32, label: &str) -> Result<Outcome>;
}

/// The scorer of one method.
// One value per run, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Scorer {
    /// IOU against masks.
    Iou(IouScorer),
    /// Detection or fuzzing with a vision judge.
    Judge {
        /// The judge.
        client: ChatClient,
        /// Its prompt.
        prompt: ScorePrompt,
        /// How samples are drawn.
        samples: detection::SampleOptions,
        /// For fuzzing: where fakes go and the highlight fraction of the max.
        fuzz: Option<(FuzzType, f32)>,
    },
    /// A local model (CLIP).
    Local(Box<dyn LocalScorer>),
}

/// A configured scoring run over one store.
pub struct ScoreJob {
    /// The method.
    pub method: Method,
    /// Its scorer.
    pub scorer: Scorer,
    /// Shortens explanations into labels first, when set.
    pub refiner: Option<Refiner>,
    /// Score only explanations by this explainer model (default: each feature's newest).
    pub explainer_model: Option<String>,
    /// Folder the store's image paths are relative to.
    pub root: PathBuf,
}

impl ScoreJob {
    /// Name stored as the score's model.
    pub fn model_name(&self) -> String {
        match &self.scorer {
            Scorer::Iou(s) => s.model_name(),
            Scorer::Judge { client, .. } => client.config().model.clone(),
            Scorer::Local(s) => s.model_name(),
        }
    }

    /// Hash of everything that shapes a score besides the explanation and the scorer model.
    pub fn prompt_hash(&self) -> String {
        let refine = self
            .refiner
            .as_ref()
            .map_or("label=explanation".into(), Refiner::recipe);
        match &self.scorer {
            Scorer::Iou(s) => Fingerprint::new().field(&s.recipe()).field(&refine).hex(),
            Scorer::Local(s) => Fingerprint::new().field(&s.recipe()).field(&refine).hex(),
            Scorer::Judge {
                client,
                prompt,
                samples,
                fuzz,
            } => {
                let c = client.config();
                prompt.hash(&format!(
                    "{} fuzz={fuzz:?} temperature={} max_tokens={:?} image_extra={} {refine}",
                    samples.recipe(),
                    c.temperature,
                    c.max_tokens,
                    Value::Object(c.image_extra.clone())
                ))
            }
        }
    }

    /// The label scored for `e`: refined when a refiner is set, else the explanation text.
    async fn label(&self, e: &Explanation) -> Result<String> {
        match &self.refiner {
            Some(r) => r
                .refine(&e.text, &e.feature.to_string())
                .await
                .map_err(|err| anyhow::anyhow!("label refinement failed: {err}")),
            None => Ok(e.text.clone()),
        }
    }

    async fn outcome(&self, store: &Store, f: u32, label: &str) -> Result<Outcome> {
        match &self.scorer {
            Scorer::Iou(s) => {
                let rows = s.score(store, f, label).await?;
                let (mean, failures, active) = iou::summarize(&rows);
                Ok(Outcome {
                    value: (!rows.is_empty()).then_some(mean),
                    n: rows.len(),
                    failures,
                    details: json!({
                        "iou_scores": rows.iter().map(|r| r.iou).collect::<Vec<_>>(),
                        "images": rows,
                        "activated_pct": active,
                        "threshold": s.threshold.to_string(),
                    }),
                })
            }
            Scorer::Local(s) => s.score(store, f, label),
            Scorer::Judge {
                client,
                prompt,
                samples,
                fuzz,
            } => {
                let (st, root, opts, fz) =
                    (store.clone(), self.root.clone(), samples.clone(), *fuzz);
                let drawn = tokio::task::spawn_blocking(move || match fz {
                    None => detection::samples(&st, &root, f, &opts),
                    Some((kind, frac)) => fuzzing::samples(&st, &root, f, &opts, kind, frac),
                })
                .await
                .context("drawing the samples panicked")??;
                let (set, exact) = drawn;
                let n = set.len();
                let tag = f.to_string();
                let (judged, failed) = judge::judge(
                    client,
                    prompt,
                    label,
                    set,
                    samples.per_prompt,
                    samples.seed,
                    &tag,
                )
                .await;
                let m = judge::metrics(&judged);
                Ok(Outcome {
                    value: m.balanced_accuracy,
                    n,
                    failures: m.unanswered,
                    details: json!({
                        "metrics": m,
                        "failed_requests": failed,
                        "negatives_exact": exact,
                        "judged": judged,
                    }),
                })
            }
        }
    }
}

/// Score one feature's explanation `e` and store the result.
pub async fn score_feature(job: &ScoreJob, store: &Store, e: &Explanation) -> Result<Score> {
    let f = e.feature;
    let (label, outcome) = if is_declined(&e.text) {
        let none = Outcome {
            value: None,
            n: 0,
            failures: 0,
            details: json!({"declined": true}),
        };
        (e.text.clone(), none)
    } else {
        let label = job.label(e).await.with_context(|| format!("feature {f}"))?;
        let out = if is_declined(&label) {
            Outcome {
                value: None,
                n: 0,
                failures: 0,
                details: json!({"declined": true}),
            }
        } else {
            job.outcome(store, f, &label)
                .await
                .with_context(|| format!("feature {f}"))?
        };
        (label, out)
    };
    let score = Score {
        feature: f,
        method: job.method.name().into(),
        value: outcome.value,
        n: outcome.n,
        failures: outcome.failures,
        label,
        explainer_model: e.explainer_model.clone(),
        explanation_hash: e.prompt_hash.clone(),
        explanation_created_unix: e.created_unix,
        model: job.model_name(),
        prompt_hash: job.prompt_hash(),
        created_unix: unix_now(),
        details: outcome.details,
    };
    store.put_score(&score)?;
    Ok(score)
}

/// Encode a greyscale image as PNG bytes (masks for grounding tests and tools).
pub fn encode_gray_png(img: &image::GrayImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("encoding a mask as PNG")?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
