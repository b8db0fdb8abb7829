//! Hugging Face `config.json` of a LLaVA-NeXT checkpoint, read with the defaults transformers uses.
//!
//! Hugging Face stores `text_config` and `vision_config` as diffs from the Llama and CLIP defaults,
//! so every field here defaults to the value of the corresponding transformers class.

use serde::{Deserialize, Serialize};

/// Whole-model configuration (`LlavaNextConfig` in transformers).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LlavaNextConfig {
    /// The language model (Llama family).
    #[serde(default)]
    pub text_config: TextConfig,
    /// The CLIP vision tower.
    #[serde(default)]
    pub vision_config: VisionConfig,
    /// Token id that stands for the image in `input_ids`.
    #[serde(default = "default_image_token_index", alias = "image_token_id")]
    pub image_token_index: u32,
    /// Candidate high-resolution canvases, as `[height, width]` pairs.
    #[serde(default = "default_pinpoints")]
    pub image_grid_pinpoints: Vec<[u32; 2]>,
    /// Vision hidden-state index the projector reads (Python-style, negative from the end).
    #[serde(default = "default_feature_layer")]
    pub vision_feature_layer: i32,
    /// `"default"` drops the CLS token, `"full"` keeps it.
    #[serde(default = "default_select_strategy")]
    pub vision_feature_select_strategy: String,
    /// Activation between the two projector layers.
    #[serde(default = "default_projector_act")]
    pub projector_hidden_act: String,
    /// Whether the projector linears carry biases.
    #[serde(default = "default_true")]
    pub multimodal_projector_bias: bool,
    /// Image tokens of the base view (24 x 24 at 336 px, patch 14).
    #[serde(default = "default_image_seq_length")]
    pub image_seq_length: usize,
    /// Whether `lm_head` shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Model type tag, kept for round trips.
    #[serde(default = "default_model_type")]
    pub model_type: String,
}

/// Llama language-model configuration (`LlamaConfig` defaults).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TextConfig {
    /// Width of the residual stream.
    #[serde(default = "d_4096")]
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    #[serde(default = "d_11008")]
    pub intermediate_size: usize,
    /// Number of decoder layers.
    #[serde(default = "d_32")]
    pub num_hidden_layers: usize,
    /// Query heads.
    #[serde(default = "d_32")]
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to hidden / heads.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "d_1e6")]
    pub rms_norm_eps: f64,
    /// Rotary base (older configs; newer ones put it in `rope_parameters`).
    #[serde(default = "d_10000")]
    pub rope_theta: f64,
    /// Rotary settings as transformers ≥ 5 writes them (`rope_theta`, `rope_type`).
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    /// Rotary scaling of Llama 3.1-style models (not supported; must be absent or null).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Vocabulary size of the embedding and head.
    #[serde(default = "d_32000")]
    pub vocab_size: usize,
    /// Longest sequence the rotary table covers.
    #[serde(default = "d_2048")]
    pub max_position_embeddings: usize,
    /// MLP activation (only `silu` is supported).
    #[serde(default = "default_silu")]
    pub hidden_act: String,
    /// Whether q/k/v/o projections have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether MLP projections have biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id or ids.
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Whether `lm_head` shares the embedding matrix (text-level flag).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Model type tag, kept for round trips.
    #[serde(default = "default_llama")]
    pub model_type: String,
}

/// CLIP vision-tower configuration (`CLIPVisionConfig` defaults).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VisionConfig {
    /// Width of the vision transformer.
    #[serde(default = "d_768")]
    pub hidden_size: usize,
    /// Width of its MLP.
    #[serde(default = "d_3072")]
    pub intermediate_size: usize,
    /// Number of encoder layers.
    #[serde(default = "d_12")]
    pub num_hidden_layers: usize,
    /// Attention heads.
    #[serde(default = "d_12")]
    pub num_attention_heads: usize,
    /// Side of the square input, in pixels.
    #[serde(default = "d_224")]
    pub image_size: usize,
    /// Side of one patch, in pixels.
    #[serde(default = "d_32")]
    pub patch_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "d_1e5")]
    pub layer_norm_eps: f64,
    /// MLP activation (`quick_gelu` for OpenAI CLIP).
    #[serde(default = "default_quick_gelu")]
    pub hidden_act: String,
    /// Input channels.
    #[serde(default = "d_3")]
    pub num_channels: usize,
    /// Width of the (unused here) projection head.
    #[serde(default = "d_512")]
    pub projection_dim: usize,
    /// Model type tag, kept for round trips.
    #[serde(default = "default_clip_vision")]
    pub model_type: String,
}

/// One token id or several (Llama-3 lists two end tokens).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// All ids as a vector.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

impl TextConfig {
    /// Rotary base, from `rope_parameters` when present.
    pub fn rope_base(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(|v| v.as_f64())
            .unwrap_or(self.rope_theta)
    }

    /// Rotary type (`default` unless the config names another).
    fn rope_type(&self) -> String {
        let from = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
                .and_then(|t| t.as_str())
                .map(String::from)
        };
        from(&self.rope_parameters)
            .or_else(|| from(&self.rope_scaling))
            .unwrap_or_else(|| "default".into())
    }

    /// Key/value heads, resolved.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    /// Per-head width, resolved.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }
}

impl VisionConfig {
    /// Patches per side of one view (24 for 336 px and patch 14).
    pub fn grid_side(&self) -> usize {
        self.image_size / self.patch_size
    }
}

impl LlavaNextConfig {
    /// Parse `config.json` text, naming `origin` in errors.
    pub fn from_json(text: &str, origin: &str) -> anyhow::Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("{origin}: not a LLaVA-NeXT config.json: {e}"))?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// The keys that set weight shapes and are absent from the `config.json` text, each with the
    /// default it took (`text_config.hidden_size = 4096`): when the weights then do not fit, the
    /// missing key, not a tensor shape, is the thing to name.
    pub fn defaulted_shape_keys(&self, text: &str) -> Vec<String> {
        const TEXT: [&str; 7] = [
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "vocab_size",
        ];
        const VISION: [&str; 7] = [
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "image_size",
            "patch_size",
            "num_channels",
        ];
        let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
            return Vec::new();
        };
        let resolved = serde_json::json!({
            "text_config": self.text_config,
            "vision_config": self.vision_config,
        });
        let mut out = Vec::new();
        for (section, keys) in [("text_config", &TEXT[..]), ("vision_config", &VISION[..])] {
            for key in keys {
                if json.get(section).and_then(|s| s.get(key)).is_none() {
                    out.push(format!("{section}.{key} = {}", resolved[section][key]));
                }
            }
        }
        out
    }

    /// Reject configurations glint cannot run, with the reason.
    pub fn validate(&self, origin: &str) -> anyhow::Result<()> {
        let t = &self.text_config;
        let v = &self.vision_config;
        let fail = |msg: String| Err(anyhow::anyhow!("{origin}: {msg}"));
        if !t.hidden_size.is_multiple_of(t.num_attention_heads) && t.head_dim.is_none() {
            return fail(format!(
                "text hidden_size {} is not divisible by num_attention_heads {}",
                t.hidden_size, t.num_attention_heads
            ));
        }
        if !t.num_attention_heads.is_multiple_of(t.kv_heads()) {
            return fail(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                t.num_attention_heads,
                t.kv_heads()
            ));
        }
        if t.hidden_act != "silu" {
            return fail(format!(
                "text hidden_act {:?} is not supported (only silu)",
                t.hidden_act
            ));
        }
        let rope = t.rope_type();
        if rope != "default" {
            return fail(format!(
                "rope type {rope:?} is not supported (only the default rotary embedding)"
            ));
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return fail(format!(
                "vision image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return fail(format!(
                "vision hidden_size {} is not divisible by num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ));
        }
        let layers = v.num_hidden_layers as i32;
        let fl = self.vision_feature_layer;
        if fl == 0 || fl > layers || fl < -layers {
            return fail(format!(
                "vision_feature_layer {fl} is outside the tower's {layers} layers"
            ));
        }
        if !matches!(
            self.vision_feature_select_strategy.as_str(),
            "default" | "full"
        ) {
            return fail(format!(
                "vision_feature_select_strategy {:?} is not supported (default or full)",
                self.vision_feature_select_strategy
            ));
        }
        if self.image_grid_pinpoints.is_empty() {
            return fail("image_grid_pinpoints is empty".into());
        }
        for p in &self.image_grid_pinpoints {
            let fits = |x: u32| x > 0 && (x as usize).is_multiple_of(v.image_size);
            if !fits(p[0]) || !fits(p[1]) {
                return fail(format!(
                    "pinpoint {p:?} is not a positive multiple of image_size {}",
                    v.image_size
                ));
            }
        }
        Ok(())
    }

    /// Hidden-state index into `[embeddings, layer 1, …, layer n]`, as transformers resolves it.
    pub fn vision_hidden_state_index(&self) -> usize {
        let n = self.vision_config.num_hidden_layers as i32 + 1;
        let fl = self.vision_feature_layer;
        (if fl < 0 { n + fl } else { fl }) as usize
    }

    /// End-of-sequence ids declared by the config.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.text_config
            .eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }

    /// Pinpoints as `(height, width)` pairs.
    pub fn pinpoints(&self) -> Vec<(u32, u32)> {
        self.image_grid_pinpoints
            .iter()
            .map(|p| (p[0], p[1]))
            .collect()
    }
}

impl Default for TextConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("all text config fields have defaults")
    }
}

impl Default for VisionConfig {
    fn default() -> Self {
        // transformers' LlavaNextConfig falls back to CLIP ViT-L/14 at 336 px.
        VisionConfig {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            image_size: 336,
            patch_size: 14,
            projection_dim: 768,
            ..serde_json::from_str("{}").expect("all vision config fields have defaults")
        }
    }
}

fn default_image_token_index() -> u32 {
    32000
}
fn default_pinpoints() -> Vec<[u32; 2]> {
    vec![[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
}
fn default_feature_layer() -> i32 {
    -2
}
fn default_select_strategy() -> String {
    "default".into()
}
fn default_projector_act() -> String {
    "gelu".into()
}
fn default_true() -> bool {
    true
}
fn default_image_seq_length() -> usize {
    576
}
fn default_model_type() -> String {
    "llava_next".into()
}
fn default_llama() -> String {
    "llama".into()
}
fn default_clip_vision() -> String {
    "clip_vision_model".into()
}
fn default_silu() -> String {
    "silu".into()
}
fn default_quick_gelu() -> String {
    "quick_gelu".into()
}
fn d_3() -> usize {
    3
}
fn d_12() -> usize {
    12
}
fn d_32() -> usize {
    32
}
fn d_224() -> usize {
    224
}
fn d_512() -> usize {
    512
}
fn d_768() -> usize {
    768
}
fn d_2048() -> usize {
    2048
}
fn d_3072() -> usize {
    3072
}
fn d_4096() -> usize {
    4096
}
fn d_11008() -> usize {
    11008
}
fn d_32000() -> usize {
    32000
}
fn d_1e5() -> f64 {
    1e-5
}
fn d_1e6() -> f64 {
    1e-6
}
fn d_10000() -> f64 {
    10000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_set_shapes_and_were_defaulted_are_listed() {
        let text = r#"{"text_config": {"hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16,
            "vocab_size": 100}, "vision_config": {"hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 56,
            "patch_size": 14, "num_channels": 3}, "image_grid_pinpoints": [[56, 56]]}"#;
        let cfg = LlavaNextConfig::from_json(text, "c").unwrap();
        assert_eq!(
            cfg.defaulted_shape_keys(text),
            ["text_config.intermediate_size = 11008"]
        );
    }

    #[test]
    fn empty_config_takes_transformers_defaults() {
        let cfg = LlavaNextConfig::from_json("{}", "test").unwrap();
        assert_eq!(cfg.text_config.hidden_size, 4096);
        assert_eq!(cfg.vision_config.image_size, 336);
        assert_eq!(cfg.vision_config.patch_size, 14);
        assert_eq!(cfg.vision_hidden_state_index(), 23);
        assert_eq!(cfg.pinpoints()[0], (336, 672));
    }

    #[test]
    fn rope_theta_is_read_from_either_place() {
        let old: TextConfig = serde_json::from_str(r#"{"rope_theta": 500000.0}"#).unwrap();
        assert_eq!(old.rope_base(), 500000.0);
        let new: TextConfig = serde_json::from_str(
            r#"{"rope_parameters": {"rope_theta": 250000.0, "rope_type": "default"}}"#,
        )
        .unwrap();
        assert_eq!(new.rope_base(), 250000.0);
        let scaled = r#"{"text_config": {"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}}"#;
        assert!(
            LlavaNextConfig::from_json(scaled, "c")
                .unwrap_err()
                .to_string()
                .contains("llama3")
        );
    }

    #[test]
    fn eos_accepts_one_or_many() {
        let one: TextConfig = serde_json::from_str(r#"{"eos_token_id": 2}"#).unwrap();
        assert_eq!(one.eos_token_id.unwrap().to_vec(), vec![2]);
        let many: TextConfig =
            serde_json::from_str(r#"{"eos_token_id": [128001, 128009]}"#).unwrap();
        assert_eq!(many.eos_token_id.unwrap().to_vec(), vec![128001, 128009]);
    }

    #[test]
    fn bad_feature_layer_is_named() {
        let err = LlavaNextConfig::from_json(r#"{"vision_feature_layer": -40}"#, "m/config.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m/config.json") && err.contains("-40"),
            "{err}"
        );
    }
}
