//! The original system's explanation files: a JSON list of one-key objects
//! `[{"model.layers.24_feature123": "<explanation>"}, …]`, one file per layer named
//! `model_layers_24.json`. Exported so its tools read glint's explanations, imported so its
//! published explanations open in glint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::store::{Explanation, FeatureFilter, Store, unix_now};

/// The explainer the original system hard-codes, recorded on imports unless told otherwise.
pub const SEED_EXPLAINER: &str = "lmms-lab/llava-onevision-qwen2-72b-ov";

/// Prompt hash recorded on imported explanations (their prompt is not known exactly).
pub const SEED_PROMPT_HASH: &str = "seed-import";

/// Ending of the original's fallback text for unparsed answers.
const UNPARSED_TAIL: &str = "Explanation could not be parsed.";

/// The original's file name for a hookpoint: dots become underscores, plus `.json`.
pub fn seed_file_name(hookpoint: &str) -> String {
    format!("{}.json", hookpoint.replace('.', "_"))
}

/// The original's key of feature `f` (`{module}_feature{f}`).
pub fn seed_key(hookpoint: &str, f: u32) -> String {
    format!("{hookpoint}_feature{f}")
}

/// Write the newest explanation of each feature of `filter` (only `model`'s when given) to
/// `path`, or to `path/<module>.json` when `path` is a folder. Returns the file and the count.
pub fn export_seed_json(
    store: &Store,
    path: &Path,
    model: Option<&str>,
    filter: &FeatureFilter,
) -> Result<(PathBuf, usize)> {
    let hookpoint = &store.manifest().hookpoint;
    let file = if path.is_dir() {
        path.join(seed_file_name(hookpoint))
    } else {
        path.to_path_buf()
    };
    let mut all = store.all_explanations()?;
    all.retain(|e| filter.contains(e.feature) && model.is_none_or(|m| e.explainer_model == m));
    // Newest per feature: sort by feature, newest first, keep the first of each feature.
    all.sort_by(|a, b| {
        a.feature
            .cmp(&b.feature)
            .then(b.created_unix.cmp(&a.created_unix))
    });
    all.dedup_by_key(|e| e.feature);
    let list: Vec<Value> = all
        .iter()
        .map(|e| {
            let mut obj = serde_json::Map::new();
            obj.insert(
                seed_key(hookpoint, e.feature),
                Value::String(e.text.clone()),
            );
            Value::Object(obj)
        })
        .collect();
    let mut bytes = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    list.serialize(&mut serde_json::Serializer::with_formatter(&mut bytes, fmt))?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    // Write beside and rename, so a reader never sees half a file.
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("{}: cannot write", file.display()))?;
    Ok((file, list.len()))
}

/// What an import found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Files read.
    pub files: usize,
    /// Explanations stored.
    pub imported: usize,
    /// Entries for other hookpoints (the original writes one file per layer).
    pub other_hookpoints: usize,
    /// Entries outside `--features` or past the SAE's latents.
    pub skipped: usize,
}

/// `(hookpoint, feature)` of a key like `model.layers.24_feature123`.
fn parse_key(key: &str) -> Option<(&str, u32)> {
    let (module, f) = key.rsplit_once("_feature")?;
    Some((module, f.parse().ok()?))
}

/// The (key, text) entries of one file: a list of one-key objects, or one object.
fn read_entries(file: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read", file.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not JSON; expected the original's list of {{\"<module>_feature<f>\": text}}",
            file.display()
        )
    })?;
    let objects = match v {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => bail!(
            "{}: expected a JSON list of {{\"<module>_feature<f>\": text}} objects",
            file.display()
        ),
    };
    let mut out = Vec::new();
    for item in objects {
        let Value::Object(map) = item else {
            bail!(
                "{}: list items must be objects like {{\"model.layers.24_feature3\": \"…\"}}",
                file.display()
            );
        };
        for (k, v) in map {
            match v {
                Value::String(s) => out.push((k, s)),
                other => bail!("{}: entry {k:?} is {other}, not a string", file.display()),
            }
        }
    }
    Ok(out)
}

/// Import the original's explanation files (`path` a file, or a folder whose `*.json` files are
/// all read) for this store's hookpoint, recorded as made by `model`.
pub fn import_seed_json(
    store: &Store,
    path: &Path,
    model: &str,
    filter: &FeatureFilter,
) -> Result<ImportSummary> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot list", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    let m = store.manifest();
    let mut sum = ImportSummary {
        files: files.len(),
        ..Default::default()
    };
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (key, text) in read_entries(file)? {
            if key == "prompt" {
                continue; // The original's text explainer stores its prompt beside the entries.
            }
            let Some((module, f)) = parse_key(&key) else {
                bail!(
                    "{}: key {key:?} is not of the form <module>_feature<index>",
                    file.display()
                );
            };
            if module != m.hookpoint {
                sum.other_hookpoints += 1;
                continue;
            }
            if f as usize >= m.num_latents || !filter.contains(f) {
                sum.skipped += 1;
                continue;
            }
            store.put_explanation(&Explanation {
                feature: f,
                parsed: !text.trim_end().ends_with(UNPARSED_TAIL),
                raw_response: text.clone(),
                text,
                label: None,
                explainer_model: model.to_string(),
                base_url_host: String::new(),
                prompt_hash: SEED_PROMPT_HASH.into(),
                example_images: Vec::new(),
                created_unix: unix_now(),
                usage: None,
                imported_from: Some(name.clone()),
            })?;
            sum.imported += 1;
        }
    }
    if sum.imported == 0 && sum.other_hookpoints > 0 {
        bail!(
            "{}: no entry is for this store's hookpoint {:?} ({} are for others); import the file of that layer",
            path.display(),
            m.hookpoint,
            sum.other_hookpoints
        );
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RankRule;

    fn store(dir: &Path) -> Store {
        let m = crate::store::Manifest {
            schema_version: crate::store::SCHEMA_VERSION,
            glint_version: crate::store::GLINT_VERSION.into(),
            model_id: "m".into(),
            model_fingerprint: "0".into(),
            sae_id: "s".into(),
            sae_fingerprint: "0".into(),
            hookpoint: "model.layers.24".into(),
            layer: 24,
            num_latents: 64,
            k: 4,
            dataset: "d".into(),
            dataset_fingerprint: "0".into(),
            preprocessing: Value::Null,
            rank: RankRule::Max,
            top_n: 3,
            shard: None,
            features: FeatureFilter::All,
            tokens: Default::default(),
            range_sample: 0,
        };
        Store::create(&dir.join("s"), &m).unwrap()
    }

    #[test]
    fn seed_files_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let seed = r#"[
            {"model.layers.24_feature3": "Mesh-like structures."},
            {"model.layers.24_feature40": "Response blah. Explanation could not be parsed."},
            {"model.layers.23_feature5": "other layer"},
            {"model.layers.24_feature99": "past the SAE"},
            {"prompt": "ignored"}
        ]"#;
        let input = tmp.path().join("in");
        std::fs::create_dir_all(&input).unwrap();
        std::fs::write(input.join("model_layers_24.json"), seed).unwrap();
        std::fs::write(input.join("notes.txt"), "not read").unwrap();
        let sum = import_seed_json(&s, &input, SEED_EXPLAINER, &FeatureFilter::All).unwrap();
        assert_eq!(
            sum,
            ImportSummary {
                files: 1,
                imported: 2,
                other_hookpoints: 1,
                skipped: 1
            }
        );
        let e = s
            .explanation(3, SEED_EXPLAINER, SEED_PROMPT_HASH)
            .unwrap()
            .unwrap();
        assert_eq!((e.text.as_str(), e.parsed), ("Mesh-like structures.", true));
        assert_eq!(e.imported_from.as_deref(), Some("model_layers_24.json"));
        assert!(
            !s.explanation(40, SEED_EXPLAINER, SEED_PROMPT_HASH)
                .unwrap()
                .unwrap()
                .parsed
        );

        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let (file, n) = export_seed_json(&s, &out, None, &FeatureFilter::All).unwrap();
        assert_eq!(
            (file.file_name().unwrap().to_str(), n),
            (Some("model_layers_24.json"), 2)
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("[\n    {\n        \"model.layers.24_feature3\""),
            "{text}"
        );
        let back: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back[1]["model.layers.24_feature40"],
            "Response blah. Explanation could not be parsed."
        );
        let (_, n) = export_seed_json(
            &s,
            &tmp.path().join("x.json"),
            Some("other-model"),
            &FeatureFilter::All,
        )
        .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let f = tmp.path().join("e.json");
        for (text, want) in [
            ("{", "not JSON"),
            ("[1]", "must be objects"),
            (r#"[{"model.layers.24_feature1": 3}]"#, "not a string"),
            (r#"[{"feature1": "x"}]"#, "<module>_feature<index>"),
            (
                r#"[{"model.layers.2_feature1": "x"}]"#,
                "hookpoint \"model.layers.24\"",
            ),
        ] {
            std::fs::write(&f, text).unwrap();
            let err = format!(
                "{:#}",
                import_seed_json(&s, &f, "m", &FeatureFilter::All).unwrap_err()
            );
            assert!(
                err.contains(want) && err.contains("e.json"),
                "{text}: {err}"
            );
        }
    }
}
