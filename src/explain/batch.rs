//! Explaining many features as a resumable batch: features already explained with the same
//! model and prompt hash are skipped, so a killed run picks up where it stopped.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::explainer::{ExplainError, Explainer, Stage, explain_feature};
use super::prompt::is_declined;
use crate::store::{FeatureFilter, Store, TokenUsage};

/// What a batch explains and how hard it tries.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Features to explain (those that never fired are counted, not requested).
    pub features: FeatureFilter,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Stop starting requests after this many failed features (0: never stop).
    pub max_failures: usize,
    /// Explain again features this explainer already explained.
    pub redo: bool,
    /// Explain again features whose stored answer had no `[EXPLANATION]:` line.
    pub retry_unparsed: bool,
    /// Draw a progress bar (else one line per feature on stderr).
    pub progress_bar: bool,
    /// On Ctrl-C, stop starting requests and finish those in flight.
    pub handle_ctrl_c: bool,
}

/// What a batch did.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    /// Store folder.
    pub store: String,
    /// Explainer model.
    pub model: String,
    /// Server `host[:port]`.
    pub base_url_host: String,
    /// Prompt template name.
    pub prompt: String,
    /// Prompt hash stored with each explanation.
    pub prompt_hash: String,
    /// Features selected that have examples in the store.
    pub selected: usize,
    /// Selected features that never fired (nothing to show).
    pub never_fired: usize,
    /// Skipped: already explained with this model and prompt hash.
    pub already_explained: usize,
    /// Explained and stored in this run.
    pub done: usize,
    /// Of those, answers without an `[EXPLANATION]:` line (stored with the fallback text).
    pub unparsed: Vec<u32>,
    /// Of those, answers declining to describe ("Unable to produce descriptions").
    pub declined: usize,
    /// Features that failed, with reasons.
    pub failed: Vec<ExplainError>,
    /// Features never started because the run stopped.
    pub not_started: usize,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Token usage summed over answers that reported it.
    pub usage: TokenUsage,
    /// Answers that reported usage.
    pub usage_reported: usize,
    /// Wall time.
    pub seconds: f64,
}

/// Features of `filter` that fired in the store, and how many it names that did not.
fn select_features(store: &Store, filter: &FeatureFilter) -> Result<(Vec<u32>, usize)> {
    let n = store.manifest().num_latents as u64;
    let mut fired = Vec::new();
    for item in store.features() {
        let (f, _) = item?;
        if filter.contains(f) {
            fired.push(f);
        }
    }
    let named = match filter {
        FeatureFilter::All => n,
        FeatureFilter::Range(a, b) => u64::from(*b).min(n).saturating_sub(u64::from(*a).min(n)),
        FeatureFilter::List(l) => l.iter().filter(|&&f| u64::from(f) < n).count() as u64,
    };
    let never = (named as usize).saturating_sub(fired.len());
    Ok((fired, never))
}

/// Explain the chosen features, skipping those already explained by this explainer (so a killed
/// run resumes where it stopped), with at most `concurrency` requests in flight.
pub async fn run_batch(
    explainer: &Explainer,
    store: &Store,
    opts: &BatchOptions,
) -> Result<BatchSummary> {
    let started = Instant::now();
    let (fired, never_fired) = select_features(store, &opts.features)?;
    let mut todo = Vec::new();
    let mut already = 0;
    for &f in &fired {
        match explainer.existing(store, f)? {
            Some(e) if !opts.redo && (e.parsed || !opts.retry_unparsed) => already += 1,
            _ => todo.push(f),
        }
    }
    let mut sum = BatchSummary {
        store: store.dir().display().to_string(),
        model: explainer.model().to_string(),
        base_url_host: explainer.host().to_string(),
        prompt: explainer.prompt_name().to_string(),
        prompt_hash: explainer.prompt_hash().to_string(),
        selected: fired.len(),
        never_fired,
        already_explained: already,
        done: 0,
        unparsed: Vec::new(),
        declined: 0,
        failed: Vec::new(),
        not_started: 0,
        stopped: None,
        requests: 0,
        usage: TokenUsage::default(),
        usage_reported: 0,
        seconds: 0.0,
    };
    let total = todo.len();
    let sent_before = explainer.requests_sent();
    let bar = crate::util::progress::bar(opts.progress_bar, total, "explain", "features", false);
    let mut queue = todo.into_iter();
    let mut set = tokio::task::JoinSet::new();
    let mut ids = HashMap::new();
    // The signal handler is installed on first poll, so only when asked for.
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    let mut interrupts = 0;
    let mut finished = 0usize;
    loop {
        while sum.stopped.is_none() && set.len() < opts.concurrency.max(1) {
            let Some(f) = queue.next() else { break };
            let (ex, st) = (explainer.clone(), store.clone());
            let handle = set.spawn(async move { explain_feature(&ex, &st, f).await });
            ids.insert(handle.id(), f);
        }
        if set.is_empty() {
            break;
        }
        let joined = tokio::select! {
            j = set.join_next_with_id() => j,
            _ = &mut ctrl_c, if opts.handle_ctrl_c => {
                ctrl_c = Box::pin(tokio::signal::ctrl_c());
                interrupts += 1;
                if interrupts == 1 {
                    eprintln!("explain: stopping; waiting for {} requests in flight (Ctrl-C again to abandon them)", set.len());
                    sum.stopped = Some("interrupted (Ctrl-C); requests in flight were finished and stored".into());
                    continue;
                }
                sum.stopped = Some(format!("interrupted twice (Ctrl-C); {} requests in flight abandoned", set.len()));
                sum.not_started += set.len();
                break;
            }
        };
        let Some(joined) = joined else { break };
        let result = match joined {
            Ok((_, r)) => r,
            Err(e) => {
                let f = ids.get(&e.id()).copied().unwrap_or(u32::MAX);
                Err(ExplainError {
                    feature: f,
                    stage: Stage::Request,
                    kind: None,
                    reason: format!("task failed: {e}"),
                    attempts: 0,
                    fatal: false,
                })
            }
        };
        finished += 1;
        let line = match result {
            Ok(e) => {
                sum.done += 1;
                if let Some(u) = &e.usage {
                    sum.usage.add(u);
                    sum.usage_reported += 1;
                }
                if !e.parsed {
                    sum.unparsed.push(e.feature);
                } else if is_declined(&e.text) {
                    sum.declined += 1;
                }
                format!(
                    "feature {} {}",
                    e.feature,
                    if e.parsed {
                        "explained"
                    } else {
                        "answered without [EXPLANATION]:"
                    }
                )
            }
            Err(e) => {
                let line = format!("feature {} failed: {}", e.feature, e.reason);
                if e.fatal {
                    sum.stopped =
                        Some(format!("stopped after feature {}: {}", e.feature, e.reason));
                }
                sum.failed.push(e);
                if opts.max_failures > 0
                    && sum.failed.len() >= opts.max_failures
                    && sum.stopped.is_none()
                {
                    sum.stopped = Some(format!(
                        "stopped: {} features failed (--max-failures {})",
                        sum.failed.len(),
                        opts.max_failures
                    ));
                }
                line
            }
        };
        match &bar {
            Some(b) => {
                b.inc(1);
                b.set_message(line);
            }
            None => eprintln!("explain: {finished}/{total} features · {line}"),
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    sum.not_started += queue.count();
    sum.requests = explainer.requests_sent() - sent_before;
    sum.failed.sort_by_key(|e| e.feature);
    sum.unparsed.sort_unstable();
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}
