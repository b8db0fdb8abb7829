//! `glint --batch cache` over a Hugging Face style parquet dataset: images are extracted to the
//! cache folder, the store names the parquet source, and a row without bytes is skipped.

use std::path::{Path, PathBuf};

use crate::common::{glint, sample_image};
use glint::dataset::parquet_image_root;
use glint::store::Store;

#[test]
fn a_parquet_split_is_cached_from_extracted_images() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("store");
    let source = "tests/fixtures/parquet/hf";
    let res = glint()
        .env("GLINT_CACHE_DIR", &cache)
        .args(["--batch", "cache", "--json", "--top-n", "5", "--limit", "2"])
        .args(["--dataset", source, "--split", "test", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    // Row 0 is shape-0003.png; row 1 has no image bytes and is skipped with a reason.
    assert_eq!(summary["images_done"], 1, "{summary}");
    let skipped = summary["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{summary}");
    assert!(!skipped[0]["reason"].as_str().unwrap().is_empty());

    let store = Store::open(&out).unwrap();
    assert_eq!(store.manifest().dataset, source);
    let rec = store.image(0).unwrap().unwrap();
    assert_eq!(rec.id, "test-00000-of-00001/0");
    // The cache holds one folder of extracted images, and readers of the store find it from
    // the recorded source alone.
    let folders: Vec<PathBuf> = std::fs::read_dir(cache.join("parquet"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(folders.len(), 1);
    let image = folders[0].join(&rec.path);
    let original = sample_image("shape-0003.png");
    assert!(std::fs::read(&image).unwrap() == std::fs::read(original).unwrap());
    // SAFETY: this test binary runs this one test, so no other thread reads the environment.
    unsafe { std::env::set_var("GLINT_CACHE_DIR", &cache) };
    assert_eq!(
        parquet_image_root(Path::new(source)),
        Some(folders[0].clone())
    );
}
