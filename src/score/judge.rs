//! The judge shared by detection and fuzzing (delphi's scorers, ported to images): samples are
//! shuffled with a fixed seed, sent `per_prompt` at a time, and the first `[...]` list of each
//! answer is read; a list of the wrong length or with a non-number marks the whole batch as
//! failed (counted, never fatal), as delphi does.

use serde::Serialize;
use serde_json::Value;

use super::prompt::ScorePrompt;
use crate::llm::ChatClient;
use crate::util::rng::SeededRng;

/// One item shown to the judge.
#[derive(Debug, Clone)]
pub struct Sample {
    /// PNG bytes.
    pub png: Vec<u8>,
    /// Whether the item truly fits (an activating image, or a true highlight).
    pub positive: bool,
    /// Dataset index of the image.
    pub image: u32,
}

/// What the judge said about one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Judged {
    /// Dataset index of the image.
    pub image: u32,
    /// The truth.
    pub positive: bool,
    /// The judge's number in `[0, 1]`, or `None` when its batch failed.
    pub prediction: Option<f64>,
}

/// The numbers in the first `[...]` span of `content`, when there are exactly
/// `n` and each is in `[0, 1]` (JSON numbers or booleans).
pub fn parse_list(content: &str, n: usize) -> Option<Vec<f64>> {
    let start = content.find('[')?;
    let end = start + content[start..].find(']')?;
    let items: Vec<Value> = serde_json::from_str(&content[start..=end]).ok()?;
    if items.len() != n {
        return None;
    }
    items
        .iter()
        .map(|v| match v {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Number(x) => x.as_f64().filter(|x| (0.0..=1.0).contains(x)),
            _ => None,
        })
        .collect()
}

/// Ask the judge about `samples` (shuffled with `seed`), `per_prompt` per request; `tag` names
/// the feature in request headers. Also returns the number of failed requests or answers.
pub async fn judge(
    client: &ChatClient,
    prompt: &ScorePrompt,
    explanation: &str,
    mut samples: Vec<Sample>,
    per_prompt: usize,
    seed: u64,
    tag: &str,
) -> (Vec<Judged>, usize) {
    SeededRng::for_name(seed, tag).shuffle(&mut samples);
    let mut out = Vec::with_capacity(samples.len());
    let mut failed = 0;
    for batch in samples.chunks(per_prompt.max(1)) {
        let pngs: Vec<Vec<u8>> = batch.iter().map(|s| s.png.clone()).collect();
        let messages = prompt.messages(explanation, &pngs, &client.config().image_extra);
        let preds = match client.complete(messages, Some(tag)).await {
            Ok(reply) => parse_list(&reply.content, batch.len()),
            Err(_) => None,
        };
        failed += usize::from(preds.is_none());
        for (k, s) in batch.iter().enumerate() {
            out.push(Judged {
                image: s.image,
                positive: s.positive,
                prediction: preds.as_ref().map(|p| p[k]),
            });
        }
    }
    (out, failed)
}

/// Aggregates over the answered samples (delphi's `result_analysis`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// Samples with an answer.
    pub answered: usize,
    /// Samples without one (their batch failed).
    pub unanswered: usize,
    /// True positives (prediction ≥ 0.5 on a positive).
    pub tp: usize,
    /// True negatives.
    pub tn: usize,
    /// False positives.
    pub fp: usize,
    /// False negatives.
    pub fn_: usize,
    /// Mean of the per-class recalls present ((TP/P + TN/N) / 2 when both are).
    pub balanced_accuracy: Option<f64>,
    /// Plain accuracy.
    pub accuracy: Option<f64>,
    /// F1 of the positive class.
    pub f1: Option<f64>,
    /// Area under the ROC curve of the predictions; only when some answer is graded (not 0/1),
    /// since on hard 0/1 answers it just repeats the balanced accuracy.
    pub auroc: Option<f64>,
}

/// Area under the ROC curve of `(score, positive)` pairs (ties count half); `None` without both
/// classes.
pub fn auroc(pairs: &[(f64, bool)]) -> Option<f64> {
    let pos: Vec<f64> = pairs.iter().filter(|p| p.1).map(|p| p.0).collect();
    let neg: Vec<f64> = pairs.iter().filter(|p| !p.1).map(|p| p.0).collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for &p in &pos {
        for &n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (pos.len() * neg.len()) as f64)
}

/// Count and score the judged samples.
pub fn metrics(judged: &[Judged]) -> Metrics {
    let answered: Vec<(f64, bool)> = judged
        .iter()
        .filter_map(|j| j.prediction.map(|p| (p, j.positive)))
        .collect();
    let mut m = Metrics {
        answered: answered.len(),
        unanswered: judged.len() - answered.len(),
        tp: 0,
        tn: 0,
        fp: 0,
        fn_: 0,
        balanced_accuracy: None,
        accuracy: None,
        f1: None,
        auroc: None,
    };
    for &(p, truth) in &answered {
        match (p >= 0.5, truth) {
            (true, true) => m.tp += 1,
            (false, false) => m.tn += 1,
            (true, false) => m.fp += 1,
            (false, true) => m.fn_ += 1,
        }
    }
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    let recalls: Vec<f64> = [ratio(m.tp, m.tp + m.fn_), ratio(m.tn, m.tn + m.fp)]
        .into_iter()
        .flatten()
        .collect();
    if !recalls.is_empty() {
        m.balanced_accuracy = Some(recalls.iter().sum::<f64>() / recalls.len() as f64);
    }
    m.accuracy = ratio(m.tp + m.tn, answered.len());
    m.f1 = ratio(2 * m.tp, 2 * m.tp + m.fp + m.fn_);
    if answered.iter().any(|&(p, _)| p != 0.0 && p != 1.0) {
        m.auroc = auroc(&answered);
    }
    m
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::llm::ClientConfig;
    use crate::score::prompt::Builtin;
    use base64::Engine;
    use glint_mock_llm::{MockServer, Reply};
    use image::RgbImage;

    /// A solid PNG: red for positives, blue for negatives, so a script can tell them apart.
    pub(crate) fn solid(positive: bool, salt: u8) -> Vec<u8> {
        let c = if positive {
            [200, salt, 10]
        } else {
            [10, salt, 200]
        };
        crate::heatmap::overlay::encode_png(&RgbImage::from_pixel(4, 4, image::Rgb(c))).unwrap()
    }

    /// Whether each image of a request is mostly red (the "correct" answers).
    pub(crate) fn truths(body: &serde_json::Value) -> Vec<bool> {
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
                let p = img.get_pixel(img.width() / 2, img.height() / 2).0;
                p[0] > p[2]
            })
            .collect()
    }

    pub(crate) fn client(url: &str) -> ChatClient {
        ChatClient::new(ClientConfig {
            base_url: url.to_string(),
            model: "judge".into(),
            api_key_env: "GLINT_TEST_NO_KEY".into(),
            retries: 0,
            ..ClientConfig::default()
        })
        .unwrap()
    }

    fn samples(n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                png: solid(i % 2 == 0, i as u8),
                positive: i % 2 == 0,
                image: i as u32,
            })
            .collect()
    }

    #[test]
    fn lists_parse_strictly() {
        assert_eq!(
            parse_list("Sure: [1, 0, 1] and [0]", 3),
            Some(vec![1.0, 0.0, 1.0])
        );
        assert_eq!(parse_list("[true, 0.25]", 2), Some(vec![1.0, 0.25]));
        assert_eq!(parse_list("[1, 0]", 3), None);
        assert_eq!(parse_list("[1, 2]", 2), None);
        assert_eq!(parse_list("[1, \"yes\"]", 2), None);
        assert_eq!(parse_list("no list", 1), None);
    }

    #[test]
    fn metrics_and_auroc_by_hand() {
        let j = |p: Option<f64>, t: bool| Judged {
            image: 0,
            positive: t,
            prediction: p,
        };
        let m = metrics(&[
            j(Some(1.0), true),
            j(Some(0.0), true),
            j(Some(0.0), false),
            j(None, false),
        ]);
        assert_eq!((m.tp, m.fn_, m.tn, m.fp, m.unanswered), (1, 1, 1, 0, 1));
        assert_eq!(m.balanced_accuracy, Some(0.75));
        assert_eq!(m.auroc, None, "hard answers only");
        let m = metrics(&[j(Some(0.9), true), j(Some(0.4), true), j(Some(0.6), false)]);
        assert_eq!(m.auroc, Some(0.5));
        assert_eq!(auroc(&[(0.5, true), (0.5, false)]), Some(0.5));
        assert_eq!(auroc(&[(0.5, true)]), None);
    }

    #[tokio::test]
    async fn correct_random_and_malformed_judges() {
        let prompt = ScorePrompt::builtin(Builtin::Detection);
        // Correct: answers from the images' colours.
        let server = MockServer::start(|s| {
            let t: Vec<String> = truths(&s.json())
                .iter()
                .map(|&b| u8::from(b).to_string())
                .collect();
            Reply::ok(&format!("[{}]", t.join(", ")))
        })
        .await;
        let (j, failed) = judge(&client(&server.url), &prompt, "red", samples(10), 5, 1, "7").await;
        let m = metrics(&j);
        assert_eq!((failed, m.balanced_accuracy), (0, Some(1.0)));
        assert_eq!(server.seen().len(), 2);
        // Random: a seeded coin per image, over many samples → near chance.
        let server = MockServer::start(|s| {
            let n = truths(&s.json()).len();
            let mut rng = SeededRng::new(9 + s.nth as u64);
            let t: Vec<String> = (0..n).map(|_| rng.below(2).to_string()).collect();
            Reply::ok(&format!("[{}]", t.join(",")))
        })
        .await;
        let (j, _) = judge(
            &client(&server.url),
            &prompt,
            "red",
            samples(200),
            5,
            1,
            "7",
        )
        .await;
        let acc = metrics(&j).balanced_accuracy.unwrap();
        assert!((acc - 0.5).abs() < 0.12, "{acc}");
        // Malformed: a short list, prose, then an HTTP error; counted, not fatal.
        let server = MockServer::start(|s| match s.nth {
            0 => Reply::ok("[1, 0]"),
            1 => Reply::ok("They all look red to me."),
            _ => Reply::status(500, "boom"),
        })
        .await;
        let (j, failed) = judge(&client(&server.url), &prompt, "red", samples(9), 3, 1, "8").await;
        let m = metrics(&j);
        assert_eq!((failed, m.answered, m.unanswered), (3, 0, 9));
        assert_eq!(m.balanced_accuracy, None);
    }
}
