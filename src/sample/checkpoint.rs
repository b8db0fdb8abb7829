//! The sample world's tiny LLaVA-NeXT checkpoint, written in the exact Hugging Face layout.
//!
//! Widths and depth are tiny, but the vision geometry is the real one (336 px, patch 14, the
//! llama3-llava-next pinpoints), so anyres tiling, unpadding and token counts match the 8B model.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::json;

use super::tokenizer_gen::{SampleTokenizerInfo, write_sample_tokenizer};
use crate::model::config::LlavaNextConfig;
use crate::model::llava_next::LlavaNext;
use crate::model::random::RandomWeights;

/// Decoder layer the sample SAE reads (`model.layers.2` of 4).
pub const SAMPLE_TAP_LAYER: usize = 2;

/// Target vocabulary of the trained sample tokenizer, special tokens included.
pub const SAMPLE_VOCAB: usize = 512;

/// The sample model's `config.json`, given the tokenizer it was built with.
pub fn sample_config(tok: &SampleTokenizerInfo) -> serde_json::Value {
    json!({
        "architectures": ["LlavaNextForConditionalGeneration"],
        "model_type": "llava_next",
        "image_token_index": tok.image_id,
        "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
        "image_seq_length": 576,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "tie_word_embeddings": false,
        "torch_dtype": "float32",
        "text_config": {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 64,
            "intermediate_size": 192,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "vocab_size": tok.vocab_size,
            "bos_token_id": tok.bos_id,
            "eos_token_id": [tok.eos_id, tok.eot_id],
            "pad_token_id": tok.pad_id,
            "torch_dtype": "float32"
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 336,
            "patch_size": 14,
            "projection_dim": 64,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5
        }
    })
}

/// `preprocessor_config.json` of LlavaNextImageProcessor with the llama3-llava-next settings.
pub fn sample_preprocessor() -> serde_json::Value {
    json!({
        "image_processor_type": "LlavaNextImageProcessor",
        "processor_class": "LlavaNextProcessor",
        "crop_size": {"height": 336, "width": 336},
        "size": {"shortest_edge": 336},
        "do_center_crop": true,
        "do_convert_rgb": true,
        "do_normalize": true,
        "do_rescale": true,
        "do_resize": true,
        "do_pad": true,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "rescale_factor": 0.00392156862745098,
        "resample": 3,
        "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    })
}

/// `processor_config.json`: what LlavaNextProcessor needs to expand each `<image>` into its
/// tokens itself (newer transformers no longer let the model do it).
pub fn sample_processor(image_token: &str) -> serde_json::Value {
    json!({
        "processor_class": "LlavaNextProcessor",
        "image_token": image_token,
        "patch_size": 14,
        "vision_feature_select_strategy": "default",
        // CLIP's class token, which the "default" strategy then drops.
        "num_additional_image_tokens": 1
    })
}

/// Write the tiny checkpoint (config, weights, tokenizer, processor and generation configs).
pub fn write_sample_checkpoint(dir: &Path, seed: u64) -> Result<LlavaNextConfig> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let tok = write_sample_tokenizer(dir, SAMPLE_VOCAB)?;
    let config_json = sample_config(&tok);
    let config_text = serde_json::to_string_pretty(&config_json)?;
    let config = LlavaNextConfig::from_json(&config_text, "sample config")?;
    write_json(&dir.join("config.json"), &config_json)?;
    write_json(
        &dir.join("preprocessor_config.json"),
        &sample_preprocessor(),
    )?;
    write_json(
        &dir.join("processor_config.json"),
        &sample_processor(super::tokenizer_gen::IMAGE_TOKEN),
    )?;
    // The processor's own copy of the template (the tokenizer's is in tokenizer_config.json).
    write_json(
        &dir.join("chat_template.json"),
        &json!({"chat_template": crate::model::tokenizer::LLAMA3_LLAVA_TEMPLATE}),
    )?;
    write_json(
        &dir.join("generation_config.json"),
        &json!({"bos_token_id": tok.bos_id, "eos_token_id": [tok.eos_id, tok.eot_id], "pad_token_id": tok.pad_id}),
    )?;

    let tensors = sample_weights(&config, seed)?;
    write_weights(dir, &tensors)?;
    Ok(config)
}

/// The sample model's seeded initial weights, by Hugging Face name. The full CLIP tower is
/// included, with the layers and post-norm LLaVA never reads, so the folder loads in
/// transformers exactly like a real checkpoint.
pub fn sample_weights(config: &LlavaNextConfig, seed: u64) -> Result<BTreeMap<String, Tensor>> {
    let weights = RandomWeights::new(seed);
    let vb = VarBuilder::from_backend(Box::new(weights.clone()), DType::F32, Device::Cpu);
    LlavaNext::load(config, vb).context("building the sample model")?;
    let v = &config.vision_config;
    let extra = VarBuilder::from_backend(Box::new(weights.clone()), DType::F32, Device::Cpu)
        .pp("vision_tower.vision_model");
    for i in config.vision_hidden_state_index()..v.num_hidden_layers {
        let l = extra.pp(format!("encoder.layers.{i}"));
        let c = v.hidden_size;
        for (name, shape) in [
            ("self_attn.q_proj", (c, c)),
            ("self_attn.k_proj", (c, c)),
            ("self_attn.v_proj", (c, c)),
            ("self_attn.out_proj", (c, c)),
            ("mlp.fc1", (v.intermediate_size, c)),
            ("mlp.fc2", (c, v.intermediate_size)),
        ] {
            l.pp(name).get(shape, "weight")?;
            l.pp(name).get(shape.0, "bias")?;
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            l.pp(ln).get(c, "weight")?;
            l.pp(ln).get(c, "bias")?;
        }
    }
    extra.pp("post_layernorm").get(v.hidden_size, "weight")?;
    extra.pp("post_layernorm").get(v.hidden_size, "bias")?;
    Ok(weights.tensors())
}

/// Write `tensors` as the checkpoint's `model.safetensors`.
pub fn write_weights(dir: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let path = dir.join("model.safetensors");
    crate::util::weights_file::save_pt(tensors.iter().map(|(k, t)| (k.as_str(), t)), &path)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

/// The real llama3-llava-next-8b-hf configuration, for benchmarks with random weights.
pub fn llama3_llava_next_8b_config() -> serde_json::Value {
    json!({
        "architectures": ["LlavaNextForConditionalGeneration"],
        "model_type": "llava_next",
        "image_token_index": 128256,
        "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
        "image_seq_length": 576,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "text_config": {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "vocab_size": 128320,
            "bos_token_id": 128000,
            "eos_token_id": 128009,
            "torch_dtype": "bfloat16"
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 336,
            "patch_size": 14,
            "projection_dim": 768,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "vocab_size": 32000
        }
    })
}

/// Write `configs/llama3-llava-next-8b.json` under `root`.
pub fn write_bench_configs(root: &Path) -> Result<()> {
    let dir = root.join("configs");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    write_json(
        &dir.join("llama3-llava-next-8b.json"),
        &llama3_llava_next_8b_config(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_json(path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// What transformers needs to load and run the folder as shipped (tools/
    /// check_sample_checkpoint.py runs it there): the weights' `format: pt`, a processor that
    /// expands the image tokens itself, its chat template, and no token_type_ids.
    #[test]
    fn the_checkpoint_carries_what_transformers_needs_to_run_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_sample_checkpoint(dir.path(), 7).unwrap();
        let weights = dir.path().join("model.safetensors");
        let format = crate::util::weights_file::format_entry(&weights);
        assert_eq!(format.as_deref(), Some("pt"));

        let processor = read_json(&dir.path().join("processor_config.json"));
        assert_eq!(
            processor["patch_size"],
            config.vision_config.patch_size as u64
        );
        let cfg = read_json(&dir.path().join("config.json"));
        assert_eq!(
            processor["vision_feature_select_strategy"],
            cfg["vision_feature_select_strategy"]
        );
        let tokenizer = read_json(&dir.path().join("tokenizer_config.json"));
        let template = read_json(&dir.path().join("chat_template.json"));
        assert_eq!(template["chat_template"], tokenizer["chat_template"]);
        assert_eq!(
            tokenizer["model_input_names"],
            json!(["input_ids", "attention_mask"])
        );
    }
}
