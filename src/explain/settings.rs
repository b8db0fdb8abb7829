//! The explainer's settings as one typed struct: what `glint --batch explain` takes from its
//! flags and what the workbench reads from `glint/explainer.toml` (keys are the long flags), with
//! one set of defaults.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use super::explainer::ExplainerConfig;
use super::prompt::PromptTemplate;
use super::seed_json::SEED_EXPLAINER;
use super::select::{EvidenceOptions, EvidenceStyle};
use crate::llm::{ClientConfig, Endpoint};

/// Server used when neither a flag, the file nor `GLINT_EXPLAIN_URL` names one.
pub const DEFAULT_EXPLAIN_URL: &str = "http://localhost:12345";
/// Environment variable naming the explainer server.
pub const EXPLAIN_URL_ENV: &str = "GLINT_EXPLAIN_URL";
/// Environment variable holding the API key, by default.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";
/// Seconds allowed per request attempt, by default.
pub const DEFAULT_TIMEOUT_S: f64 = 600.0;
/// Retries per request on timeouts, 429 and 5xx, by default.
pub const DEFAULT_RETRIES: u32 = 3;
/// Top examples shown per feature, by default (the original's).
pub const DEFAULT_EXAMPLES: usize = 5;
/// Longest side of heat images in pixels, by default.
pub const DEFAULT_MAX_SIDE: u32 = 672;
/// Cap on generated tokens, by default.
pub const DEFAULT_MAX_TOKENS: u32 = 512;

/// How features are explained: the server, the evidence images and the prompt.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ExplainSettings {
    /// Server root (`http://host:port`), its `/v1`, or the full chat-completions URL.
    pub base_url: String,
    /// Explainer model name sent to the server (default: the original's).
    pub explainer_model: Option<String>,
    /// Environment variable holding the API key (unset: no Authorization header).
    pub api_key_env: String,
    /// Extra request headers `Name: value`.
    #[serde(rename = "header")]
    pub headers: Vec<String>,
    /// Seconds allowed per request attempt.
    pub timeout: f64,
    /// Retries per request on timeouts, 429 and 5xx.
    pub retries: u32,
    /// Top examples shown per feature.
    pub examples: usize,
    /// Extra examples: one from each of this many slices of the weaker stored examples.
    pub quantiles: usize,
    /// Evidence images: mask (the original's) or heat.
    #[serde(deserialize_with = "from_name")]
    pub style: EvidenceStyle,
    /// Longest side of heat images in pixels.
    pub max_side: u32,
    /// Prompt template file (default: the shipped explain-v1).
    pub prompt_file: Option<PathBuf>,
    /// Sampling temperature.
    pub temperature: f32,
    /// Cap on generated tokens (0: leave it to the server).
    pub max_tokens: u32,
    /// Mark image parts `"modalities": "multi-images"` (sglang with LLaVA-OneVision).
    pub sglang_multi_images: bool,
    /// Dataset folder or manifest, if it moved since caching.
    pub dataset: Option<PathBuf>,
}

impl Default for ExplainSettings {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_EXPLAIN_URL.into(),
            explainer_model: None,
            api_key_env: DEFAULT_API_KEY_ENV.into(),
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT_S,
            retries: DEFAULT_RETRIES,
            examples: DEFAULT_EXAMPLES,
            quantiles: 0,
            style: EvidenceStyle::default(),
            max_side: DEFAULT_MAX_SIDE,
            prompt_file: None,
            temperature: 0.0,
            max_tokens: DEFAULT_MAX_TOKENS,
            sglang_multi_images: false,
            dataset: None,
        }
    }
}

fn from_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EvidenceStyle, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl ExplainSettings {
    /// Settings from a TOML table read from file `name` (may be empty); `env_url` (the value of
    /// [`EXPLAIN_URL_ENV`]) applies when the file names no server. Errors name the file and line.
    pub fn from_toml(name: &str, text: &str, env_url: Option<String>) -> Result<Self> {
        let table: toml::Table = toml::from_str(text).map_err(|e| anyhow!("{name}: {e}"))?;
        for (key, value) in &table {
            let line = top_line(text, key);
            let single = toml::Table::from_iter([(key.clone(), value.clone())]);
            if let Err(e) = single.try_into::<ExplainSettings>() {
                let msg = e.message().to_string();
                if msg.starts_with("unknown field") {
                    bail!(
                        "{name}:{line}: unknown setting {key:?}; settings are {}",
                        SETTING_KEYS.join(", ")
                    );
                }
                bail!("{name}:{line}: {key}: {msg}");
            }
        }
        let mut settings: ExplainSettings = table
            .clone()
            .try_into()
            .map_err(|e| anyhow!("{name}: {}", e.message()))?;
        if !table.contains_key("base-url")
            && let Some(url) = env_url
        {
            settings.base_url = url;
        }
        Ok(settings)
    }

    /// The explainer configuration (client, evidence, prompt), checking the values;
    /// `max_pixels` bounds the images read.
    pub fn config(&self, max_pixels: u64) -> Result<ExplainerConfig> {
        let endpoint = Endpoint {
            base_url: &self.base_url,
            model: self.explainer_model.as_deref().unwrap_or(SEED_EXPLAINER),
            api_key_env: &self.api_key_env,
            headers: &self.headers,
            timeout: self.timeout,
            retries: self.retries,
            sglang_multi_images: self.sglang_multi_images,
        };
        let client = ClientConfig {
            temperature: self.temperature,
            max_tokens: (self.max_tokens > 0).then_some(self.max_tokens),
            ..endpoint.client_config()?
        };
        if self.examples == 0 {
            bail!("--examples 0 would show the explainer nothing; the original uses 5");
        }
        let evidence = EvidenceOptions {
            style: self.style,
            examples: self.examples,
            extra_quantiles: self.quantiles,
            max_side: self.max_side,
            max_pixels,
        };
        let prompt = match &self.prompt_file {
            Some(p) => PromptTemplate::from_file(p)?,
            None => PromptTemplate::builtin(),
        };
        Ok(ExplainerConfig {
            client,
            evidence,
            prompt,
            dataset: self.dataset.clone(),
        })
    }
}

/// The keys an explainer file may set (the long flags of `glint --batch explain` that mean
/// something for one feature at a time).
pub const SETTING_KEYS: &[&str] = &[
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

/// 1-based line of top-level `key` in `text`, for error messages.
fn top_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let lhs = l.split('=').next().unwrap_or("").trim();
            lhs.trim_matches(|c| c == '"' || c == '\'') == key
        })
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_key_is_a_setting() {
        let text = "base-url = \"u\"\nexplainer-model = \"m\"\napi-key-env = \"K\"\nheader = [\"A: b\"]\n\
                    timeout = 5.0\nretries = 1\nexamples = 2\nquantiles = 1\nstyle = \"heat\"\n\
                    max-side = 100\nprompt-file = \"p.txt\"\ntemperature = 0.5\nmax-tokens = 9\n\
                    sglang-multi-images = true\ndataset = \"d\"\n";
        let table: toml::Table = toml::from_str(text).unwrap();
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut listed = SETTING_KEYS.to_vec();
        listed.sort_unstable();
        assert_eq!(keys, listed);
        let s = ExplainSettings::from_toml("e.toml", text, None).unwrap();
        assert_eq!(
            (s.base_url.as_str(), s.examples, s.style),
            ("u", 2, EvidenceStyle::Heat)
        );
    }

    #[test]
    fn the_environment_names_the_server_unless_the_file_does() {
        let env = Some("http://env:1".to_string());
        let s = ExplainSettings::from_toml("e.toml", "", env.clone()).unwrap();
        assert_eq!(s.base_url, "http://env:1");
        let s = ExplainSettings::from_toml("e.toml", "base-url = \"http://f:2\"\n", env).unwrap();
        assert_eq!(s.base_url, "http://f:2");
        assert_eq!(
            ExplainSettings::from_toml("e.toml", "", None).unwrap(),
            ExplainSettings::default()
        );
    }
}
