use half::f16;
use safetensors::{Dtype, tensor::TensorView};

use super::super::manifest::tests::manifest;
use super::super::testutil::{build, dump, synth};
use super::super::{FeatureFilter, RankRule, rank_order};
use super::*;
use crate::model::anyres::TokenKind;

#[test]
fn splits_match_torch_linspace() {
    let s = seed_splits(131_072, 128).unwrap();
    assert_eq!(s.len(), 128);
    assert_eq!(
        (s[0], s[1], s[127]),
        ((0, 1023), (1024, 2047), (130_048, 131_071))
    );
    // linspace(0, 10, 4) = [0, 3.33, 6.67, 10] truncates to 0, 3, 6, 10.
    assert_eq!(seed_splits(10, 3).unwrap(), vec![(0, 2), (3, 5), (6, 9)]);
    assert!(seed_splits(10, 0).is_err() && seed_splits(10, 11).is_err());
}

fn write_seed(path: &Path, rows: &[([i64; 3], f32)], loc_dtype: Dtype) {
    let loc: Vec<u8> = rows
        .iter()
        .flat_map(|r| r.0)
        .flat_map(i64::to_le_bytes)
        .collect();
    let act: Vec<u8> = rows.iter().flat_map(|r| r.1.to_le_bytes()).collect();
    let views = [
        (
            "locations",
            TensorView::new(loc_dtype, vec![rows.len(), 3], &loc).unwrap(),
        ),
        (
            "activations",
            TensorView::new(Dtype::F32, vec![rows.len()], &act).unwrap(),
        ),
    ];
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn read_seed(path: &Path) -> Vec<([i64; 3], f32)> {
    let bytes = std::fs::read(path).unwrap();
    let mut rows = Vec::new();
    let m = manifest(40, 1, RankRule::Max);
    parse_file(&bytes, &m, u32::MAX, &mut rows).unwrap();
    rows.iter()
        .map(|r| ([r.image.into(), r.pos.into(), r.feature.into()], r.value))
        .collect()
}

#[test]
fn export_import_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(40, 4, RankRule::Max);
    let idx: Vec<u32> = (0..30).collect();
    let store = build(&tmp.path().join("orig"), &m, 7, &idx, 8);
    for bug in [false, true] {
        let save = tmp.path().join(format!("seed-{bug}"));
        let files = export_seed(&store, &save, 4, bug).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["0_9", "10_19", "20_29", "30_39"].map(|n| format!("{n}.safetensors"))
        );
        assert!(
            files
                .iter()
                .all(|f| f.starts_with(save.join("model.layers.2")))
        );
        let rows = read_seed(&files[0]);
        assert!(
            !rows.is_empty() && rows.windows(2).all(|w| w[0].0 < w[1].0),
            "row-major order"
        );
        let imported = import_seed(
            &tmp.path().join(format!("imp-{bug}")),
            &save,
            &m,
            30,
            &mut |i| Ok(synth(7, i, 40).record),
        )
        .unwrap();
        let mut compared = 0;
        for f in 0..40u32 {
            let orig = store.top_examples(f).unwrap();
            let back = imported.top_examples(f).unwrap();
            if bug && f % 10 == 9 {
                assert!(
                    back.is_empty(),
                    "feature {f} must be dropped by the split bug"
                );
                continue;
            }
            // Max of f16-rounded values is the f16-rounded max, so the order is known exactly.
            let mut expect: Vec<(f32, u32)> = orig
                .iter()
                .map(|e| (f16::from_f32(e.score).to_f32(), e.image))
                .collect();
            expect.sort_by(|a, b| rank_order(*a, *b));
            let got: Vec<(f32, u32)> = back.iter().map(|e| (e.score, e.image)).collect();
            assert_eq!(got, expect, "feature {f}");
            for b in &back {
                let o = orig.iter().find(|o| o.image == b.image).unwrap();
                assert_eq!(o.tokens, b.tokens, "feature {f} image {}", b.image);
                for (x, y) in [(o.max, b.max), (o.mean_base, b.mean_base)] {
                    assert!(
                        (x - y).abs() <= 1e-3 * x.abs() + 1e-6,
                        "feature {f}: {x} vs {y}"
                    );
                }
                compared += 1;
            }
        }
        assert!(compared > 60, "{compared}");
    }
}

#[test]
fn full_seed_cache_imports_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = manifest(40, 3, RankRule::MeanBase);
    m.features = FeatureFilter::Range(0, 30);
    let idx: Vec<u32> = (0..20).collect();
    let direct = build(&tmp.path().join("direct"), &m, 13, &idx, 5);
    // What the original cache job would have written: every non-zero, newline tokens included.
    let mut rows = Vec::new();
    for &i in &idx {
        let s = synth(13, i, 40);
        let lay = s.record.layout.clone().unwrap();
        for (p, t) in lay.tokens().iter().enumerate() {
            if t.kind == TokenKind::Newline {
                rows.push(([i64::from(i), p as i64, 3], 50.0));
            }
        }
        rows.extend(
            s.acts
                .iter()
                .filter(|a| a.2 > 1e-5)
                .map(|&(t, f, v)| ([i64::from(i), t.into(), f.into()], v)),
        );
    }
    let dir = tmp.path().join("seed").join("model.layers.2");
    std::fs::create_dir_all(&dir).unwrap();
    for (a, b) in seed_splits(40, 2).unwrap() {
        let part: Vec<_> = rows
            .iter()
            .copied()
            .filter(|r| (a..=b).contains(&(r.0[2] as u32)))
            .collect();
        write_seed(&dir.join(format!("{a}_{b}.safetensors")), &part, Dtype::I64);
    }
    let mut calls = 0;
    let imported = import_seed(
        &tmp.path().join("imp"),
        &tmp.path().join("seed"),
        &m,
        20,
        &mut |i| {
            calls += 1;
            Ok(synth(13, i, 40).record)
        },
    )
    .unwrap();
    assert_eq!(calls, 20);
    assert!(
        dump(&direct) == dump(&imported),
        "import differs from a direct run"
    );
    drop(imported);
    // Rerunning a finished import is a no-op.
    import_seed(
        &tmp.path().join("imp"),
        &tmp.path().join("seed"),
        &m,
        20,
        &mut |_| unreachable!(),
    )
    .unwrap();
}

#[test]
fn bad_seed_caches_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(40, 3, RankRule::Max);
    let rec = &mut |i| Ok(synth(1, i, 40).record);
    let save = tmp.path().join("seed");
    let msg = format!(
        "{:#}",
        import_seed(&tmp.path().join("a"), &save, &m, 4, rec).unwrap_err()
    );
    assert!(
        msg.contains("model.layers.2") && msg.contains(&save.display().to_string()),
        "{msg}"
    );
    let dir = save.join("model.layers.2");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("0_39.safetensors");
    write_seed(&bad, &[([9, 0, 1], 1.0)], Dtype::I64);
    let msg = format!(
        "{:#}",
        import_seed(&tmp.path().join("b"), &save, &m, 4, rec).unwrap_err()
    );
    assert!(
        msg.contains(&bad.display().to_string()) && msg.contains("image 9"),
        "{msg}"
    );
    write_seed(&bad, &[([0, 0, 1], 1.0)], Dtype::F64);
    let msg = format!(
        "{:#}",
        import_seed(&tmp.path().join("c"), &save, &m, 4, rec).unwrap_err()
    );
    assert!(msg.contains("int64"), "{msg}");
    write_seed(&bad, &[([0, 4000, 1], 1.0)], Dtype::I64);
    let msg = format!(
        "{:#}",
        import_seed(&tmp.path().join("d"), &save, &m, 4, rec).unwrap_err()
    );
    assert!(
        msg.contains("token 4000") && msg.contains("image 0"),
        "{msg}"
    );
    std::fs::write(dir.join("Rank0_0_39.safetensors"), b"x").unwrap();
    let msg = format!(
        "{:#}",
        import_seed(&tmp.path().join("e"), &save, &m, 4, rec).unwrap_err()
    );
    assert!(msg.contains("per-rank"), "{msg}");
}
