//! Tests of the scorer on the committed tiny checkpoint.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use image::{DynamicImage, Rgb, RgbImage};

use super::*;

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data/clip-tiny")
}

fn tiny() -> ClipScorer {
    ClipScorer::load(tiny_dir().to_str().unwrap(), &Device::Cpu).unwrap()
}

fn images() -> Vec<DynamicImage> {
    let striped = RgbImage::from_fn(300, 200, |x, y| {
        Rgb([
            (x % 256) as u8,
            (y * 3 % 256) as u8,
            ((x + y) % 7 * 30) as u8,
        ])
    });
    vec![
        DynamicImage::ImageRgb8(RgbImage::from_pixel(224, 224, Rgb([220, 30, 30]))),
        DynamicImage::ImageRgb8(striped),
        DynamicImage::ImageRgb8(RgbImage::from_pixel(100, 400, Rgb([10, 40, 200]))),
    ]
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn score_formula_scales_and_clamps() {
    assert_eq!(clip_score(0.31), 31.0);
    assert_eq!(clip_score(1.0), 100.0);
    assert_eq!(clip_score(0.0), 0.0);
    assert_eq!(clip_score(-0.2), 0.0);
    // One text row against three image rows: cos 1, 0.6 and -0.8.
    let text = Tensor::new(&[[1f32, 0.0]], &Device::Cpu).unwrap();
    let imgs = Tensor::new(&[[1f32, 0.0], [0.6, 0.8], [-0.8, 0.6]], &Device::Cpu).unwrap();
    let s = scores_from_embeddings(&text, &imgs).unwrap();
    assert!(
        (s[0] - 100.0).abs() < 1e-4 && (s[1] - 60.0).abs() < 1e-4,
        "{s:?}"
    );
    assert_eq!(s[2], 0.0);
    assert!(scores_from_embeddings(&imgs, &imgs).is_err());
}

#[test]
fn embeddings_are_unit_rows_and_batches_match_singles() {
    let clip = tiny();
    let imgs = images();
    let batch = clip.embed_images(&imgs).unwrap();
    assert_eq!(batch.dims(), &[3, 16]);
    let norms = batch
        .sqr()
        .unwrap()
        .sum(1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
    for (i, img) in imgs.iter().enumerate() {
        let single = clip.embed_images(std::slice::from_ref(img)).unwrap();
        assert!(max_abs_diff(&single, &batch.get(i).unwrap().unsqueeze(0).unwrap()) < 1e-5);
    }
    // Texts of different lengths: padding in a batch must not change any row.
    let texts = [
        "a red circle",
        "a photo of a blue square on a white background",
        "star",
    ];
    let tb = clip.embed_texts(&texts).unwrap();
    assert_eq!(tb.dims(), &[3, 16]);
    for (i, t) in texts.iter().enumerate() {
        let single = clip.embed_texts(&[t]).unwrap();
        assert!(max_abs_diff(&single, &tb.get(i).unwrap().unsqueeze(0).unwrap()) < 1e-5);
    }
    // Different inputs give different embeddings (the model is not degenerate).
    assert!(max_abs_diff(&tb.get(0).unwrap(), &tb.get(1).unwrap()) > 1e-3);
    assert!(max_abs_diff(&batch.get(0).unwrap(), &batch.get(2).unwrap()) > 1e-3);

    // scores() is the formula applied to these embeddings.
    let s = clip.scores("a red circle", &imgs).unwrap();
    let cos = batch
        .matmul(&tb.get(0).unwrap().unsqueeze(1).unwrap())
        .unwrap()
        .squeeze(1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (got, c) in s.iter().zip(cos) {
        assert!((got - clip_score(c)).abs() < 1e-3, "{got} vs {c}");
    }
    assert!(clip.scores("a red circle", &[]).unwrap().is_empty());
}

#[test]
fn long_texts_are_cut_like_torchmetrics() {
    let clip = tiny();
    let long = "red ".repeat(200);
    let ids = clip.token_ids(&[&long, "red"]).unwrap();
    assert_eq!(ids[0].len(), 77);
    // The end token is sliced away, as torchmetrics' CLIPScore does.
    let eot = clip.config().text_config.eos_token_id as u32;
    assert_ne!(ids[0][76], eot);
    assert_eq!(ids[1].len(), 3);
    assert_eq!(ids[1][2], eot);
    assert_eq!(clip.embed_texts(&[&long]).unwrap().dims(), &[1, 16]);
    // Case and spacing do not matter: CLIP lowercases and collapses whitespace.
    assert_eq!(
        clip.token_ids(&["A  RED\tCircle"]).unwrap(),
        clip.token_ids(&["a red circle"]).unwrap()
    );
}

#[test]
fn missing_files_are_named() {
    let src = tiny_dir();
    for missing in CLIP_FILES {
        let dir = tempfile::tempdir().unwrap();
        for f in CLIP_FILES.iter().filter(|f| **f != missing) {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
        let err = match ClipScorer::load(dir.path().to_str().unwrap(), &Device::Cpu) {
            Ok(_) => panic!("loaded without {missing}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(missing), "{missing}: {err}");
    }
    let gone = tempfile::tempdir().unwrap().path().join("no-such-clip");
    let err = match ClipScorer::load(gone.to_str().unwrap(), &Device::Cpu) {
        Ok(_) => panic!("loaded a missing model"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("no-such-clip"), "{err}");
}

#[test]
fn mismatched_crop_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for f in CLIP_FILES {
        std::fs::copy(tiny_dir().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("preprocessor_config.json"),
        r#"{"size": 336, "crop_size": 336}"#,
    )
    .unwrap();
    let err = match ClipScorer::load_dir(dir.path(), &Device::Cpu) {
        Ok(_) => panic!("loaded a mismatched crop"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("crop_size") && err.contains("224"), "{err}");
}

#[test]
fn baseline_draws_are_seeded_permutation_prefixes() {
    let a = baseline_draws(40, BASELINE_RUNS, BASELINE_PER_RUN, 7);
    assert_eq!(a, baseline_draws(40, BASELINE_RUNS, BASELINE_PER_RUN, 7));
    assert_ne!(a, baseline_draws(40, BASELINE_RUNS, BASELINE_PER_RUN, 8));
    assert_eq!(a.len(), 30);
    for run in &a {
        assert_eq!(run.len(), 5);
        let mut u = run.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), 5, "a run repeats an image: {run:?}");
        assert!(run.iter().all(|&i| i < 40));
    }
    assert_ne!(a[0], a[1]);
    assert_eq!(baseline_draws(3, 2, 5, 0)[0].len(), 3);
}
