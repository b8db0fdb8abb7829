//! `glint probe` end to end on the sample world.

use crate::common::{glint, ok, sample_image};
use candle_core::{DType, Device};
use glint::sae::{Sae, SaeConfig};

#[test]
fn probe_json_covers_every_position() {
    let out = ok(glint()
        .args(["probe", "--json", "--top", "4", "--image"])
        .arg(sample_image("shape-0001.png")));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let positions = report["positions"].as_u64().unwrap();
    let image_tokens = report["image_tokens"].as_u64().unwrap();
    // `<bos>` then the image: the original system's caching sequence.
    assert_eq!(positions, image_tokens + 1);
    assert_eq!(report["tokens"].as_array().unwrap().len() as u64, positions);
    assert_eq!(report["tokens"][0]["kind"], "text");
    assert_eq!(report["layer"], 2);
    let feats = report["image_features"].as_array().unwrap();
    assert!(!feats.is_empty() && feats.len() <= 4);
    let maxes: Vec<f64> = feats.iter().map(|f| f["max"].as_f64().unwrap()).collect();
    assert!(
        maxes.windows(2).all(|w| w[0] >= w[1]),
        "sorted by max: {maxes:?}"
    );
}

#[test]
fn probe_dump_has_the_documented_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("probe.safetensors");
    ok(glint()
        .args(["probe", "--prompt", "What colour is the square?", "--image"])
        .arg(sample_image("shape-0000.png"))
        .arg("--dump")
        .arg(&dump));
    let t = candle_core::safetensors::load(&dump, &Device::Cpu).unwrap();
    let n = t["input_ids"].dims()[0];
    assert_eq!(t["input_ids"].dtype(), DType::U32);
    assert_eq!(t["residual"].dims(), &[n, 64]);
    assert_eq!(t["residual"].dtype(), DType::F32);
    assert_eq!(t["top_acts"].dims(), &[n, 8]);
    assert_eq!(t["top_indices"].dims(), &[n, 8]);
    assert_eq!(t["top_indices"].dtype(), DType::U32);
    let mask = t["image_token_mask"].to_vec1::<u8>().unwrap();
    let ids = t["input_ids"].to_vec1::<u32>().unwrap();
    let image_tokens = mask.iter().filter(|&&m| m == 1).count();
    assert!(
        image_tokens > 576 && image_tokens < n,
        "{image_tokens} of {n}"
    );
    // The image tokens form one run of the image token id.
    let first_image = mask.iter().position(|&m| m == 1).unwrap();
    assert!(
        mask[first_image..first_image + image_tokens]
            .iter()
            .all(|&m| m == 1)
    );
    assert!(
        ids[first_image..first_image + image_tokens]
            .windows(2)
            .all(|w| w[0] == w[1])
    );
}

#[test]
fn missing_image_is_named() {
    let out = glint()
        .args(["probe", "--image", "no/such/picture.png"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such/picture.png"), "{err}");
}

#[test]
fn sae_width_mismatch_names_both_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SaeConfig::new(32);
    cfg.num_latents = 16;
    cfg.k = 4;
    Sae::random(cfg, "model.layers.2", 1, &Device::Cpu)
        .unwrap()
        .save(dir.path())
        .unwrap();
    let out = glint()
        .arg("--sae")
        .arg(dir.path())
        .args(["probe", "--image"])
        .arg(sample_image("shape-0000.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("32") && err.contains("64"), "{err}");
}

#[test]
fn tap_layer_out_of_range_is_an_error() {
    let out = glint()
        .args(["probe", "--layer", "9", "--image"])
        .arg(sample_image("shape-0000.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--layer 9") && err.contains("4 decoder layers"),
        "{err}"
    );
}
