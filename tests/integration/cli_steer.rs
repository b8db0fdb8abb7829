//! `glint --batch steer` end to end on the sample world (tiny random-weight model: the text is
//! gibberish, but deterministic).

use std::path::Path;
use std::process::Command;

use crate::common::{glint, ok, sample_image};
use serde_json::Value;

fn steer(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = glint();
    cmd.args([
        "--batch",
        "steer",
        "--prompt",
        "What is in the image?",
        "--max-new-tokens",
        "8",
        "--out",
    ])
    .arg(out)
    .args(extra);
    cmd
}

fn rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn image() -> String {
    sample_image("shape-0000.png").display().to_string()
}

#[test]
fn rows_carry_the_documented_fields_and_resume_skips_done_features() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("steer.jsonl");
    let args = [
        "--image",
        &image(),
        "--features",
        "1,5",
        "--mode",
        "clamp",
        "--strength",
        "300",
    ];
    ok(&mut steer(&out, &args));
    let first = rows(&out);
    assert_eq!(first.len(), 2);
    for (r, f) in first.iter().zip([1, 5]) {
        for key in [
            "feature", "mode", "strength", "prompt", "image", "default", "steered", "tokens",
        ] {
            assert!(r.get(key).is_some(), "row lacks {key}: {r}");
        }
        assert_eq!(r["feature"], f);
        assert_eq!(r["mode"], "clamp");
        assert_eq!(r["phase"], "both");
        assert!(r["tokens"].as_array().unwrap().len() <= 8);
    }
    assert_ne!(
        first[0]["steered"], first[0]["default"],
        "a 300-unit clamp moves the text"
    );
    // Adding a feature reruns only the new one; the first two rows stay as they were.
    let args = [
        "--image",
        &image(),
        "--features",
        "1,5,9",
        "--mode",
        "clamp",
        "--strength",
        "300",
        "--json",
    ];
    let summary: Value = serde_json::from_slice(&ok(&mut steer(&out, &args)).stdout).unwrap();
    assert_eq!(
        (summary["written"].as_u64(), summary["resumed"].as_u64()),
        (Some(1), Some(2))
    );
    let all = rows(&out);
    assert_eq!(all[..2], first[..]);
    assert_eq!(all[2]["feature"], 9);
    // Other settings on the same file are refused, not mixed in.
    let out2 = steer(
        &out,
        &["--image", &image(), "--features", "1", "--mode", "add"],
    )
    .output()
    .unwrap();
    assert!(!out2.status.success());
    assert!(String::from_utf8_lossy(&out2.stderr).contains("mode"));
}

#[test]
fn replace_defaults_to_the_original_prefill_semantics_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let args = [
        "--features",
        "2",
        "--temperature",
        "0.8",
        "--top-p",
        "0.9",
        "--seed",
        "4",
    ];
    ok(&mut steer(&a, &args));
    ok(&mut steer(&b, &args));
    let (ra, rb) = (rows(&a), rows(&b));
    assert_eq!(ra[0]["mode"], "replace");
    assert_eq!(ra[0]["phase"], "prefill");
    assert_eq!(ra[0]["strength"], 50.0);
    assert_eq!(
        ra[0]["tokens"], rb[0]["tokens"],
        "a fixed seed gives the same steered tokens"
    );
    assert_eq!(ra[0]["default"], rb[0]["default"]);
}

#[test]
fn shards_split_the_features_and_cover_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.jsonl");
    ok(&mut steer(
        &out,
        &["--features", "0..5", "--mode", "add", "--shard", "0/2"],
    ));
    // The second shard takes its rank from the launcher's environment, as under torchrun.
    ok(steer(&out, &["--features", "0..5", "--mode", "add"])
        .env("RANK", "1")
        .env("WORLD_SIZE", "2"));
    let f = |p: &str| -> Vec<u64> {
        rows(&dir.path().join(p))
            .iter()
            .map(|r| r["feature"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(f("s.shard-0-of-2.jsonl"), vec![0, 2, 4]);
    assert_eq!(f("s.shard-1-of-2.jsonl"), vec![1, 3]);
    assert!(!out.exists());
}

#[test]
fn a_steer_that_does_nothing_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.jsonl");
    let run = ok(&mut steer(
        &out,
        &["--features", "3", "--mode", "add", "--strength", "0"],
    ));
    let r = &rows(&out)[0];
    assert_eq!(r["identical"], true);
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("changed nothing"),
        "{r}"
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("warning"));
    let bad = steer(
        &out,
        &["--features", "3", "--tokens", "image", "--phase", "decode"],
    )
    .output()
    .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("selects nothing"));
}

#[test]
fn max_units_read_the_cached_max_activation() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(glint()
        .args(["--batch", "cache", "--limit", "3", "--out"])
        .arg(&store));
    let (fired, max, silent) = {
        let s = glint::store::Store::open(&store).unwrap();
        let stats: Vec<(u32, f32)> = s
            .features()
            .map(|r| r.unwrap())
            .map(|(f, st)| (f, st.max))
            .collect();
        let silent = (0..256)
            .find(|f| stats.iter().all(|s| s.0 != *f))
            .expect("a feature that never fired");
        (stats[0].0, stats[0].1, silent)
    };
    let out = dir.path().join("m.jsonl");
    let store_arg = store.display().to_string();
    let args = |f: u32| {
        let f = f.to_string();
        let list = [
            "--features",
            &f,
            "--unit",
            "max",
            "--strength",
            "2",
            "--store",
            &store_arg,
            "--mode",
            "clamp",
        ];
        list.map(String::from)
    };
    ok(steer(&out, &[]).args(args(fired)));
    let r = &rows(&out)[0];
    assert_eq!(
        (r["unit"].as_str(), r["strength"].as_f64()),
        (Some("max"), Some(2.0))
    );
    assert_eq!(r["value"].as_f64().unwrap() as f32, 2.0 * max);
    let bad = steer(&out, &[]).args(args(silent)).output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("no cached max activation"),
        "{err}"
    );
}
