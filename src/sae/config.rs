//! `cfg.json` of one SAE hookpoint (EleutherAI layout) and hookpoint naming.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// Keys that, when present with these values, select an SAE variant glint does not implement.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("skip_connection", "a skip connection (W_skip)"),
    (
        "transcode",
        "a transcoder (it maps one hookpoint to another)",
    ),
];

/// The `cfg.json` of one hookpoint folder: the config fields plus `d_in`.
///
/// Unknown keys are kept in [`SaeConfig::extra`] so that a save writes them back unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SaeConfig {
    /// Latents per input dimension, used only when `num_latents` is 0.
    #[serde(default = "default_expansion_factor")]
    pub expansion_factor: usize,
    /// Whether decoder rows are kept at unit norm (training only).
    #[serde(default = "default_true")]
    pub normalize_decoder: bool,
    /// Explicit dictionary width; 0 means `d_in * expansion_factor`.
    #[serde(default)]
    pub num_latents: usize,
    /// Latents kept per token.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Training-only auxiliary loss flag.
    #[serde(default)]
    pub multi_topk: bool,
    /// Legacy flag without effect; written back only when true, because some Python loaders
    /// reject unknown keys and older files carry it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub signed: bool,
    /// Input width (the model's hidden size).
    pub d_in: usize,
    /// Keys this version does not know, kept for round trips.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn default_expansion_factor() -> usize {
    32
}
fn default_true() -> bool {
    true
}
fn default_k() -> usize {
    32
}
fn is_false(b: &bool) -> bool {
    !*b
}

impl SaeConfig {
    /// A config with the Python defaults for input width `d_in`.
    pub fn new(d_in: usize) -> Self {
        Self {
            expansion_factor: default_expansion_factor(),
            normalize_decoder: true,
            num_latents: 0,
            k: default_k(),
            multi_topk: false,
            signed: false,
            d_in,
            extra: BTreeMap::new(),
        }
    }

    /// Dictionary width: `num_latents`, or `d_in * expansion_factor` when that is 0.
    pub fn width(&self) -> usize {
        if self.num_latents != 0 {
            self.num_latents
        } else {
            self.d_in.saturating_mul(self.expansion_factor)
        }
    }

    /// Parse `cfg.json` text.
    pub fn from_json(text: &str) -> Result<Self> {
        Ok(serde_json::from_str(text)?)
    }

    /// Serialise as `cfg.json` text.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Check that the numbers are usable and that no unsupported variant is selected.
    pub fn validate(&self) -> Result<()> {
        if self.d_in == 0 {
            bail!("d_in is 0; it must be the model's hidden size");
        }
        let n = self.width();
        if n == 0 {
            bail!("the SAE has no latents (num_latents 0 and expansion_factor 0)");
        }
        if self.k == 0 || self.k > n {
            bail!(
                "k = {} must be between 1 and the number of latents ({n})",
                self.k
            );
        }
        for (key, what) in UNSUPPORTED {
            if self
                .extra
                .get(*key)
                .is_some_and(|v| v.as_bool() == Some(true))
            {
                bail!("`{key}: true` selects {what}, which glint does not support");
            }
        }
        if let Some(act) = self.extra.get("activation").and_then(|v| v.as_str())
            && act != "topk"
        {
            bail!("activation `{act}` is not supported; glint implements TopK SAEs only");
        }
        Ok(())
    }
}

/// Decoder layer whose residual output the hookpoint names, e.g. `model.layers.24` → 24.
///
/// Accepts any prefix (`layers.24`, `language_model.model.layers.24`,
/// `model.language_model.layers.24`) but requires the name to end in `layers.<n>`: a sub-module
/// such as `model.layers.24.mlp` is not the residual stream and yields `None`.
pub fn layer_of_hookpoint(name: &str) -> Option<usize> {
    let mut parts = name.rsplit('.');
    let index = parts.next()?;
    if parts.next()? != "layers" || index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    index.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_width() {
        let c = SaeConfig::from_json(r#"{"d_in": 8}"#).unwrap();
        assert_eq!(c, SaeConfig::new(8));
        assert_eq!(c.width(), 256);
        let c = SaeConfig::from_json(r#"{"d_in": 8, "num_latents": 40, "k": 3}"#).unwrap();
        assert_eq!((c.width(), c.k), (40, 3));
    }

    #[test]
    fn d_in_required() {
        let err = SaeConfig::from_json(r#"{"k": 4}"#).unwrap_err().to_string();
        assert!(err.contains("d_in"), "{err}");
    }

    #[test]
    fn unknown_keys_round_trip_and_signed_only_when_true() {
        let text = r#"{"expansion_factor":32,"normalize_decoder":true,"num_latents":131072,
            "k":256,"multi_topk":false,"signed":false,"d_in":4096,"note":{"a":[1,2]}}"#;
        let c = SaeConfig::from_json(text).unwrap();
        assert_eq!(c.extra["note"], serde_json::json!({"a": [1, 2]}));
        let out = c.to_json().unwrap();
        assert!(!out.contains("signed"), "{out}");
        assert_eq!(SaeConfig::from_json(&out).unwrap(), c);
        let signed = SaeConfig { signed: true, ..c };
        assert!(signed.to_json().unwrap().contains("\"signed\": true"));
    }

    #[test]
    fn validate_rejects_bad_numbers_and_variants() {
        let ok = SaeConfig {
            num_latents: 6,
            k: 6,
            ..SaeConfig::new(3)
        };
        ok.validate().unwrap();
        let big_k = SaeConfig { k: 7, ..ok.clone() };
        assert!(big_k.validate().unwrap_err().to_string().contains("k = 7"));
        let mut skip = ok.clone();
        skip.extra.insert("skip_connection".into(), true.into());
        assert!(
            skip.validate()
                .unwrap_err()
                .to_string()
                .contains("skip_connection")
        );
        let mut off = ok.clone();
        off.extra.insert("skip_connection".into(), false.into());
        off.validate().unwrap();
        let mut act = ok;
        act.extra.insert("activation".into(), "groupmax".into());
        assert!(act.validate().unwrap_err().to_string().contains("groupmax"));
    }

    #[test]
    fn hookpoint_layers() {
        assert_eq!(layer_of_hookpoint("model.layers.24"), Some(24));
        assert_eq!(layer_of_hookpoint("layers.24"), Some(24));
        assert_eq!(
            layer_of_hookpoint("language_model.model.layers.24"),
            Some(24)
        );
        assert_eq!(layer_of_hookpoint("model.language_model.layers.3"), Some(3));
        assert_eq!(layer_of_hookpoint("model.layers.24.mlp"), None);
        assert_eq!(layer_of_hookpoint("model.layers.x"), None);
        assert_eq!(layer_of_hookpoint("model.layers.+1"), None);
        assert_eq!(layer_of_hookpoint("model.blocks.2"), None);
        assert_eq!(layer_of_hookpoint("24"), None);
        assert_eq!(layer_of_hookpoint(""), None);
    }
}
