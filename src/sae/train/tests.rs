//! Trainer tests on synthetic rows: unit-norm decoder, AuxK revival, exact resume, bad input.

use super::data::VecSource;
use super::*;
use crate::util::rng::SeededRng;

/// A small config for tests: 12 latents of width 6, k 2, 30 steps.
pub(crate) fn tiny_config(seed: u64) -> TrainConfig {
    TrainConfig {
        hookpoint: "model.layers.1".into(),
        d_in: 6,
        num_latents: 12,
        k: 2,
        multi_topk: false,
        batch_rows: 16,
        buffer_rows: 48,
        lr: 1e-2,
        warmup_steps: 3,
        total_steps: 30,
        auxk_alpha: 1.0 / 32.0,
        dead_threshold: 64,
        max_grad_norm: 1.0,
        seed,
        data: "synthetic".into(),
    }
}

/// Rows that are sparse sums of 8 fixed directions plus a little noise, in items of 9..20 rows.
fn synthetic(d: usize, items: usize, seed: u64) -> VecSource {
    let mut rng = SeededRng::new(seed);
    let dirs: Vec<Vec<f32>> = (0..8)
        .map(|_| (0..d).map(|_| rng.normal() as f32).collect())
        .collect();
    let items = (0..items)
        .map(|_| {
            let rows = 9 + rng.below(12) as usize;
            let mut out = Vec::with_capacity(rows * d);
            for _ in 0..rows {
                let (a, b) = (rng.below(8) as usize, rng.below(8) as usize);
                let (ma, mb) = (
                    rng.range_f64(0.5, 2.0) as f32,
                    rng.range_f64(0.0, 1.0) as f32,
                );
                for (da, db) in dirs[a].iter().zip(&dirs[b]) {
                    out.push(1.0 + ma * da + mb * db + 0.01 * rng.normal() as f32);
                }
            }
            out
        })
        .collect();
    VecSource { d, items }
}

fn run_opts(dir: &std::path::Path) -> RunOptions {
    RunOptions {
        work_dir: dir.to_path_buf(),
        export_dir: Some(dir.join("export")),
        save_every: 7,
        log_every: 5,
        stop_after: None,
        resume: false,
        device: Device::Cpu,
    }
}

fn bits(p: &Params) -> Vec<u32> {
    p.tensors()
        .iter()
        .flat_map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .map(f32::to_bits)
        .collect()
}

fn quiet() -> impl FnMut(&LogRecord) {
    |_| {}
}

#[test]
fn training_reduces_fvu_keeps_unit_decoder_rows_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let mut src = synthetic(6, 10, 1);
    let cfg = TrainConfig {
        total_steps: 60,
        ..tiny_config(0)
    };
    let mut records = Vec::new();
    let out = train(
        &mut src,
        (0..10).collect(),
        &cfg,
        &run_opts(tmp.path()),
        &mut |r| records.push(r.clone()),
    )
    .unwrap();
    assert!(out.finished);
    assert_eq!(out.state.step, 60);
    for row in out.sae.w_dec().to_vec2::<f32>().unwrap() {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    let (first, last) = (&records[0], records.last().unwrap());
    assert!(
        last.fvu < first.fvu * 0.7,
        "FVU {} -> {}",
        first.fvu,
        last.fvu
    );
    assert!(last.l0 <= 2.0 && last.step == 60);
    let log = std::fs::read_to_string(tmp.path().join(LOG_FILE)).unwrap();
    assert_eq!(log.lines().count(), records.len());
    let exported = Sae::load(&tmp.path().join("export"), None, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(bits(&Params::from_sae(&exported)), bits(&out.state.params));
    assert_eq!(exported.cfg(), &cfg.sae_config());
    let held = heldout_metrics(&exported, &mut src, &[0, 1]).unwrap();
    assert!(
        held.fvu > 0.0 && held.fvu < 1.0 && held.l0 <= 2.0,
        "{held:?}"
    );

    // A second fresh run into the same folder is refused.
    let err = train(
        &mut src,
        (0..10).collect(),
        &cfg,
        &run_opts(tmp.path()),
        &mut quiet(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn resume_matches_an_uninterrupted_run_bit_for_bit() {
    let cfg = TrainConfig {
        total_steps: 40,
        multi_topk: true,
        dead_threshold: 20,
        ..tiny_config(5)
    };
    let items: Vec<usize> = (0..12).collect();
    let whole = tempfile::tempdir().unwrap();
    let mut src = synthetic(6, 12, 2);
    let a = train(
        &mut src,
        items.clone(),
        &cfg,
        &run_opts(whole.path()),
        &mut quiet(),
    )
    .unwrap();

    let parts = tempfile::tempdir().unwrap();
    let mut opts = run_opts(parts.path());
    for stop in [11, 3, 13] {
        opts.stop_after = Some(stop);
        let part = train(&mut src, items.clone(), &cfg, &opts, &mut quiet()).unwrap();
        assert!(!part.finished);
        opts.resume = true;
    }
    opts.stop_after = None;
    let b = train(&mut src, items, &cfg, &opts, &mut quiet()).unwrap();
    assert!(b.finished && b.state.step == 40);
    assert_eq!(bits(&a.state.params), bits(&b.state.params));
    assert_eq!(bits(&a.state.adam.m), bits(&b.state.adam.m));
    assert_eq!(bits(&a.state.adam.v), bits(&b.state.adam.v));
    assert_eq!(a.state.since_fired, b.state.since_fired);
    assert_eq!(
        (a.state.tokens, a.state.position),
        (b.state.tokens, b.state.position)
    );
    let steps = |dir: &std::path::Path| -> Vec<u64> {
        std::fs::read_to_string(dir.join(LOG_FILE))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let logged = steps(parts.path());
    assert!(
        logged.windows(2).all(|w| w[0] < w[1]),
        "log rewound on resume: {logged:?}"
    );
    assert_eq!(logged.last(), Some(&40));

    // Changing a setting is refused with the difference named.
    let other = TrainConfig { lr: 5e-3, ..cfg };
    let err = train(&mut src, (0..12).collect(), &other, &opts, &mut quiet())
        .unwrap_err()
        .to_string();
    assert!(err.contains("lr: checkpoint 0.01, now 0.005"), "{err}");
}

#[test]
fn auxk_revives_dead_latents() {
    // Rows = one of two "live" directions (e0, e1) at 0.5..1 plus ±(2..3) along e2. Latents 0 and 1
    // own e0 and e1; latents 2..5 start with weak encoder rows that never reach the top 1.
    let (n, d) = (6, 4);
    let mut rng = SeededRng::new(7);
    let mut rows = Vec::new();
    for i in 0..64 {
        let mut r = vec![0f32; d];
        r[i % 2] = rng.range_f64(0.5, 1.0) as f32;
        let c = rng.range_f64(2.0, 3.0) as f32;
        r[2] = if i % 4 < 2 { c } else { -c };
        r[3] = 0.05 * rng.normal() as f32;
        rows.extend(r);
    }
    let x = Tensor::from_vec(rows, (64, d), &Device::Cpu).unwrap();
    let mut enc = vec![0f32; n * d];
    enc[0] = 1.0;
    enc[d + 1] = 1.0;
    let mut dec = enc.clone();
    for j in 2..n {
        for c in 0..d {
            enc[j * d + c] = 0.02 * rng.normal() as f32;
            dec[j * d + c] = rng.normal() as f32;
        }
    }
    let params = Params {
        w_enc: Tensor::from_vec(enc, (n, d), &Device::Cpu).unwrap(),
        b_enc: Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap(),
        w_dec: normalize_rows(&Tensor::from_vec(dec, (n, d), &Device::Cpu).unwrap()).unwrap(),
        b_dec: Tensor::zeros(d, DType::F32, &Device::Cpu).unwrap(),
    };
    let revived = |alpha: f64| -> usize {
        let cfg = TrainConfig {
            d_in: d,
            num_latents: n,
            k: 1,
            auxk_alpha: alpha,
            dead_threshold: 0,
            lr: 2e-2,
            ..tiny_config(0)
        };
        let mut st = TrainState {
            adam: Adam::new(&params).unwrap(),
            params: params.clone(),
            config: cfg,
            step: 0,
            position: Position::default(),
            tokens: 0,
            since_fired: vec![0; n],
        };
        let opts = LossOptions {
            k: 1,
            auxk_alpha: alpha,
            multi_topk: false,
        };
        let mut ever = [false; 6];
        for _ in 0..300 {
            let (loss, _) = train_step(&mut st, &x, &opts, 2e-2).unwrap();
            for f in loss.fired {
                ever[f as usize] = true;
            }
        }
        (2..n).filter(|&j| ever[j]).count()
    };
    assert_eq!(revived(0.0), 0, "without AuxK dead latents stay dead");
    assert!(revived(1.0) >= 1, "AuxK should bring some dead latent back");
}

#[test]
fn nan_activations_stop_training_and_keep_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut src = synthetic(6, 10, 3);
    let cfg = TrainConfig {
        total_steps: 200,
        ..tiny_config(1)
    };
    let plan = Plan::new(
        &mut src,
        (0..10).collect(),
        cfg.batch_rows,
        cfg.buffer_rows,
        cfg.seed,
    )
    .unwrap();
    let chunks = plan.epoch(0);
    let poisoned = chunks[1].items[0];
    let before: u64 = chunks[0].batches as u64;
    src.items[poisoned][4] = f32::NAN;
    let mut opts = run_opts(tmp.path());
    opts.save_every = 1;
    let err = format!(
        "{:#}",
        train(&mut src, (0..10).collect(), &cfg, &opts, &mut quiet()).unwrap_err()
    );
    assert!(
        err.contains("non-finite") && err.contains("intact"),
        "{err}"
    );
    assert!(err.contains(&format!("step {}", before + 1)), "{err}");
    let st = TrainState::load(&tmp.path().join(STATE_FILE), &Device::Cpu).unwrap();
    assert_eq!(st.step, before);
    assert!(
        st.params
            .w_enc
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .is_finite()
    );
}

#[test]
fn width_mismatch_and_empty_data_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let mut src = synthetic(5, 3, 4);
    let err = train(
        &mut src,
        vec![0, 1],
        &tiny_config(0),
        &run_opts(tmp.path()),
        &mut quiet(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("width 5") && err.to_string().contains("d_in = 6"),
        "{err}"
    );
    let mut src = synthetic(6, 3, 4);
    let err = train(
        &mut src,
        vec![],
        &tiny_config(0),
        &run_opts(tmp.path()),
        &mut quiet(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let mut opts = run_opts(tmp.path());
    opts.resume = true;
    let err = train(&mut src, vec![0], &tiny_config(0), &opts, &mut quiet()).unwrap_err();
    assert!(err.to_string().contains("nothing to resume"), "{err}");
}

#[test]
fn default_lr_follows_the_recipe() {
    assert!((TrainConfig::default_lr(16384) - 2e-4).abs() < 1e-15);
    assert!((TrainConfig::default_lr(131072) - 7.0711e-5).abs() < 1e-8);
    assert!((TrainConfig::default_lr(256) - 1.6e-3).abs() < 1e-12);
}
