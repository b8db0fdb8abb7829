//! The steering JSONL: row format, feature lists, shard file names, and resuming a file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::dataset::Shard;
use crate::generate::{Sampling, StopReason, StrengthUnit};
use crate::sae::intervene::{Direction, Mode, Phase, TokenScope};
use crate::store::FeatureFilter;

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
pub struct SteerRecord {
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

/// The features a steering run visits, in the one feature-list grammar (`all` is refused).
pub fn parse_features(spec: &str, hookpoint: &str) -> Result<Vec<u32>> {
    FeatureFilter::parse(spec, hookpoint)?.to_list(spec)
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
        let row: SteerRecord = serde_json::from_slice(line).with_context(|| {
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
        let r = SteerRecord {
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
}
