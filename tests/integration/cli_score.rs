//! `glint --batch score --method iou` end to end on the sample world against its ground-truth
//! masks: scores are stored, a second run resumes (skips), `--force` redoes, and the CSV/JSON
//! export carries them.

use std::path::Path;

use crate::common::{glint, root, run_ok};
use glint::sample::shapes::read_manifest;
use glint::store::{Explanation, Store};

fn explanation(f: u32, text: &str) -> Explanation {
    Explanation {
        feature: f,
        text: text.into(),
        label: None,
        explainer_model: "test-explainer".into(),
        base_url_host: String::new(),
        prompt_hash: "p1".into(),
        example_images: vec![],
        created_unix: 1,
        raw_response: text.into(),
        parsed: true,
        usage: None,
        imported_from: Some("test".into()),
    }
}

fn score(store: &Path, extra: &[&str]) -> serde_json::Value {
    let mut cmd = glint();
    cmd.args(["--batch", "score", "--method", "iou", "--json", "--store"])
        .arg(store)
        .args(extra);
    serde_json::from_str(&run_ok(&mut cmd)).unwrap()
}

#[test]
fn iou_scores_against_ground_truth_resume_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut cache = glint();
    cache
        .args(["--batch", "cache", "--limit", "4", "--top-n", "3", "--out"])
        .arg(&store_dir);
    run_ok(&mut cache);

    // Three explained features: the top image's first object, a label naming nothing in the
    // dataset (every image fails), and a declined one.
    let entries = read_manifest(&root().join("sample-data/shapes/manifest.jsonl")).unwrap();
    let (named, unknown, declined);
    {
        let store = Store::open(&store_dir).unwrap();
        let fired: Vec<u32> = store.features().map(|r| r.unwrap().0).take(3).collect();
        assert_eq!(fired.len(), 3, "the sample SAE fires on several features");
        (named, unknown, declined) = (fired[0], fired[1], fired[2]);
        let top = &store.top_examples(named).unwrap()[0];
        let path = store.image(top.image).unwrap().unwrap().path;
        let entry = entries.iter().find(|e| e.path == path).unwrap();
        let label = format!("A {}.", entry.objects[0].label);
        store.put_explanation(&explanation(named, &label)).unwrap();
        store
            .put_explanation(&explanation(unknown, "Honda vehicles"))
            .unwrap();
        store
            .put_explanation(&explanation(declined, "Unable to produce descriptions"))
            .unwrap();
    }

    let s = score(&store_dir, &[]);
    assert_eq!(s["scored"], 3, "{s}");
    assert_eq!(s["declined"], 1, "{s}");
    assert_eq!(s["model"], "ground-truth");
    {
        let store = Store::open(&store_dir).unwrap();
        let a = store.latest_score(named, "iou").unwrap().unwrap();
        let v = a.value.unwrap();
        assert!((0.0..=1.0).contains(&v) && a.n >= 1, "{a:?}");
        assert!(a.label.starts_with("A ") && a.failures < a.n, "{a:?}");
        // The top image holds the named object, so it is not a failure.
        assert_eq!(
            a.details["iou_scores"][0].as_f64().map(|x| x >= 0.0),
            Some(true)
        );
        let b = store.latest_score(unknown, "iou").unwrap().unwrap();
        assert_eq!((b.value, b.failures), (Some(0.0), b.n), "{b:?}");
        let c = store.latest_score(declined, "iou").unwrap().unwrap();
        assert_eq!(c.value, None);
        assert_eq!(store.scores_of(named).unwrap().len(), 1);
    }

    // Resumable: nothing left to do; --force scores again; another rule is stored beside it.
    let s = score(&store_dir, &[]);
    assert_eq!(
        (s["scored"].as_u64(), s["already_scored"].as_u64()),
        (Some(0), Some(3))
    );
    let s = score(&store_dir, &["--force", "--features", &named.to_string()]);
    assert_eq!(s["scored"], 1);
    let s = score(&store_dir, &["--threshold", "0.3"]);
    assert_eq!(s["scored"], 3);
    assert_eq!(
        Store::open(&store_dir)
            .unwrap()
            .scores_of(named)
            .unwrap()
            .len(),
        2
    );

    let csv = dir.path().join("f.csv");
    let mut export = glint();
    export
        .args(["--batch", "export", "--format", "csv", "--store"])
        .arg(&store_dir)
        .arg("--out")
        .arg(&csv);
    run_ok(&mut export);
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].contains(",iou,iou_failures,iou_n,"));
    let mut export = glint();
    export
        .args([
            "--batch", "export", "--format", "json", "--out", "-", "--store",
        ])
        .arg(&store_dir);
    let rows: serde_json::Value = serde_json::from_str(&run_ok(&mut export)).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert_eq!(rows[0]["scores"].as_array().unwrap().len(), 2);
}
