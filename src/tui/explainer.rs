//! Explainer settings for the workbench's explain key: the defaults of `glint --batch explain`
//! (so `GLINT_EXPLAIN_URL` and `OPENAI_API_KEY` work the same way), with an optional
//! `glint/explainer.toml` in the user config folder whose keys are that command's long flags.

use anyhow::{Result, bail};
use clap::Parser;

use crate::cli::{ExplainArgs, ModelArgs};
use crate::explain::ExplainerConfig;
use crate::explain::command::explainer_config;

/// Flags of `glint --batch explain` that an explainer file may set; the rest (the store, the
/// feature list, batch controls) mean nothing for one feature at a time.
pub const KEYS: &[&str] = &[
    "base-url",
    "explainer-model",
    "api-key-env",
    "header",
    "timeout",
    "retries",
    "examples",
    "quantiles",
    "style",
    "max-side",
    "prompt-file",
    "temperature",
    "max-tokens",
    "sglang-multi-images",
    "dataset",
];

#[derive(Parser)]
#[command(name = "explainer.toml", no_binary_name = true)]
struct ExplainerFile {
    #[command(flatten)]
    args: ExplainArgs,
}

/// The explainer settings from `text` (a TOML table, may be empty) read from file `name`.
pub fn config_from_toml(name: &str, text: &str, model: &ModelArgs) -> Result<ExplainerConfig> {
    let table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let mut argv: Vec<String> = Vec::new();
    for (key, value) in &table {
        let line = top_line(text, key);
        if !KEYS.contains(&key.as_str()) {
            bail!(
                "{name}:{line}: unknown setting {key:?}; settings are {}",
                KEYS.join(", ")
            );
        }
        let flag = format!("--{key}");
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            _ => None,
        };
        match value {
            toml::Value::Boolean(true) => argv.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for v in items {
                    let Some(v) = scalar(v) else {
                        bail!("{name}:{line}: {key} must list strings or numbers");
                    };
                    argv.push(format!("{flag}={v}"));
                }
            }
            v => match scalar(v) {
                Some(v) => argv.push(format!("{flag}={v}")),
                None => bail!("{name}:{line}: {key} must be a string, number or true/false"),
            },
        }
    }
    let parsed = ExplainerFile::try_parse_from(&argv)
        .map_err(|e| anyhow::anyhow!("{name}: {}", e.to_string().trim()))?;
    explainer_config(model, &parsed.args).map_err(|e| anyhow::anyhow!("{name}: {e:#}"))
}

/// 1-based line of top-level `key` in `text`, for error messages.
fn top_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let lhs = l.split('=').next().unwrap_or("").trim();
            lhs.trim_matches(|c| c == '"' || c == '\'') == key
        })
        .map_or(0, |i| i + 1)
}

/// The settings from the user's `glint/explainer.toml`, or the defaults without one.
pub fn load(model: &ModelArgs) -> Result<ExplainerConfig> {
    let path = dirs::config_dir().map(|d| d.join("glint").join("explainer.toml"));
    match path.filter(|p| p.is_file()) {
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
            config_from_toml(&p.display().to_string(), &text, model)
        }
        None => config_from_toml("explainer defaults", "", model),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelArgs {
        ModelArgs {
            model: None,
            sae: None,
            hookpoint: None,
            device: "cpu".into(),
            dtype: "f32".into(),
            random_weights: None,
            max_pixels: 1_000_000,
            max_file_bytes: crate::model::image_file::DEFAULT_MAX_FILE_BYTES,
        }
    }

    #[test]
    fn file_keys_are_the_batch_flags_and_errors_name_the_line() {
        let text = "base-url = \"http://127.0.0.1:9\"\nexplainer-model = \"m\"\ntimeout = 5\n\
                    header = [\"X-A: 1\"]\nsglang-multi-images = true\nexamples = 3\n";
        let cfg = config_from_toml("e.toml", text, &model()).unwrap();
        assert_eq!(cfg.client.model, "m");
        assert_eq!(cfg.client.timeout.as_secs(), 5);
        assert_eq!(cfg.evidence.examples, 3);
        assert_eq!(cfg.client.headers.len(), 1);
        assert!(cfg.client.image_extra.contains_key("modalities"));
        let e = config_from_toml("e.toml", "timeout = 1\nstore = \"x\"\n", &model()).unwrap_err();
        assert!(e.to_string().contains("e.toml:2: unknown setting"), "{e}");
        let e = config_from_toml("e.toml", "style = \"plaid\"\n", &model()).unwrap_err();
        assert!(e.to_string().starts_with("e.toml"), "{e}");
        let e = config_from_toml("e.toml", "timeout = \"soon\"\n", &model()).unwrap_err();
        assert!(e.to_string().contains("e.toml"), "{e}");
    }
}
