//! glint's CLIP against Hugging Face transformers on the tiny random sample checkpoint.
//!
//! The fixture comes from `tools/make_clip_fixture.py`: token ids, the processed images as
//! PNGs (exact bytes), pixel sums, normalised embeddings, `logits_per_image` and CLIP scores.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use glint::clip::ClipScorer;

const TOLERANCE: f32 = 1e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/clip_tiny").join(name)
}

/// max |a - b| / max |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

struct Fixture {
    cases: serde_json::Value,
    tensors: std::collections::HashMap<String, Tensor>,
}

fn load_fixture() -> Fixture {
    let text = std::fs::read_to_string(fixture("cases.json")).unwrap();
    let tensors =
        candle_core::safetensors::load(fixture("reference.safetensors"), &Device::Cpu).unwrap();
    Fixture {
        cases: serde_json::from_str(&text).unwrap(),
        tensors,
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn clip_matches_transformers() {
    let fx = load_fixture();
    let clip = ClipScorer::load(
        root().join("sample-data/clip-tiny").to_str().unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let t = |name: &str| fx.tensors[name].to_dtype(DType::F32).unwrap();

    // Token ids, exactly (including the cut of the over-long text).
    let texts = strings(&fx.cases["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want: Vec<Vec<u32>> = serde_json::from_value(fx.cases["input_ids"].clone()).unwrap();
    assert_eq!(clip.token_ids(&refs).unwrap(), want);

    // Preprocessing: the processor's crops byte for byte, and pixel sums.
    let images: Vec<image::DynamicImage> = strings(&fx.cases["images"])
        .iter()
        .map(|p| image::open(root().join(p)).unwrap())
        .collect();
    let pixels = clip.pixel_values(&images).unwrap();
    assert_eq!(pixels.dims(), &[2, 3, 224, 224]);
    for (i, crop) in strings(&fx.cases["crops"]).iter().enumerate() {
        let crop = image::open(fixture(crop)).unwrap();
        let from_png = clip.pixel_values(&[crop]).unwrap();
        let ours = pixels.get(i).unwrap().unsqueeze(0).unwrap();
        // An identity resize and crop: any difference is a resampling difference.
        assert_eq!(
            ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            from_png.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "image {i}: pixels differ from transformers' crop"
        );
    }
    let sums = pixels.sum((1, 2, 3)).unwrap();
    let err = rel_err(&sums, &t("pixel_values_sum"));
    eprintln!("pixel sums: rel err {err:e}");
    assert!(err < TOLERANCE, "pixel sums: rel err {err}");

    // Embeddings, logits and scores.
    let text_embeds = clip.embed_texts(&refs).unwrap();
    let err = rel_err(&text_embeds, &t("text_embeds"));
    eprintln!("text_embeds: rel err {err:e}");
    assert!(err < TOLERANCE, "text_embeds: rel err {err}");
    let image_embeds = clip.embed_images(&images).unwrap();
    let err = rel_err(&image_embeds, &t("image_embeds"));
    eprintln!("image_embeds: rel err {err:e}");
    assert!(err < TOLERANCE, "image_embeds: rel err {err}");

    let n = fx.cases["score_texts"].as_u64().unwrap() as usize;
    let logits = (image_embeds
        .matmul(&text_embeds.narrow(0, 0, n).unwrap().t().unwrap())
        .unwrap()
        * f64::from(clip.logit_scale()))
    .unwrap();
    let err = rel_err(&logits, &t("logits_per_image"));
    eprintln!("logits_per_image: rel err {err:e}");
    assert!(err < TOLERANCE, "logits_per_image: rel err {err}");

    let want_scores = t("scores").to_vec2::<f32>().unwrap();
    for (j, text) in refs.iter().enumerate() {
        let got = clip.scores(text, &images).unwrap();
        for (i, g) in got.iter().enumerate() {
            let w = want_scores[i][j];
            assert!((g - w).abs() < 1e-3, "score image {i} text {j}: {g} vs {w}");
        }
    }
    // The fixture exercises the clamp: some pairs score zero, some do not.
    let flat: Vec<f32> = want_scores.concat();
    assert!(flat.contains(&0.0) && flat.iter().any(|&s| s > 1.0));
}
