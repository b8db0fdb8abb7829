//! Random weights from a bare config.json: any size, deterministic per seed.

use candle_core::{DType, Device};
use glint::model::load::{LoadOptions, load_model};
use glint::model::tap::ForwardOptions;

fn tiny_config(dir: &std::path::Path) -> std::path::PathBuf {
    let mut cfg = glint::sample::checkpoint::llama3_llava_next_8b_config();
    let t = &mut cfg["text_config"];
    t["hidden_size"] = 32.into();
    t["intermediate_size"] = 64.into();
    t["num_hidden_layers"] = 3.into();
    t["num_attention_heads"] = 4.into();
    t["num_key_value_heads"] = 1.into();
    t["vocab_size"] = 128320.into();
    let v = &mut cfg["vision_config"];
    v["hidden_size"] = 16.into();
    v["intermediate_size"] = 32.into();
    v["num_hidden_layers"] = 2.into();
    v["num_attention_heads"] = 2.into();
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_string(&cfg).unwrap()).unwrap();
    path
}

#[test]
fn a_bare_config_runs_with_seeded_random_weights() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let run = |seed| {
        let opts = LoadOptions {
            device: Device::Cpu,
            dtype: DType::F32,
            random_weights: Some(seed),
        };
        let m = load_model(cfg.to_str().unwrap(), &opts).unwrap();
        assert!(m.tokenizer.is_none(), "a bare config has no tokenizer");
        let embeds = m.model.embed_ids(&[128000, 5, 17, 99]).unwrap();
        let out = m
            .model
            .forward(&embeds, 0, None, ForwardOptions::last_logits(None))
            .unwrap();
        out.logits
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let a = run(7);
    assert_eq!(a.len(), 128320);
    assert!(a.iter().all(|v| v.is_finite()));
    assert_eq!(a, run(7), "same seed, same weights");
    assert_ne!(a, run(8), "another seed, other weights");
}
