//! Explainer settings for the workbench's explain key: the defaults of `glint --batch explain`
//! (so `GLINT_EXPLAIN_URL` and `OPENAI_API_KEY` work the same way), with an optional
//! `glint/explainer.toml` in the user config folder whose keys are that command's long flags.

use std::path::Path;

use anyhow::{Result, anyhow};

use crate::explain::ExplainerConfig;
use crate::explain::settings::{EXPLAIN_URL_ENV, ExplainSettings};
use crate::session::ModelSpec;

pub use crate::explain::settings::SETTING_KEYS as KEYS;

/// The explainer settings from `text` (a TOML table, may be empty) read from file `name`.
pub fn config_from_toml(name: &str, text: &str, model: &ModelSpec) -> Result<ExplainerConfig> {
    let settings = ExplainSettings::from_toml(name, text, std::env::var(EXPLAIN_URL_ENV).ok())?;
    settings
        .config(model.max_pixels)
        .map_err(|e| anyhow!("{name}: {e:#}"))
}

/// The workbench's explainer settings, and what to say when nobody chose a server.
#[derive(Debug, Clone)]
pub struct ExplainerSetup {
    /// The settings.
    pub config: ExplainerConfig,
    /// Set when neither `GLINT_EXPLAIN_URL` nor an explainer file named the server: a request
    /// that cannot reach it then most likely means there is none, and this says how to name one.
    pub unconfigured: Option<String>,
}

/// What the explain key says when the default server does not answer and none was configured.
pub fn unconfigured_hint(base_url: &str, file: &Path) -> String {
    format!(
        "no explainer answers at {base_url} (the default): set {EXPLAIN_URL_ENV} to an \
         OpenAI-compatible server, or base-url in {}",
        file.display()
    )
}

/// The settings from the user's `glint/explainer.toml`, or the defaults without one.
pub fn load(model: &ModelSpec) -> Result<ExplainerSetup> {
    let file = dirs::config_dir()
        .unwrap_or_default()
        .join("glint")
        .join("explainer.toml");
    if file.is_file() {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
        let config = config_from_toml(&file.display().to_string(), &text, model)?;
        return Ok(ExplainerSetup {
            config,
            unconfigured: None,
        });
    }
    let mut config = config_from_toml("explainer defaults", "", model)?;
    if std::env::var_os(EXPLAIN_URL_ENV).is_some() {
        return Ok(ExplainerSetup {
            config,
            unconfigured: None,
        });
    }
    // Nobody named a server: ask the default once, and say at once how to name one.
    config.client.retries = 0;
    let unconfigured = Some(unconfigured_hint(&config.client.base_url, &file));
    Ok(ExplainerSetup {
        config,
        unconfigured,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelSpec {
        ModelSpec {
            max_pixels: 1_000_000,
            ..ModelSpec::default()
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
