//! Scoring many features as a resumable run: features already scored for the same explanation
//! with the same scorer and prompt hash are skipped, so a killed run picks up where it stopped.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use super::{Method, ScoreJob, score_feature};
use crate::store::{FeatureFilter, Store};

/// Which features a run scores and how it reports.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Features to score (those without an explanation are counted, not scored).
    pub features: FeatureFilter,
    /// Score again what is already stored.
    pub force: bool,
    /// Draw a progress bar (else one line per feature on stderr).
    pub progress_bar: bool,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreSummary {
    /// Store folder.
    pub store: String,
    /// Method.
    pub method: Method,
    /// Scorer model stored with each score.
    pub model: String,
    /// Prompt hash stored with each score.
    pub prompt_hash: String,
    /// Selected features with an explanation.
    pub selected: usize,
    /// Selected features without one.
    pub unexplained: usize,
    /// Skipped: already scored for the same explanation.
    pub already_scored: usize,
    /// Scored and stored in this run.
    pub scored: usize,
    /// Of those, features whose explainer declined (stored without a value).
    pub declined: usize,
    /// Features that failed, with reasons (not stored; a rerun tries them again).
    pub failed: Vec<(u32, String)>,
    /// Samples that failed within scored features.
    pub sample_failures: usize,
    /// Mean value over the features scored in this run.
    pub mean: Option<f64>,
    /// Wall time.
    pub seconds: f64,
}

/// Score the chosen features one after another, skipping those already scored for the same
/// explanation (unless `force`).
pub async fn run_scores(job: &ScoreJob, store: &Store, opts: &RunOptions) -> Result<ScoreSummary> {
    let started = Instant::now();
    let (model, hash) = (job.model_name(), job.prompt_hash());
    let mut sum = ScoreSummary {
        store: store.dir().display().to_string(),
        method: job.method,
        model: model.clone(),
        prompt_hash: hash.clone(),
        selected: 0,
        unexplained: 0,
        already_scored: 0,
        scored: 0,
        declined: 0,
        failed: Vec::new(),
        sample_failures: 0,
        mean: None,
        seconds: 0.0,
    };
    let mut todo = Vec::new();
    for item in store.features() {
        let (f, _) = item?;
        if !opts.features.contains(f) {
            continue;
        }
        let Some(e) = store.latest_explanation(f, job.explainer_model.as_deref())? else {
            sum.unexplained += 1;
            continue;
        };
        sum.selected += 1;
        let done = store
            .score(f, job.method.name(), &model, &hash)?
            .is_some_and(|s| {
                s.explainer_model == e.explainer_model
                    && s.explanation_hash == e.prompt_hash
                    && s.explanation_created_unix == e.created_unix
            });
        if done && !opts.force {
            sum.already_scored += 1;
        } else {
            todo.push(e);
        }
    }
    let title = format!("score {}", job.method.name());
    let bar = crate::util::progress::bar(opts.progress_bar, todo.len(), &title, "features", false);
    let total = todo.len();
    let mut values = Vec::new();
    for (k, e) in todo.into_iter().enumerate() {
        let line = match score_feature(job, store, &e).await {
            Ok(s) => {
                sum.scored += 1;
                sum.sample_failures += s.failures;
                match s.value {
                    Some(v) => values.push(v),
                    None => sum.declined += usize::from(s.details["declined"] == json!(true)),
                }
                let v = s.value.map_or("-".into(), |v| format!("{v:.3}"));
                format!(
                    "feature {} {} {v} ({} failed of {})",
                    e.feature,
                    job.method.name(),
                    s.failures,
                    s.n
                )
            }
            Err(err) => {
                let why = format!("{err:#}");
                let line = format!("feature {} failed: {why}", e.feature);
                sum.failed.push((e.feature, why));
                line
            }
        };
        match &bar {
            Some(b) => {
                b.inc(1);
                b.set_message(line);
            }
            None => eprintln!("score: {}/{total} · {line}", k + 1),
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if !values.is_empty() {
        sum.mean = Some(values.iter().sum::<f64>() / values.len() as f64);
    }
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}
