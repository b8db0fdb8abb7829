//! `glint --batch steer`: one prompt, one feature at a time, default vs steered text as JSONL.
//!
//! The original system's bulk steering (seed-spec §5.3) with its flaws fixed where they are
//! choices: the mode and scope are explicit, every row states its settings, rows are appended and
//! flushed one by one so a killed run resumes (features already in the file are skipped), and
//! shards split the feature list like the cache splits images.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::dataset::Shard;
use super::generate::{
    CancelToken, FeatureStrength, GenerateOptions, Generation, PreparedPrompt, Sampling, Steering,
    StopReason, StrengthUnit, TokenEvent, generate,
};
use super::session::Session;
use crate::cli::{ModelArgs, SteerArgs};
use crate::sae::intervene::{Direction, Mode, Phase, Scope, TokenScope};
use crate::store::{FeatureFilter, Store};

/// Everything that makes two rows comparable; a resumed file must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Steering mode.
    pub mode: Mode,
    /// Strength in `unit`.
    pub strength: f32,
    /// `raw` or `max` (× the feature's cached max activation).
    pub unit: StrengthUnit,
    /// Decoder direction (`add`).
    pub direction: Direction,
    /// Phase edited.
    pub phase: Phase,
    /// Token kinds edited.
    pub scope: TokenScope,
    /// The user prompt.
    pub prompt: String,
    /// The image, as given.
    pub image: Option<String>,
    /// Token choice.
    pub sampling: Sampling,
    /// Generation limit.
    pub max_new_tokens: usize,
}

/// One output line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SteerRow {
    /// Latent index.
    pub feature: u32,
    /// The run's settings.
    #[serde(flatten)]
    pub settings: RunSettings,
    /// The raw value applied (strength × max for `max` units).
    pub value: f32,
    /// Unsteered text.
    pub default: String,
    /// Steered text.
    pub steered: String,
    /// Steered token ids (end token excluded).
    pub tokens: Vec<u32>,
    /// Why the steered run ended.
    pub stop: StopReason,
    /// Whether the steered tokens equal the default ones.
    pub identical: bool,
    /// Mean `‖h' − h‖ / ‖h‖` over edited positions.
    pub mean_rel_change: f64,
    /// Warnings (edits that changed nothing, …).
    pub warnings: Vec<String>,
}

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

/// Features from a filter JSON file, a range `A..B`, or a list `3,17,42`.
pub fn parse_features(spec: &str, hookpoint: &str) -> Result<Vec<u32>> {
    let path = Path::new(spec);
    let filter = if path.is_file() || spec.ends_with(".json") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{spec}: cannot read the filter file"))?;
        FeatureFilter::from_seed_json(&text, hookpoint)
            .with_context(|| format!("{spec}: bad filter file"))?
    } else if spec.contains("..") {
        FeatureFilter::parse_range(spec)?
    } else {
        let mut list = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            list.push(part.parse::<u32>().with_context(|| {
                format!("--features {spec:?}: {part:?} is not a feature index; give a list like 3,17,42, a range A..B or a filter .json")
            })?);
        }
        FeatureFilter::list(list)
    };
    let features: Vec<u32> = match filter {
        FeatureFilter::List(list) => list,
        FeatureFilter::Range(a, b) => (a..b).collect(),
        FeatureFilter::All => bail!("--features {spec:?} selects every feature; name them"),
    };
    if features.is_empty() {
        bail!("--features {spec:?} names no feature");
    }
    Ok(features)
}

/// `steer.jsonl` → `steer.shard-0-of-4.jsonl` for a shard; the path itself otherwise.
pub fn shard_path(out: &Path, shard: Option<Shard>) -> PathBuf {
    let Some(s) = shard else {
        return out.to_path_buf();
    };
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = out
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.shard-{}-of-{}{ext}", s.index, s.count))
}

/// Features already in `path`, checking its rows were made with `settings`; a torn last line is cut off.
pub fn read_done(path: &Path, settings: &RunSettings) -> Result<BTreeSet<u32>> {
    let mut done = BTreeSet::new();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let want = serde_json::to_value(settings)?;
    let mut offset = 0;
    for (n, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        if !line.ends_with(b"\n") {
            // A kill mid-write leaves an unterminated last line: cut it off; that feature runs again.
            let f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.set_len(offset as u64)
                .with_context(|| format!("{}: cannot cut the torn last line", path.display()))?;
            break;
        }
        let row: SteerRow = serde_json::from_slice(line).with_context(|| {
            format!(
                "{}:{}: not a steering row; use another --out",
                path.display(),
                n + 1
            )
        })?;
        if row.settings != *settings {
            let got = serde_json::to_value(&row.settings)?;
            let key = [
                "mode",
                "strength",
                "unit",
                "direction",
                "phase",
                "scope",
                "prompt",
                "image",
                "sampling",
                "max_new_tokens",
            ]
            .into_iter()
            .find(|k| got.get(k) != want.get(k))
            .unwrap_or("settings");
            bail!(
                "{}:{}: rows were made with {key} = {}, this run has {}; use another --out or the same settings",
                path.display(),
                n + 1,
                got.get(key).unwrap_or(&got),
                want.get(key).unwrap_or(&want)
            );
        }
        done.insert(row.feature);
        offset += line.len();
    }
    Ok(done)
}

/// Run `job`: one default generation, then one steered generation per owned, not-yet-done feature.
pub fn run_steer(
    session: &Session,
    job: &SteerJob,
    max_act: &mut dyn FnMut(u32) -> Result<Option<f32>>,
    on_row: &mut dyn FnMut(&SteerRow, &Generation),
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
        let row = SteerRow {
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

/// `glint --batch steer`.
pub fn command(model: &ModelArgs, args: &SteerArgs) -> Result<()> {
    let session = Session::open(model, None)?;
    let features = parse_features(&args.features, session.sae.hookpoint())?;
    let shard = match &args.shard {
        Some(s) => Some(Shard::parse(s)?),
        None => Shard::from_env(|k| std::env::var(k).ok())?,
    };
    let sampling = Sampling::new(args.temperature, args.top_p, args.seed)?;
    let settings = RunSettings {
        mode: args.mode,
        strength: args.strength,
        unit: args.unit,
        direction: args.direction,
        phase: args.phase.unwrap_or_else(|| args.mode.default_phase()),
        scope: args.tokens,
        prompt: args.prompt.clone(),
        image: args.image.as_ref().map(|p| p.display().to_string()),
        sampling,
        max_new_tokens: args.max_new_tokens,
    };
    Scope {
        phase: settings.phase,
        tokens: settings.scope,
    }
    .check()?;
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling,
        stop_ids: None,
    };
    let job = SteerJob {
        settings,
        features,
        options,
        out: shard_path(&args.out, shard),
        shard,
    };
    let mut lookup: Box<dyn FnMut(u32) -> Result<Option<f32>>> = match args.unit {
        StrengthUnit::Max => Box::new(store_max_act(&args.store, &session)?),
        StrengthUnit::Raw => Box::new(|_| Ok(None)),
    };
    let quiet = args.json;
    let stream = args.stream;
    let mut err = std::io::stderr();
    let mut on_event = |who: Option<u32>, e: TokenEvent| {
        if !stream {
            return;
        }
        let _ = match e {
            TokenEvent::Prefilled { .. } => write!(
                err,
                "{}: ",
                who.map_or("default".into(), |f| format!("feature {f}"))
            ),
            TokenEvent::Token { text, .. } => write!(err, "{text}"),
            TokenEvent::Finished { tail, .. } => writeln!(err, "{tail}"),
        };
    };
    let tty = std::io::stderr().is_terminal();
    let mut on_row = |row: &SteerRow, g: &Generation| {
        if quiet {
            return;
        }
        let same = if row.identical {
            " (same as default)"
        } else {
            ""
        };
        eprintln!(
            "feature {}: {} tokens, {:.1} tokens/s{same}",
            row.feature,
            row.tokens.len(),
            g.tokens_per_second()
        );
        for w in &row.warnings {
            eprintln!("  warning: {w}");
        }
        if tty {
            let _ = std::io::stderr().flush();
        }
    };
    let sum = run_steer(&session, &job, &mut *lookup, &mut on_row, &mut on_event)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&sum)?);
    } else {
        println!(
            "steered {} features into {} ({} resumed, {} unchanged, {} with warnings) · {:.1} tokens/s",
            sum.written, sum.out, sum.resumed, sum.identical, sum.warned, sum.tokens_per_second
        );
    }
    Ok(())
}

/// Decode tokens/s of `n_tokens` greedy steps without and with a clamp on feature 0 at every
/// position (a text prompt, end tokens ignored; one warm-up run each).
pub fn bench_decode(session: &Session, n_tokens: usize) -> Result<(f64, f64)> {
    let prompt = PreparedPrompt::new(session, "Tell me a story about Alice and Bob.", None)?;
    let opts = GenerateOptions {
        max_new_tokens: n_tokens.max(2),
        sampling: Sampling::Greedy,
        stop_ids: Some(Vec::new()),
    };
    let mut steering = Steering::new(Mode::Clamp, &[(0, 10.0)]);
    steering.scope.phase = Phase::Both;
    let iv = steering.resolve(&mut |_| Ok(None))?;
    let cancel = CancelToken::never();
    let rate = |iv: Option<&_>| -> Result<f64> {
        generate(session, &prompt, iv, &opts, &cancel, &mut |_| {
            ControlFlow::Continue(())
        })?;
        let g = generate(session, &prompt, iv, &opts, &cancel, &mut |_| {
            ControlFlow::Continue(())
        })?;
        Ok(g.tokens_per_second())
    };
    Ok((rate(None)?, rate(Some(&iv))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RunSettings {
        RunSettings {
            mode: Mode::Clamp,
            strength: 50.0,
            unit: StrengthUnit::Raw,
            direction: Direction::Raw,
            phase: Phase::Both,
            scope: TokenScope::All,
            prompt: "Tell me a story.".into(),
            image: None,
            sampling: Sampling::Greedy,
            max_new_tokens: 8,
        }
    }

    fn row(feature: u32, settings: RunSettings) -> String {
        let r = SteerRow {
            feature,
            settings,
            value: 50.0,
            default: "a".into(),
            steered: "b".into(),
            tokens: vec![1, 2],
            stop: StopReason::MaxTokens,
            identical: false,
            mean_rel_change: 0.5,
            warnings: Vec::new(),
        };
        serde_json::to_string(&r).unwrap() + "\n"
    }

    #[test]
    fn features_come_from_lists_ranges_and_filter_files() {
        assert_eq!(parse_features("17, 3,3", "h").unwrap(), vec![3, 17]);
        assert_eq!(parse_features("4..7", "h").unwrap(), vec![4, 5, 6]);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("filter.json");
        std::fs::write(&f, r#"{"model.layers.2": [9, 1]}"#).unwrap();
        assert_eq!(
            parse_features(f.to_str().unwrap(), "model.layers.2").unwrap(),
            vec![1, 9]
        );
        assert!(
            parse_features("x", "h")
                .unwrap_err()
                .to_string()
                .contains("not a feature index")
        );
        assert!(parse_features("", "h").is_err());
    }

    #[test]
    fn shards_write_their_own_file() {
        let s = Shard::parse("1/4").unwrap();
        assert_eq!(
            shard_path(Path::new("out/steer.jsonl"), Some(s)),
            Path::new("out/steer.shard-1-of-4.jsonl")
        );
        assert_eq!(
            shard_path(Path::new("steer.jsonl"), None),
            Path::new("steer.jsonl")
        );
    }

    #[test]
    fn resume_skips_done_features_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s.jsonl");
        assert!(read_done(&out, &settings()).unwrap().is_empty());
        let good = row(3, settings()) + &row(5, settings());
        let torn = row(8, settings());
        std::fs::write(&out, format!("{good}{}", &torn[..torn.len() / 2])).unwrap();
        assert_eq!(
            read_done(&out, &settings())
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![3, 5]
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), good);
    }

    #[test]
    fn resume_refuses_rows_of_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s.jsonl");
        std::fs::write(
            &out,
            row(
                3,
                RunSettings {
                    strength: 10.0,
                    ..settings()
                },
            ),
        )
        .unwrap();
        let err = read_done(&out, &settings()).unwrap_err().to_string();
        assert!(
            err.contains("strength = 10") && err.contains("this run has 50"),
            "{err}"
        );
        std::fs::write(&out, "{}\n").unwrap();
        assert!(
            read_done(&out, &settings())
                .unwrap_err()
                .to_string()
                .contains("s.jsonl:1")
        );
    }

    #[test]
    fn bench_reports_both_rates() {
        let args = crate::cli::ModelArgs {
            model: None,
            sae: None,
            hookpoint: None,
            device: "cpu".into(),
            dtype: "f32".into(),
            random_weights: None,
            max_pixels: 40_000_000,
        };
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
