//! `glint --batch export --format json --pages`: the missing feature pages computed with the
//! model and kept, so the published JSON carries them; a rerun computes none again.

use std::path::Path;

use crate::common::{glint, run_ok};
use glint::store::Store;

fn export_pages(store: &Path, pages: &str) -> std::process::Output {
    let mut cmd = glint();
    cmd.args(["--batch", "export", "--format", "json", "--out", "-"])
        .args(["--pages", pages, "--store"])
        .arg(store);
    cmd.output().unwrap()
}

/// A store cached from the first `limit` sample images, `top_n` examples a feature.
fn cached_store(dir: &Path, limit: &str, top_n: &str) -> std::path::PathBuf {
    let store_dir = dir.join("store");
    let mut cache = glint();
    cache
        .args([
            "--batch", "cache", "--limit", limit, "--top-n", top_n, "--out",
        ])
        .arg(&store_dir);
    run_ok(&mut cache);
    store_dir
}

#[test]
fn export_computes_the_missing_pages_once_and_carries_them() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = cached_store(dir.path(), "4", "3");
    let fired: Vec<u32> = {
        let store = Store::open(&store_dir).unwrap();
        store.features().map(|r| r.unwrap().0).take(2).collect()
    };
    let list = format!("{},{}", fired[0], fired[1]);

    let out = export_pages(&store_dir, &list);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pages: 2 computed, 0 kept already"), "{err}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "features with only a page are exported");
    for (row, &f) in rows.iter().zip(&fired) {
        assert_eq!(row["feature"], f);
        let page = &row["page"];
        assert_eq!(page["feature"], f);
        assert_eq!(page["decoder_neighbours"].as_array().unwrap().len(), 10);
        assert_eq!(page["logit_lens"]["raises"].as_array().unwrap().len(), 10);
        let images = page["cofiring_images"].as_u64().unwrap();
        assert!(
            (1..=3).contains(&images),
            "co-firing over its top images: {images}"
        );
        // Its range sample, by decile: every image it fired on (at most 4 here), weakest first.
        let fired_on = row["fired_images"].as_u64().unwrap();
        let bands = row["range"].as_array().unwrap();
        let sampled: Vec<&serde_json::Value> = bands
            .iter()
            .flat_map(|b| b["examples"].as_array().unwrap())
            .collect();
        assert_eq!(sampled.len() as u64, fired_on, "{bands:?}");
        let lows: Vec<f64> = bands.iter().map(|b| b["low"].as_f64().unwrap()).collect();
        assert!(lows.windows(2).all(|w| w[0] <= w[1]), "{lows:?}");
        assert!(sampled.iter().all(|e| e["image"].as_u64().unwrap() < 4));
        // Where it fires, by kind: image tokens were scored, newlines and text were not.
        let kinds = row["by_position"].as_array().unwrap();
        let names: Vec<&str> = kinds.iter().map(|k| k["kind"].as_str().unwrap()).collect();
        assert_eq!(names, ["base", "high-res", "newline", "text"]);
        let fired: u64 = kinds.iter().map(|k| k["fired"].as_u64().unwrap()).sum();
        assert_eq!(fired, row["fired_tokens"].as_u64().unwrap());
        assert!(kinds[0]["scored"].as_u64().unwrap() > 0);
        assert!(kinds[2]["density"].is_null() && kinds[3]["density"].is_null());
    }

    let again = export_pages(&store_dir, &list);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("pages: 0 computed, 2 kept already"), "{err}");
    assert_eq!(
        again.stdout, out.stdout,
        "the kept pages are exported as computed"
    );
}

#[test]
fn export_pages_refuses_features_out_of_range_and_other_formats() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = cached_store(dir.path(), "1", "1");
    let out = export_pages(&store_dir, "4000000000");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("feature 4000000000 is out of range"), "{err}");

    let out = glint()
        .args(["--batch", "export", "--format", "csv", "--out", "-"])
        .args(["--pages", "0", "--store"])
        .arg(&store_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("add --format json"), "{err}");
}
