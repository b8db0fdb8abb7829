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
    write_answers(dir, &[answer])
}

/// One item per answer, all on the same image and prompt.
fn write_answers(dir: &Path, answers: &[&str]) -> PathBuf {
    let image = sample_image("shape-0000.png");
    let items: Vec<Value> = answers
        .iter()
        .map(|answer| {
            serde_json::json!({
                "prompt": PROMPT,
                "answer": answer,
                "baseline": "Ġblue",
                "image": image,
            })
        })
        .collect();
    let path = dir.join("items.json");
    std::fs::write(&path, serde_json::to_string(&items).unwrap()).unwrap();
    path
}

fn attribute(data: &Path, dir: &Path, extra: &[&str]) -> Output {
    glint()
        .args(["--batch", "attribute", "--data"])
        .arg(data)
        .arg("--out")
        .arg(dir.join("attribution.jsonl"))
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

    let report = lines(dir.path());
    let item = &report[0];
    assert_eq!(item["answer"]["token"], "Ġred");
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

/// The output's lines.
fn lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("attribution.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_bad_item_keeps_the_finished_ones_and_a_rerun_does_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    write_answers(dir.path(), &[" red", " red circle", " green"]);
    let data = dir.path().join("items.json");
    let args = ["--create-filters", "2"];
    let out = attribute(&data, dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("item 1") && stderr.contains("2 tokens"),
        "{stderr}"
    );
    let first = lines(dir.path());
    let indices: Vec<u64> = first.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, [0, 2], "items 0 and 2 were finished");
    assert!(!dir.path().join("filters/filters_top_2_items.json").exists());

    write_answers(dir.path(), &[" red", " green", " green"]);
    let out = attribute(&data, dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("item 1: M =") && !stderr.contains("item 0: M ="),
        "{stderr}"
    );
    let all = lines(dir.path());
    assert_eq!(all.len(), 3);
    // Kept as written, timings included: they were not attributed again.
    assert_eq!((&all[0], &all[2]), (&first[0], &first[1]));
    assert!(dir.path().join("filters/filters_top_2_items.json").exists());
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
