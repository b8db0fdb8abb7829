//! Explainer settings for the workbench's explain key: the defaults of `glint --batch explain`
//! (so `GLINT_EXPLAIN_URL` and `OPENAI_API_KEY` work the same way), with an optional
//! `glint/explainer.toml` in the user config folder whose keys are that command's long flags.

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

/// The settings from the user's `glint/explainer.toml`, or the defaults without one.
pub fn load(model: &ModelSpec) -> Result<ExplainerConfig> {
    let path = dirs::config_dir().map(|d| d.join("glint").join("explainer.toml"));
    match path.filter(|p| p.is_file()) {
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| anyhow!("cannot read {}: {e}", p.display()))?;
            config_from_toml(&p.display().to_string(), &text, model)
        }
        None => config_from_toml("explainer defaults", "", model),
    }
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
