//! glint's LLaVA-NeXT forward against Hugging Face transformers on a tiny random checkpoint.
//!
//! The fixtures come from `tools/make_reference_fixtures.py`: the checkpoint as
//! `save_pretrained` wrote it, the processor's views as PNGs (exact pixels), and the reference
//! tensors (vision states, packed image features, tapped residual, last logits).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use glint::model::anyres::ImageLayout;
use glint::model::llava_next::ImageInput;
use glint::model::load::{LoadOptions, load_model};
use glint::model::tap::{ForwardOptions, LogitPositions, Tap, Until};

const MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];
const TOLERANCE: f32 = 1e-4;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llava_tiny")
}

/// Normalised `[views, 3, 336, 336]` from the processor's view PNGs.
fn views_tensor(pngs: &[String]) -> Tensor {
    let mut data = Vec::new();
    for png in pngs {
        let img = image::open(fixture_dir().join(png)).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let v = img.get_pixel(x, y)[c] as f64 / 255.0;
                    data.push(((v - MEAN[c]) / STD[c]) as f32);
                }
            }
        }
    }
    Tensor::from_vec(data, (pngs.len(), 3, 336, 336), &Device::Cpu).unwrap()
}

/// max |a - b| / max |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn forward_matches_transformers_on_every_case() {
    let dir = fixture_dir();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let reference =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let loaded = load_model(dir.join("model").to_str().unwrap(), &LoadOptions::default()).unwrap();
    let model = &loaded.model;
    let pins = loaded.config.pinpoints();

    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let get = |k: &str| reference[&format!("{name}.{k}")].clone();
        let (h, w) = (
            case["height"].as_u64().unwrap() as u32,
            case["width"].as_u64().unwrap() as u32,
        );
        let layout = ImageLayout::new((h, w), &pins, 336, 14).unwrap();
        assert_eq!(
            layout.num_image_tokens() as u64,
            case["n_image_tokens"].as_u64().unwrap(),
            "{name}: image token count"
        );
        let pngs: Vec<String> = case["view_pngs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(pngs.len(), layout.num_views(), "{name}: view count");
        let px = views_tensor(&pngs);

        let vision = model
            .vision_states(&px.narrow(0, 0, 1).unwrap())
            .unwrap()
            .squeeze(0)
            .unwrap();
        let e = rel_err(&vision, &get("vision_hidden"));
        assert!(e <= TOLERANCE, "{name}: vision states rel err {e}");

        let feats = model.image_features(&px, &layout).unwrap();
        let e = rel_err(&feats, &get("image_features"));
        assert!(e <= TOLERANCE, "{name}: image features rel err {e}");

        let ids: Vec<u32> = get("input_ids_compact")
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect();
        let images = [ImageInput {
            pixel_values: &px,
            layout: &layout,
        }];
        let (embeds, map) = model.embed_sequence(&ids, &images).unwrap();
        assert_eq!(
            map.len() as u64,
            case["T"].as_u64().unwrap(),
            "{name}: sequence length"
        );
        let expanded: Vec<u32> = get("input_ids")
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect();
        assert_eq!(
            map.ids(loaded.config.image_token_index),
            expanded,
            "{name}: expanded ids"
        );

        let opts = ForwardOptions {
            tap: Some(Tap::read(2)),
            until: Until::Logits(LogitPositions::Last),
            differentiable: false,
        };
        let out = model.forward(&embeds, 0, None, opts).unwrap();
        let tapped = out.tapped.unwrap().squeeze(0).unwrap();
        let e = rel_err(&tapped, &get("tap_hidden"));
        assert!(e <= TOLERANCE, "{name}: tapped residual rel err {e}");
        let logits = out.logits.unwrap().flatten_all().unwrap();
        let e = rel_err(&logits, &get("last_logits"));
        assert!(e <= TOLERANCE, "{name}: last logits rel err {e}");

        // Stopping at the tap gives the same residual without running later layers.
        let early = model
            .forward(&embeds, 0, None, ForwardOptions::to_tap(2))
            .unwrap();
        assert!(early.logits.is_none());
        let e = rel_err(
            &early.tapped.unwrap().squeeze(0).unwrap(),
            &get("tap_hidden"),
        );
        assert!(e <= TOLERANCE, "{name}: early-stopped residual rel err {e}");
    }
}
