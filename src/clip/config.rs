//! `config.json` of a Hugging Face `CLIPModel`: text tower, vision tower and projection width.

use anyhow::{Result, bail};
use serde::Deserialize;

/// Settings shared by both towers' encoder layers.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSpec {
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// MLP activation name as transformers spells it.
    pub hidden_act: String,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: f64,
}

/// `text_config`; defaults are transformers' `CLIPTextConfig` ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Context length (77 for every OpenAI CLIP).
    pub max_position_embeddings: usize,
    /// MLP activation.
    pub hidden_act: String,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// End-of-text id; the value 2 selects the legacy "argmax of ids" pooling (a list: its first).
    #[serde(deserialize_with = "de_eos")]
    pub eos_token_id: i64,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

fn de_eos<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(i64),
        Many(Vec<i64>),
    }
    match OneOrMany::deserialize(d)? {
        OneOrMany::One(v) => Ok(v),
        OneOrMany::Many(v) => v
            .first()
            .copied()
            .ok_or_else(|| serde::de::Error::custom("eos_token_id is an empty list")),
    }
}

/// `vision_config`; defaults are transformers' `CLIPVisionConfig` ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Side of the square input in pixels.
    pub image_size: usize,
    /// Side of one patch in pixels.
    pub patch_size: usize,
    /// MLP activation.
    pub hidden_act: String,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

/// The whole `config.json` of a `CLIPModel`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    /// Text tower.
    #[serde(default)]
    pub text_config: ClipTextConfig,
    /// Vision tower.
    #[serde(default)]
    pub vision_config: ClipVisionConfig,
    /// Width of the shared embedding space.
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
}

fn default_projection_dim() -> usize {
    512
}

/// Activations CLIP checkpoints use, resolved once at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP).
    QuickGelu,
    /// Exact erf GELU (`gelu`).
    Gelu,
    /// Tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Activation {
    /// Parse a transformers activation name, saying which names work.
    pub fn parse(name: &str, origin: &str) -> Result<Self> {
        Ok(match name {
            "quick_gelu" => Self::QuickGelu,
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Self::GeluTanh,
            other => bail!(
                "{origin}: hidden_act {other:?} is not supported (use quick_gelu, gelu, gelu_new or gelu_pytorch_tanh)"
            ),
        })
    }
}

impl ClipTextConfig {
    /// The encoder settings of the text tower.
    pub fn encoder(&self) -> EncoderSpec {
        EncoderSpec {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            hidden_act: self.hidden_act.clone(),
            layer_norm_eps: self.layer_norm_eps,
        }
    }
}

impl ClipVisionConfig {
    /// The encoder settings of the vision tower.
    pub fn encoder(&self) -> EncoderSpec {
        EncoderSpec {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            hidden_act: self.hidden_act.clone(),
            layer_norm_eps: self.layer_norm_eps,
        }
    }

    /// Patches per side.
    pub fn grid_side(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }
}

impl ClipConfig {
    /// Parse `config.json` text; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("{origin}: not a CLIP config.json: {e}"))?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Reject shapes the towers cannot be built with, naming the key to fix.
    pub fn validate(&self, origin: &str) -> Result<()> {
        for (tower, enc) in [
            ("text_config", self.text_config.encoder()),
            ("vision_config", self.vision_config.encoder()),
        ] {
            if enc.hidden_size == 0 || enc.num_attention_heads == 0 {
                bail!("{origin}: {tower}.hidden_size and num_attention_heads must be non-zero");
            }
            if enc.hidden_size % enc.num_attention_heads != 0 {
                bail!(
                    "{origin}: {tower}.hidden_size {} is not divisible by num_attention_heads {}",
                    enc.hidden_size,
                    enc.num_attention_heads
                );
            }
            Activation::parse(&enc.hidden_act, &format!("{origin}: {tower}"))?;
        }
        let v = &self.vision_config;
        if v.patch_size == 0 || v.image_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            bail!(
                "{origin}: vision_config.image_size {} must be a non-zero multiple of patch_size {}",
                v.image_size,
                v.patch_size
            );
        }
        if self.text_config.max_position_embeddings < 2 {
            bail!("{origin}: text_config.max_position_embeddings must be at least 2");
        }
        if self.projection_dim == 0 {
            bail!("{origin}: projection_dim must be non-zero");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_style_config_parses_with_defaults() {
        // openai/clip-vit-base-patch32 keeps the legacy eos_token_id 2 in text_config.
        let text = r#"{"projection_dim": 512,
            "text_config": {"eos_token_id": 2, "hidden_size": 512},
            "vision_config": {"patch_size": 32}}"#;
        let cfg = ClipConfig::from_json(text, "config.json").unwrap();
        assert_eq!(cfg.text_config.eos_token_id, 2);
        assert_eq!(cfg.text_config.max_position_embeddings, 77);
        assert_eq!(cfg.vision_config.grid_side(), 7);
        assert_eq!(cfg.vision_config.hidden_size, 768);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let err = ClipConfig::from_json(
            r#"{"vision_config": {"image_size": 100, "patch_size": 32}}"#,
            "c.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("c.json") && err.contains("patch_size"),
            "{err}"
        );
        let err = ClipConfig::from_json(r#"{"text_config": {"hidden_act": "swish"}}"#, "c.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("text_config") && err.contains("swish"),
            "{err}"
        );
        let err = ClipConfig::from_json(r#"{"projection_dim": "wide"}"#, "c.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a CLIP config"), "{err}");
    }
}
