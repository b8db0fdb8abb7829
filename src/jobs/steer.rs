//! `glint --batch steer`: one prompt, one feature at a time, default vs steered text as JSONL.
//!
//! The original system's bulk steering (seed-spec §5.3) with its flaws fixed where they are
//! choices: the mode and scope are explicit, every row states its settings, rows are appended and
//! flushed one by one so a killed run resumes (features already in the file are skipped), and
//! shards split the feature list like the cache splits images.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::dataset::Shard;
use crate::generate::{
    CancelToken, FeatureStrength, GenerateOptions, Generation, PreparedPrompt, Sampling, Steering,
    TokenEvent, generate,
};
use crate::sae::intervene::{Mode, Phase, Scope};
use crate::session::Session;
use crate::store::Store;

mod rows;

pub use rows::{RunSettings, SteerRecord, parse_features, read_done, shard_path};

/// A batch steering job.
#[derive(Debug, Clone)]
pub struct SteerJob {
    /// Settings shared by every row.
    pub settings: RunSettings,
    /// Features, in order; a shard takes every n-th.
    pub features: Vec<u32>,
    /// Generation options (from `settings`, plus the end tokens).
    pub options: GenerateOptions,
    /// Output JSONL (already shard-specific).
    pub out: PathBuf,
    /// This process's share of the features.
    pub shard: Option<Shard>,
}

/// What a steering run did.
#[derive(Debug, Clone, Serialize)]
pub struct SteerSummary {
    /// Output file.
    pub out: String,
    /// Rows written by this run.
    pub written: usize,
    /// Features found already done in the file.
    pub resumed: usize,
    /// Rows whose steered text equals the default.
    pub identical: usize,
    /// Rows with warnings.
    pub warned: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// Decode tokens per second over the steered runs.
    pub tokens_per_second: f64,
}

/// Run `job`: one default generation, then one steered generation per owned, not-yet-done feature.
pub fn run_steer_job(
    session: &Session,
    job: &SteerJob,
    max_act: &mut dyn FnMut(u32) -> Result<Option<f32>>,
    on_row: &mut dyn FnMut(&SteerRecord, &Generation),
    on_event: &mut dyn FnMut(Option<u32>, TokenEvent),
) -> Result<SteerSummary> {
    let t0 = Instant::now();
    let s = &job.settings;
    let done = read_done(&job.out, s)?;
    let prompt = PreparedPrompt::new(session, &s.prompt, s.image.as_deref().map(Path::new))?;
    let cancel = CancelToken::never();
    let default = generate(session, &prompt, None, &job.options, &cancel, &mut |e| {
        on_event(None, e);
        ControlFlow::Continue(())
    })?;
    if let Some(parent) = job.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&job.out)
        .with_context(|| format!("{}: cannot open for appending", job.out.display()))?;
    let mut sum = SteerSummary {
        out: job.out.display().to_string(),
        written: 0,
        resumed: 0,
        identical: 0,
        warned: 0,
        seconds: 0.0,
        tokens_per_second: 0.0,
    };
    let (mut steps, mut secs) = (0usize, 0f64);
    let owned = job
        .features
        .iter()
        .enumerate()
        .filter(|(i, _)| job.shard.is_none_or(|sh| sh.owns(*i as u32)));
    for (_, &feature) in owned {
        if done.contains(&feature) {
            sum.resumed += 1;
            continue;
        }
        let steering = Steering {
            mode: s.mode,
            features: vec![FeatureStrength {
                feature,
                strength: s.strength,
            }],
            unit: s.unit,
            direction: s.direction,
            scope: Scope {
                phase: s.phase,
                tokens: s.scope,
            },
        };
        let iv = steering.resolve(max_act)?;
        let g = generate(
            session,
            &prompt,
            Some(&iv),
            &job.options,
            &cancel,
            &mut |e| {
                on_event(Some(feature), e);
                ControlFlow::Continue(())
            },
        )
        .with_context(|| format!("steering feature {feature}"))?;
        let identical = g.ids == default.ids;
        let mut warnings = g.warnings.clone();
        if identical && warnings.is_empty() {
            warnings.push(
                "the steered text equals the default: the edit was too weak to change a token"
                    .into(),
            );
        }
        let row = SteerRecord {
            feature,
            settings: s.clone(),
            value: iv.edits[0].1,
            default: default.text.clone(),
            steered: g.text.clone(),
            tokens: g.ids.clone(),
            stop: g.stop,
            identical,
            mean_rel_change: g.edits.as_ref().map_or(0.0, |e| e.mean_rel_change()),
            warnings,
        };
        let mut line = serde_json::to_string(&row)?;
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|_| file.flush())
            .with_context(|| format!("{}: cannot write", job.out.display()))?;
        sum.written += 1;
        sum.identical += usize::from(identical);
        sum.warned += usize::from(!row.warnings.is_empty());
        steps += g.decode_steps;
        secs += g.decode_seconds;
        on_row(&row, &g);
    }
    sum.seconds = t0.elapsed().as_secs_f64();
    sum.tokens_per_second = if secs > 0.0 { steps as f64 / secs } else { 0.0 };
    Ok(sum)
}

/// A max-activation lookup from a store made with this session's SAE.
pub fn store_max_act(
    dir: &Path,
    session: &Session,
) -> Result<impl FnMut(u32) -> Result<Option<f32>>> {
    let store = Store::open(dir).with_context(|| {
        format!("--unit max needs the max activations of a cache store; {} could not be opened (pass --store)", dir.display())
    })?;
    let m = store.manifest();
    if m.sae_fingerprint != session.sae_fingerprint {
        bail!(
            "store {} was cached with SAE {} ({}), not the loaded SAE {}; its max activations do not apply",
            dir.display(),
            m.sae_id,
            m.sae_fingerprint,
            session.sae_id
        );
    }
    Ok(move |f: u32| Ok(store.feature_stats(f)?.map(|s| s.max)))
}

/// Decode tokens/s of `n_tokens` greedy steps without and with a clamp on feature 0 at every
/// position (a text prompt, end tokens ignored; one warm-up run each).
pub fn bench_decode(session: &Session, n_tokens: usize) -> Result<(f64, f64)> {
    let prompt = PreparedPrompt::new(session, "Tell me a story about Alice and Bob.", None)?;
    bench_decode_prompt(session, &prompt, n_tokens, Mode::Clamp, 0, 10.0)
}

/// [`bench_decode`] on a prepared prompt, steering `feature` to `strength` with `mode` on every
/// position of prefill and decode.
pub fn bench_decode_prompt(
    session: &Session,
    prompt: &PreparedPrompt,
    n_tokens: usize,
    mode: Mode,
    feature: u32,
    strength: f32,
) -> Result<(f64, f64)> {
    let opts = GenerateOptions {
        max_new_tokens: n_tokens.max(2),
        sampling: Sampling::Greedy,
        stop_ids: Some(Vec::new()),
    };
    let mut steering = Steering::new(mode, &[(feature, strength)]);
    steering.scope.phase = Phase::Both;
    let iv = steering.resolve(&mut |_| Ok(None))?;
    let cancel = CancelToken::never();
    let rate = |iv: Option<&_>| -> Result<f64> {
        generate(session, prompt, iv, &opts, &cancel, &mut |_| {
            ControlFlow::Continue(())
        })?;
        let g = generate(session, prompt, iv, &opts, &cancel, &mut |_| {
            ControlFlow::Continue(())
        })?;
        Ok(g.tokens_per_second())
    };
    Ok((rate(None)?, rate(Some(&iv))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_reports_both_rates() {
        let args = crate::session::ModelSpec::default();
        let session = Session::open(&args, None).unwrap();
        let n: usize = std::env::var("GLINT_BENCH_TOKENS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4);
        let (plain, steered) = bench_decode(&session, n).unwrap();
        eprintln!("decode tokens/s over {n} tokens: plain {plain:.1}, steered {steered:.1}");
        assert!(plain > 0.0 && steered > 0.0, "{plain} {steered}");
    }
}
