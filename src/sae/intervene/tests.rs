//! Tests of the interventions: hand-computed arithmetic, scope masks, and the original hook.

use candle_core::{DType, Device, Tensor};

use super::*;
use crate::model::tap::TapEdit;
use crate::sae::SaeConfig;
use crate::util::rng::SeededRng;

/// Identity encoder over 3 dims, k = 1; decoder row 1 has length 2; b_dec = [0, 0, 0.5].
fn tiny() -> Sae {
    let dev = Device::Cpu;
    let cfg = SaeConfig {
        num_latents: 3,
        k: 1,
        ..SaeConfig::new(3)
    };
    let w_enc = Tensor::new(&[[1f32, 0., 0.], [0., 1., 0.], [0., 0., 1.]], &dev).unwrap();
    let b_enc = Tensor::zeros(3, DType::F32, &dev).unwrap();
    let w_dec = Tensor::new(&[[1f32, 0., 0.], [0., 2., 0.], [0., 0., 1.]], &dev).unwrap();
    let b_dec = Tensor::new(&[0f32, 0., 0.5], &dev).unwrap();
    Sae::from_tensors(cfg, "model.layers.0".into(), w_enc, b_enc, w_dec, b_dec).unwrap()
}

/// Row 0: x − b_dec = [3, 1, 0] → pre [3, 1, 0], top-1 is f0 = 3, x̂ = [3, 0, 0.5].
/// Row 1: x − b_dec = [0, 2, 1] → pre [0, 2, 1], top-1 is f1 = 2, x̂ = [0, 4, 0.5].
fn rows() -> Tensor {
    Tensor::new(&[[3f32, 1., 0.5], [0., 2., 1.5]], &Device::Cpu).unwrap()
}

fn iv(mode: Mode, edits: &[(u32, f32)]) -> Intervention {
    Intervention {
        mode,
        edits: edits.to_vec(),
        direction: Direction::Raw,
        scope: Scope {
            phase: Phase::Both,
            tokens: TokenScope::All,
        },
    }
}

fn run(sae: &Sae, iv: &Intervention, mask: &[bool]) -> (Option<Vec<Vec<f32>>>, EditStats) {
    let map = SequenceMap::default();
    let mut e = SteerEdit::new(sae, iv, &map).unwrap();
    let out = e.apply_rows(&rows(), mask).unwrap();
    (out.map(|t| t.to_vec2().unwrap()), e.into_stats().unwrap())
}

#[test]
fn replace_sets_the_pre_activation_before_top_k() {
    let sae = tiny();
    // Both rows: pre[1] = 5 wins the top-1 → x̂ = 5·[0, 2, 0] + b_dec.
    let (out, st) = run(&sae, &iv(Mode::Replace, &[(1, 5.0)]), &[true, true]);
    assert_eq!(out.unwrap(), vec![vec![0., 10., 0.5], vec![0., 10., 0.5]]);
    assert_eq!((st.features[0].changed, st.features[0].dropped), (2, 0));
    // Row 0 only, 2.5 < 3: dropped by top-k, x̂ unchanged; row 1 out of scope is still x̂.
    let (out, st) = run(&sae, &iv(Mode::Replace, &[(1, 2.5)]), &[true, false]);
    assert_eq!(out.unwrap(), vec![vec![3., 0., 0.5], vec![0., 4., 0.5]]);
    assert_eq!((st.features[0].changed, st.features[0].dropped), (0, 1));
    assert!(
        st.warnings()[0].contains("never survived top-k"),
        "{:?}",
        st.warnings()
    );
    // Ablation on row 1: f1 → 0 hands the top-1 to f2 = 1 → x̂ = [0, 0, 1.5]; a change though dropped.
    let (out, st) = run(&sae, &iv(Mode::Replace, &[(1, 0.0)]), &[false, true]);
    assert_eq!(out.unwrap()[1], vec![0., 0., 1.5]);
    assert_eq!((st.features[0].changed, st.features[0].dropped), (1, 1));
}

#[test]
fn clamp_adds_the_decoded_difference_and_keeps_the_error() {
    let sae = tiny();
    // Row 0: a1 = 0 (not in top-1) → +5·[0,2,0]; row 1: a1 = 2 → +3·[0,2,0].
    let (out, st) = run(&sae, &iv(Mode::Clamp, &[(1, 5.0)]), &[true, true]);
    assert_eq!(out.unwrap(), vec![vec![3., 11., 0.5], vec![0., 8., 1.5]]);
    // ‖Δ‖/‖h‖: 10/√10.25 + 6/√6.25.
    let want = 10.0 / 10.25f64.sqrt() + 6.0 / 6.25f64.sqrt();
    assert!(
        (st.rel_change_sum - want).abs() < 1e-5,
        "{}",
        st.rel_change_sum
    );
    // Two features at once on row 0: −3·[1,0,0] + 1·[0,2,0].
    let (out, _) = run(
        &sae,
        &iv(Mode::Clamp, &[(0, 0.0), (1, 1.0)]),
        &[true, false],
    );
    assert_eq!(out.unwrap(), vec![vec![0., 3., 0.5], vec![0., 2., 1.5]]);
}

#[test]
fn clamp_to_the_current_value_is_the_identity() {
    let sae = tiny();
    let (out, st) = run(&sae, &iv(Mode::Clamp, &[(1, 2.0)]), &[false, true]);
    assert!(out.is_none(), "a zero difference must leave h untouched");
    assert_eq!(st.features[0].changed, 0);
    assert!(
        st.warnings()[0].contains("changed nothing"),
        "{:?}",
        st.warnings()
    );
    // Mixed rows: the row already at the value is bit-identical, the other moves.
    let (out, _) = run(&sae, &iv(Mode::Clamp, &[(0, 3.0)]), &[true, true]);
    assert_eq!(out.unwrap(), vec![vec![3., 1., 0.5], vec![3., 2., 1.5]]);
}

#[test]
fn add_moves_along_the_raw_or_unit_direction() {
    let sae = tiny();
    let (out, _) = run(&sae, &iv(Mode::Add, &[(1, 2.0)]), &[true, false]);
    assert_eq!(out.unwrap(), vec![vec![3., 5., 0.5], vec![0., 2., 1.5]]);
    let mut unit = iv(Mode::Add, &[(1, 2.0)]);
    unit.direction = Direction::Unit;
    let (out, _) = run(&sae, &unit, &[true, true]);
    assert_eq!(out.unwrap(), vec![vec![3., 3., 0.5], vec![0., 4., 1.5]]);
    let (out, st) = run(&sae, &iv(Mode::Add, &[(1, 0.0)]), &[true, true]);
    assert!(out.is_none());
    assert_eq!(st.warnings().len(), 1);
}

#[test]
fn validation_names_the_problem() {
    let sae = tiny();
    let map = SequenceMap::default();
    let err = |iv: Intervention| SteerEdit::new(&sae, &iv, &map).err().unwrap().to_string();
    assert!(err(iv(Mode::Clamp, &[(3, 1.0)])).contains("3 latents"));
    assert!(err(iv(Mode::Clamp, &[(1, 1.0), (1, 2.0)])).contains("twice"));
    assert!(err(iv(Mode::Clamp, &[(1, f32::NAN)])).contains("finite"));
    assert!(err(iv(Mode::Clamp, &[])).contains("no feature"));
    let mut bad = iv(Mode::Add, &[(1, 1.0)]);
    bad.scope = Scope {
        phase: Phase::Decode,
        tokens: TokenScope::Image,
    };
    assert!(err(bad).contains("selects nothing"));
    assert!("Clamp".parse::<Mode>().is_ok());
    assert!(
        "pin"
            .parse::<Mode>()
            .unwrap_err()
            .to_string()
            .contains("replace, clamp, add")
    );
}

/// `[text, image, image, text]` prompt: positions 4.. are generated.
fn prompt_map() -> SequenceMap {
    SequenceMap {
        tokens: vec![
            SeqToken::Text { id: 1 },
            SeqToken::Image { image: 0, token: 0 },
            SeqToken::Image { image: 0, token: 1 },
            SeqToken::Text { id: 2 },
        ],
    }
}

#[test]
fn scope_masks_select_exactly_the_chosen_positions() {
    let map = prompt_map();
    let prefill = TapSite { start: 0, len: 4 };
    let step = TapSite { start: 4, len: 1 };
    let s = |phase, tokens| Scope { phase, tokens };
    assert_eq!(
        s(Phase::Prefill, TokenScope::Image).mask(&prefill, &map),
        [false, true, true, false]
    );
    assert_eq!(
        s(Phase::Prefill, TokenScope::Text).mask(&prefill, &map),
        [true, false, false, true]
    );
    assert_eq!(
        s(Phase::Prefill, TokenScope::All).mask(&step, &map),
        [false]
    );
    assert_eq!(
        s(Phase::Decode, TokenScope::Text).mask(&prefill, &map),
        [false; 4]
    );
    assert_eq!(s(Phase::Decode, TokenScope::Text).mask(&step, &map), [true]);
    assert_eq!(s(Phase::Both, TokenScope::Image).mask(&step, &map), [false]);
    assert_eq!(s(Phase::Both, TokenScope::All).prompt_positions(&map), 4);
}

#[test]
fn the_tap_edit_touches_only_scoped_positions() {
    let sae = tiny();
    let map = prompt_map();
    let mut add = iv(Mode::Add, &[(2, 1.0)]);
    add.scope = Scope {
        phase: Phase::Both,
        tokens: TokenScope::Image,
    };
    let mut e = SteerEdit::new(&sae, &add, &map).unwrap();
    let h = Tensor::zeros((1, 4, 3), DType::F32, &Device::Cpu).unwrap();
    let out = e.edit(&h, &TapSite { start: 0, len: 4 }).unwrap().unwrap();
    let got: Vec<Vec<f32>> = out.squeeze(0).unwrap().to_vec2().unwrap();
    assert_eq!(
        got,
        vec![
            vec![0., 0., 0.],
            vec![0., 0., 1.],
            vec![0., 0., 1.],
            vec![0., 0., 0.]
        ]
    );
    // A decode step is text: out of an image scope, so untouched.
    let step = Tensor::zeros((1, 1, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(
        e.edit(&step, &TapSite { start: 4, len: 1 })
            .unwrap()
            .is_none()
    );
    let stats = e.stats().unwrap();
    assert_eq!((stats.positions, stats.in_scope), (5, 2));
}

/// The original hook (seed-spec §5.1), transcribed with dense loops: ReLU pre-activations,
/// `lat[:, :, f] = K` only when T != 1, top-k, decode; the output replaces the residual.
fn original_hook(sae: &Sae, h: &[Vec<f32>], f: usize, k_val: f32) -> Vec<Vec<f32>> {
    let w_enc: Vec<Vec<f32>> = sae.w_enc().to_vec2().unwrap();
    let w_dec: Vec<Vec<f32>> = sae.w_dec().to_vec2().unwrap();
    let b_enc: Vec<f32> = sae.b_enc().to_vec1().unwrap();
    let b_dec: Vec<f32> = sae.b_dec().to_vec1().unwrap();
    h.iter()
        .map(|x| {
            let mut lat: Vec<(f32, usize)> = w_enc
                .iter()
                .zip(&b_enc)
                .enumerate()
                .map(|(j, (w, b))| {
                    let dot: f32 = w
                        .iter()
                        .zip(x)
                        .zip(&b_dec)
                        .map(|((w, x), c)| w * (x - c))
                        .sum();
                    ((dot + b).max(0.0), j)
                })
                .collect();
            if h.len() != 1 {
                lat[f].0 = k_val;
            }
            lat.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut out = b_dec.clone();
            for &(v, j) in &lat[..sae.k()] {
                out.iter_mut().zip(&w_dec[j]).for_each(|(o, w)| *o += v * w);
            }
            out
        })
        .collect()
}

#[test]
fn replace_scoped_to_prefill_reproduces_the_original_hook() {
    let cfg = SaeConfig {
        num_latents: 48,
        k: 4,
        ..SaeConfig::new(8)
    };
    let sae = Sae::random(cfg, "model.layers.1", 7, &Device::Cpu).unwrap();
    let mut rng = SeededRng::new(3);
    let map = SequenceMap {
        tokens: (0..5).map(|i| SeqToken::Text { id: i }).collect(),
    };
    let mut replace = iv(Mode::Replace, &[(11, 0.9)]);
    replace.scope = Scope {
        phase: Phase::Prefill,
        tokens: TokenScope::All,
    };
    let mut e = SteerEdit::new(&sae, &replace, &map).unwrap();
    // A 5-position prefill, then two single-token decode steps.
    for (start, len) in [(0, 5), (5, 1), (6, 1)] {
        let h: Vec<Vec<f32>> = (0..len)
            .map(|_| (0..8).map(|_| rng.normal() as f32).collect())
            .collect();
        let want = original_hook(&sae, &h, 11, 0.9);
        let t = Tensor::new(h.clone(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let got = e.edit(&t, &TapSite { start, len }).unwrap().unwrap();
        let got: Vec<Vec<f32>> = got.squeeze(0).unwrap().to_vec2().unwrap();
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!(
                (g - w).abs() < 1e-5,
                "positions {start}..{}: {g} vs {w}",
                start + len
            );
        }
    }
    assert_eq!(e.stats().unwrap().in_scope, 5);
}
