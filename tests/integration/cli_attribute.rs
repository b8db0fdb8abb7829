//! `glint --batch attribute` end to end on the sample world: the original's JSON in, ranked
//! latents and a filter file out.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{glint, sample_image};
use serde_json::Value;

/// A fully formatted Llama-3 chat prompt, as the original's probing data carries.
const PROMPT: &str = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<image>\n\
                      What colour is the circle?<|eot_id|><|start_header_id|>assistant\
                      <|end_header_id|>\n\n";

fn write_items(dir: &Path, answer: &str) -> PathBuf {
    let image = sample_image("shape-0000.png");
    let items = serde_json::json!([{
        "prompt": PROMPT,
        "answer": answer,
        "baseline": "Ġblue",
        "image": image,
    }]);
    let path = dir.join("items.json");
    std::fs::write(&path, items.to_string()).unwrap();
    path
}

fn attribute(data: &Path, dir: &Path, extra: &[&str]) -> Output {
    glint()
        .args(["--batch", "attribute", "--data"])
        .arg(data)
        .arg("--out")
        .arg(dir.join("attribution.json"))
        .arg("--filters-dir")
        .arg(dir.join("filters"))
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn one_image_gives_ranked_latents_and_an_image_only_filter_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_items(dir.path(), " red");
    let args = ["--top", "5", "--create-filters", "3", "--image-only"];
    let out = attribute(&data, dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    println!("{stderr}");

    let text = std::fs::read_to_string(dir.path().join("attribution.json")).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    let item = &report.as_array().unwrap()[0];
    assert_eq!(item["answer"]["id"], 306);
    assert_eq!(item["baseline"]["token"], "Ġblue");
    assert_eq!(item["ranked_by"], "image");
    let (plain, patched) = (
        item["plain_metric"].as_f64().unwrap(),
        item["patched_metric"].as_f64().unwrap(),
    );
    assert!((plain - patched).abs() < 1e-4, "{plain} vs {patched}");
    let top = item["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let images: Vec<f64> = top.iter().map(|l| l["image"].as_f64().unwrap()).collect();
    assert!(images.windows(2).all(|w| w[0] >= w[1]), "{images:?}");
    assert!(!top[0]["image_map"].as_array().unwrap().is_empty());
    assert!(item["layout"]["tiles"].is_array());

    let filters = dir.path().join("filters/filters_top_3_items.json");
    let filter: Value = serde_json::from_str(&std::fs::read_to_string(filters).unwrap()).unwrap();
    let ids: Vec<&Value> = filter["model.layers.2"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let expected: Vec<&Value> = top.iter().take(3).map(|l| &l["latent"]).collect();
    assert_eq!(ids, expected);
    assert_eq!(filter.as_object().unwrap().len(), 1);
}

#[test]
fn an_answer_of_several_tokens_is_refused_with_its_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_items(dir.path(), " red circle");
    let out = attribute(&data, dir.path(), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("item 0") && stderr.contains("2 tokens"),
        "{stderr}"
    );
}
