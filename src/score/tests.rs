//! Detection and fuzzing end to end on a sample-world store against the mock judge: a judge
//! that answers right scores 1, one that says yes to everything scores chance, and a resumed run
//! skips what is stored.

use serde_json::Value;

use super::detection::SampleOptions;
use super::fuzzing::FuzzType;
use super::judge::tests::client;
use super::prompt::{Builtin, ScorePrompt};
use super::testworld::{sample_store, shapes_root};
use super::*;
use crate::store::FeatureFilter;
use base64::Engine;
use glint_mock_llm::{MockServer, Reply};

/// Per image of a request: (red pixels, lit pixels), lit = any channel above 70.
fn red_and_lit(body: &Value) -> Vec<(usize, usize)> {
    let parts = body["messages"][1]["content"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    parts
        .iter()
        .filter_map(|p| p["image_url"]["url"].as_str())
        .map(|u| {
            let b64 = u.trim_start_matches("data:image/png;base64,");
            let png = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let img = image::load_from_memory(&png).unwrap().to_rgb8();
            let red = img
                .pixels()
                .filter(|p| p[0] > 180 && p[1] < 70 && p[2] < 70)
                .count();
            let lit = img.pixels().filter(|p| p.0.iter().any(|&c| c > 70)).count();
            (red, lit)
        })
        .collect()
}

/// A judge that knows the feature is "red": detection by red pixels, fuzzing by a mostly red
/// lit area.
async fn right_judge() -> MockServer {
    MockServer::start(|s| {
        let body = s.json();
        let fuzz = body["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .contains("highlighted");
        let answers: Vec<&str> = red_and_lit(&body)
            .iter()
            .map(|&(red, lit)| {
                let yes = if fuzz {
                    red * 100 > 35 * lit.max(1)
                } else {
                    red > 20
                };
                if yes { "1" } else { "0" }
            })
            .collect();
        Reply::ok(&format!("[{}]", answers.join(", ")))
    })
    .await
}

fn explanation(f: u32) -> Explanation {
    Explanation {
        feature: f,
        text: "Red objects".into(),
        label: None,
        explainer_model: "x".into(),
        base_url_host: String::new(),
        prompt_hash: "p".into(),
        example_images: vec![],
        created_unix: 1,
        raw_response: String::new(),
        parsed: true,
        usage: None,
        imported_from: None,
    }
}

fn job(url: &str, fuzz: Option<(FuzzType, f32)>) -> ScoreJob {
    let which = if fuzz.is_some() {
        Builtin::Fuzzing
    } else {
        Builtin::Detection
    };
    ScoreJob {
        method: if fuzz.is_some() {
            Method::Fuzzing
        } else {
            Method::Detection
        },
        scorer: Scorer::Judge {
            client: client(url),
            prompt: ScorePrompt::builtin(which),
            samples: SampleOptions {
                max_side: 224,
                ..SampleOptions::default()
            },
            fuzz,
        },
        refiner: None,
        explainer_model: None,
        root: shapes_root(),
    }
}

#[tokio::test]
async fn detection_and_fuzzing_score_a_right_judge_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store = sample_store(tmp.path(), 16, "red");
    let server = right_judge().await;
    let e = explanation(1);
    for fuzz in [
        None,
        Some((FuzzType::Default, 0.3)),
        Some((FuzzType::Active, 0.3)),
    ] {
        let s = score_feature(&job(&server.url, fuzz), &store, &e)
            .await
            .unwrap();
        assert_eq!(s.value, Some(1.0), "{fuzz:?}: {}", s.details);
        let m = &s.details["metrics"];
        assert!(
            m["tp"].as_u64().unwrap() >= 3 && m["tn"].as_u64().unwrap() >= 3,
            "{m}"
        );
        assert_eq!(
            (s.failures, s.details["negatives_exact"].clone()),
            (0, Value::Bool(true))
        );
    }
    assert_eq!(store.scores_of(1).unwrap().len(), 3);
}

#[tokio::test]
async fn a_yes_to_everything_judge_scores_chance_and_runs_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let store = sample_store(tmp.path(), 16, "red");
    store.put_explanation(&explanation(1)).unwrap();
    let server = MockServer::start(|s| {
        let n = red_and_lit(&s.json()).len();
        Reply::ok(&format!("[{}]", vec!["1"; n].join(",")))
    })
    .await;
    let j = job(&server.url, None);
    let opts = RunOptions {
        features: FeatureFilter::All,
        force: false,
        progress_bar: false,
    };
    let sum = run_scores(&j, &store, &opts).await.unwrap();
    assert_eq!(
        (sum.selected, sum.unexplained, sum.scored),
        (1, 1, 1),
        "{sum:?}"
    );
    assert_eq!(sum.mean, Some(0.5));
    let requests = server.seen().len();
    let again = run_scores(&j, &store, &opts).await.unwrap();
    assert_eq!((again.scored, again.already_scored), (0, 1));
    assert_eq!(server.seen().len(), requests, "nothing sent on resume");
    // A new explanation of the feature is scored again.
    store
        .put_explanation(&Explanation {
            created_unix: 2,
            ..explanation(1)
        })
        .unwrap();
    assert_eq!(run_scores(&j, &store, &opts).await.unwrap().scored, 1);
}
