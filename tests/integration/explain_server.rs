//! The explainer against an in-process OpenAI-compatible server on 127.0.0.1: normal answers,
//! 429 with Retry-After, 500s, timeouts, malformed JSON, answers without `[EXPLANATION]:`, the
//! failure budget, a killed batch resumed, and the original's JSON round trip through the CLI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use glint::explain::prompt::PromptTemplate;
use glint::explain::select::EvidenceOptions;
use glint::explain::{BatchOptions, Explainer, ExplainerConfig, explain_feature, run_batch};
use glint::llm::{ClientConfig, FailureKind};
use glint::model::anyres::{ImageLayout, TokenKind};
use glint::store::{
    Aggregator, FeatureFilter, GLINT_VERSION, ImageRecord, Manifest, RankRule, SCHEMA_VERSION,
    Store,
};
use glint_mock_llm::{MockServer, Reply, Seen};

const PINS: [(u32, u32); 3] = [(56, 112), (112, 56), (112, 112)];
const SIZES: [(u32, u32); 6] = [(80, 30), (40, 60), (56, 56), (100, 50), (30, 30), (64, 40)];
/// Features 0..8 fire; 8..16 never do.
const FIRING: u32 = 8;

/// A 6-image store whose images are real PNGs with a 56 px view of 4x4 patches.
struct Fixture {
    _tmp: tempfile::TempDir,
    store: PathBuf,
    db: Option<Store>,
}

impl Fixture {
    /// The open store (reopening right after closing races sled's flusher for the file lock).
    fn open(&self) -> Store {
        self.db.clone().expect("store still open")
    }

    /// Close the store so a child process can open it.
    fn close(&mut self) {
        self.db = None;
        wait_unlocked(&self.store);
    }
}

/// Wait until no handle holds the store's lock: sled's background flusher keeps the database
/// file locked for a moment after the last handle is dropped.
fn wait_unlocked(store: &Path) {
    let file = std::fs::File::open(store.join("db")).unwrap();
    for _ in 0..500 {
        if file.try_lock().is_ok() {
            file.unlock().unwrap();
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("store {} stayed locked", store.display());
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    std::fs::create_dir_all(ds.join("images")).unwrap();
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        glint_version: GLINT_VERSION.into(),
        model_id: "test".into(),
        model_fingerprint: "0".into(),
        sae_id: "test".into(),
        sae_fingerprint: "0".into(),
        hookpoint: "model.layers.24".into(),
        layer: 24,
        num_latents: 16,
        k: 2,
        dataset: ds.display().to_string(),
        dataset_fingerprint: "0".into(),
        preprocessing: serde_json::Value::Null,
        rank: RankRule::Max,
        top_n: 5,
        shard: None,
        features: FeatureFilter::All,
        tokens: Default::default(),
        range_sample: 0,
    };
    let dir = tmp.path().join("store");
    let store = Store::create(&dir, &manifest).unwrap();
    let mut agg = Aggregator::new(16, 5, RankRule::Max, FeatureFilter::All).unwrap();
    for (i, &(w, h)) in SIZES.iter().enumerate() {
        let i = i as u32;
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 5) as u8, 40 * i as u8])
        });
        let rel = format!("images/img{i}.png");
        img.save(ds.join(&rel)).unwrap();
        let layout = ImageLayout::new((h, w), &PINS, 56, 14).unwrap();
        let scored = layout
            .tokens()
            .iter()
            .filter(|t| t.kind != TokenKind::Newline)
            .count();
        let mut acts = Vec::new();
        for f in 0..FIRING {
            if !(f + i).is_multiple_of(3) {
                let v = 1.0 + i as f32 * 0.5 + f as f32 * 0.125;
                acts.push((((f + i) % 16) as u16, f, v));
                acts.push((((3 * f) % 16) as u16, f, v / 2.0));
            }
        }
        acts.sort_by_key(|a| (a.0, a.1));
        acts.dedup_by_key(|a| (a.0, a.1));
        let record = ImageRecord {
            index: i,
            id: format!("img{i}"),
            path: rel,
            width: w,
            height: h,
            layout: Some(layout.clone()),
            n_tokens: layout.num_image_tokens() as u32,
            top_features: Vec::new(),
        };
        agg.add_image(record, &acts, layout.base_tokens(), scored)
            .unwrap();
    }
    agg.finish(&store).unwrap();
    Fixture {
        _tmp: tmp,
        store: dir,
        db: Some(store),
    }
}

fn client(url: &str) -> ClientConfig {
    ClientConfig {
        base_url: url.to_string(),
        model: "llava-test".into(),
        api_key_env: "GLINT_TEST_NO_SUCH_KEY".into(),
        timeout: Duration::from_millis(300),
        retries: 2,
        backoff: Duration::from_millis(20),
        max_tokens: Some(100),
        ..ClientConfig::default()
    }
}

fn explainer(store: &Store, cfg: ClientConfig) -> Explainer {
    let config = ExplainerConfig {
        client: cfg,
        evidence: EvidenceOptions::default(),
        prompt: PromptTemplate::builtin(),
        dataset: None,
    };
    Explainer::new(store, config).unwrap()
}

fn batch(features: FeatureFilter) -> BatchOptions {
    BatchOptions {
        features,
        concurrency: 3,
        max_failures: 0,
        redo: false,
        retry_unparsed: false,
        progress_bar: false,
        handle_ctrl_c: false,
    }
}

/// Check one request body: model, temperature, the text part, then PNG data URLs of 56x56 images.
fn check_request(seen: &Seen, n_images: usize) {
    let body = seen.json();
    assert_eq!(body["model"], "llava-test");
    assert_eq!(body["temperature"].as_f64(), Some(0.0));
    assert_eq!(body["max_tokens"], 100);
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    let parts = msgs[1]["content"].as_array().unwrap();
    assert_eq!(parts[0]["type"], "text");
    assert!(
        parts[0]["text"]
            .as_str()
            .unwrap()
            .contains("[EXPLANATION]:")
    );
    assert_eq!(parts.len(), 1 + n_images, "feature {:?}", seen.tag);
    for p in &parts[1..] {
        assert_eq!(p["type"], "image_url");
        let url = p["image_url"]["url"].as_str().unwrap();
        let b64 = url
            .strip_prefix("data:image/png;base64,")
            .expect("a PNG data URL");
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
        assert_eq!(
            (img.width(), img.height()),
            (56, 56),
            "the original's one-view square"
        );
    }
}

#[tokio::test]
async fn normal_answers_are_stored_with_their_provenance() {
    let fx = fixture();
    let store = fx.open();
    let server = MockServer::start(|s| {
        Reply::ok(&format!(
            "Looking…\n[EXPLANATION]: pattern {}",
            s.tag.as_deref().unwrap_or("?")
        ))
    })
    .await;
    let ex = explainer(&store, client(&server.url));
    let sum = run_batch(&ex, &store, &batch(FeatureFilter::All))
        .await
        .unwrap();
    assert_eq!(
        (sum.selected, sum.done, sum.never_fired, sum.requests),
        (8, 8, 8, 8)
    );
    assert!(sum.failed.is_empty() && sum.unparsed.is_empty() && sum.stopped.is_none());
    assert_eq!(
        (
            sum.usage.prompt_tokens,
            sum.usage.completion_tokens,
            sum.usage_reported
        ),
        (800, 80, 8)
    );
    for seen in server.seen() {
        let f: u32 = seen.tag.as_deref().unwrap().parse().unwrap();
        check_request(&seen, store.top_examples(f).unwrap().len().min(5));
    }
    let e = store
        .explanation(4, "llava-test", ex.prompt_hash())
        .unwrap()
        .unwrap();
    assert_eq!(e.text, "pattern 4");
    assert!(e.parsed && e.label.is_none());
    assert_eq!(e.base_url_host, server.url.trim_start_matches("http://"));
    let top: Vec<u32> = store
        .top_examples(4)
        .unwrap()
        .iter()
        .map(|x| x.image)
        .take(5)
        .collect();
    assert_eq!(
        e.example_images, top,
        "images in the order sent, strongest first"
    );
    assert!(e.raw_response.contains("\"chat.completion\"") && e.usage.unwrap().total_tokens == 110);
    // A rerun sends nothing: every feature is already explained with this model and prompt.
    let again = run_batch(&ex, &store, &batch(FeatureFilter::All))
        .await
        .unwrap();
    assert_eq!(
        (again.done, again.already_explained, again.requests),
        (0, 8, 0)
    );
    assert_eq!(server.seen().len(), 8);
    // The single-feature API (as the TUI calls it) asks again and replaces the record.
    let e2 = explain_feature(&ex, &store, 4).await.unwrap();
    assert_eq!(
        store
            .explanation(4, "llava-test", ex.prompt_hash())
            .unwrap()
            .unwrap(),
        e2
    );
    let err = explain_feature(&ex, &store, 12).await.unwrap_err();
    assert!(
        err.to_string().contains("feature 12") && err.to_string().contains("never fired"),
        "{err}"
    );
    assert_eq!(
        server.count("12"),
        0,
        "nothing is sent for a feature without examples"
    );
    // Another prompt recipe is a different explanation: the first stays.
    let heat = ExplainerConfig {
        client: client(&server.url),
        evidence: EvidenceOptions {
            style: "heat".parse().unwrap(),
            ..EvidenceOptions::default()
        },
        prompt: PromptTemplate::builtin(),
        dataset: None,
    };
    let heat = Explainer::new(&store, heat).unwrap();
    assert_ne!(heat.prompt_hash(), ex.prompt_hash());
    explain_feature(&heat, &store, 4).await.unwrap();
    assert_eq!(store.explanations_of(4).unwrap().len(), 2);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_stored() {
    let fx = fixture();
    let store = fx.open();
    let server = MockServer::start(|s| match (s.tag.as_deref(), s.nth) {
        (Some("1"), 0) => {
            Reply::status(429, r#"{"error":"rate limited"}"#).header("Retry-After", "1")
        }
        (Some("2"), 0) => Reply::status(500, "internal error"),
        (Some("2"), 1) => Reply::status(502, "bad gateway"),
        _ => Reply::ok("[EXPLANATION]: fine"),
    })
    .await;
    let ex = explainer(&store, client(&server.url));
    let t = Instant::now();
    let sum = run_batch(&ex, &store, &batch(FeatureFilter::list(vec![1, 2])))
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 honoured ({:?})",
        t.elapsed()
    );
    assert_eq!((sum.done, sum.requests), (2, 5));
    assert!(sum.failed.is_empty());
    assert_eq!((server.count("1"), server.count("2")), (2, 3));
    for f in [1, 2] {
        assert_eq!(
            store
                .explanation(f, "llava-test", ex.prompt_hash())
                .unwrap()
                .unwrap()
                .text,
            "fine"
        );
    }
}

#[tokio::test]
async fn timeouts_malformed_and_unparsed_answers_are_reported_by_feature() {
    let fx = fixture();
    let store = fx.open();
    let server = MockServer::start(|s| match s.tag.as_deref() {
        Some("0") => Reply::Hang(Duration::from_secs(5)),
        Some("1") => Reply::status(200, r#"{"choices": [{"message": "#),
        Some("2") => Reply::ok("These all look like stripes to me."),
        _ => Reply::ok("[EXPLANATION]: ok"),
    })
    .await;
    let ex = explainer(&store, client(&server.url));
    let sum = run_batch(&ex, &store, &batch(FeatureFilter::Range(0, 4)))
        .await
        .unwrap();
    assert_eq!((sum.done, sum.unparsed.clone()), (2, vec![2]));
    let failed: Vec<(u32, Option<FailureKind>, u32)> = sum
        .failed
        .iter()
        .map(|e| (e.feature, e.kind, e.attempts))
        .collect();
    assert_eq!(
        failed,
        vec![
            (0, Some(FailureKind::Timeout), 3),
            (1, Some(FailureKind::Malformed), 1)
        ]
    );
    assert!(
        sum.failed[0].reason.contains("no answer within 0.3 s"),
        "{}",
        sum.failed[0].reason
    );
    assert!(
        sum.failed[1].reason.contains("not a chat completion"),
        "{}",
        sum.failed[1].reason
    );
    let json = serde_json::to_value(&sum).unwrap();
    assert_eq!(json["failed"][0]["feature"], 0);
    assert_eq!(json["failed"][1]["kind"], "malformed");
    assert_eq!(
        server.count("1"),
        1,
        "a 200 answer is paid for: never re-sent"
    );
    let unparsed = store
        .explanation(2, "llava-test", ex.prompt_hash())
        .unwrap()
        .unwrap();
    assert!(!unparsed.parsed);
    assert_eq!(
        unparsed.text,
        "Response These all look like stripes to me.. Explanation could not be parsed."
    );
    assert!(
        unparsed.raw_response.contains("stripes"),
        "the raw answer is kept"
    );
    assert!(
        store
            .explanation(0, "llava-test", ex.prompt_hash())
            .unwrap()
            .is_none()
    );

    // A healthy server: the rerun asks only for the timed-out feature (the malformed answer
    // was paid for: it is reported from the journal, not asked for again), and
    // --retry-unparsed adds 2.
    let healthy = MockServer::start(|_| Reply::ok("[EXPLANATION]: better")).await;
    let ex = explainer(&store, client(&healthy.url));
    let sum = run_batch(&ex, &store, &batch(FeatureFilter::Range(0, 4)))
        .await
        .unwrap();
    assert_eq!((sum.done, sum.already_explained), (1, 2));
    assert_eq!(sum.failed.len(), 1);
    assert!(
        sum.failed[0].feature == 1 && sum.failed[0].reason.contains("--retry-paid"),
        "{}",
        sum.failed[0].reason
    );
    let tags: Vec<String> = healthy
        .seen()
        .iter()
        .filter_map(|s| s.tag.clone())
        .collect();
    assert_eq!(tags, ["0"]);
    let opts = BatchOptions {
        retry_unparsed: true,
        ..batch(FeatureFilter::Range(0, 4))
    };
    let sum = run_batch(&ex, &store, &opts).await.unwrap();
    assert_eq!((sum.done, sum.already_explained), (1, 2));
    assert!(
        store
            .explanation(2, "llava-test", ex.prompt_hash())
            .unwrap()
            .unwrap()
            .parsed
    );
}

#[tokio::test]
async fn the_failure_budget_and_fatal_errors_stop_the_run() {
    let fx = fixture();
    let store = fx.open();
    let down = MockServer::start(|_| Reply::status(503, "overloaded")).await;
    let ex = explainer(
        &store,
        ClientConfig {
            retries: 0,
            ..client(&down.url)
        },
    );
    let opts = BatchOptions {
        concurrency: 1,
        max_failures: 2,
        ..batch(FeatureFilter::All)
    };
    let sum = run_batch(&ex, &store, &opts).await.unwrap();
    assert_eq!((sum.failed.len(), sum.not_started, sum.done), (2, 6, 0));
    assert!(
        sum.stopped.as_deref().unwrap().contains("--max-failures 2"),
        "{:?}",
        sum.stopped
    );
    assert_eq!(down.seen().len(), 2);

    let locked = MockServer::start(|_| Reply::status(401, r#"{"error":"invalid api key"}"#)).await;
    let ex = explainer(&store, client(&locked.url));
    let sum = run_batch(
        &ex,
        &store,
        &BatchOptions {
            concurrency: 1,
            ..batch(FeatureFilter::All)
        },
    )
    .await
    .unwrap();
    assert_eq!((sum.failed.len(), sum.not_started), (1, 7));
    let why = sum.stopped.unwrap();
    assert!(
        why.contains("401") && why.contains("$GLINT_TEST_NO_SUCH_KEY"),
        "{why}"
    );
}

fn glint(store: &Path, url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glint"));
    cmd.args([
        "--batch",
        "explain",
        "--explainer-model",
        "llava-test",
        "--timeout",
        "5",
        "--store",
    ])
    .arg(store)
    .args(["--base-url", url])
    .env_remove("GLINT_EXPLAIN_URL")
    .env_remove("OPENAI_API_KEY");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_batch_resumes_without_losing_or_repeating_answers() {
    let mut fx = fixture();
    fx.close();
    let server = MockServer::start(|s| {
        Reply::ok(&format!(
            "[EXPLANATION]: f{}",
            s.tag.as_deref().unwrap_or("?")
        ))
        .after(Duration::from_millis(150))
    })
    .await;
    let mut child = glint(&fx.store, &server.url)
        .args(["--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let seen_lines = tokio::task::spawn_blocking(move || {
        let mut n = 0;
        for line in BufReader::new(stderr).lines() {
            if line.unwrap().contains("features · feature") {
                n += 1;
                if n == 3 {
                    break;
                }
            }
        }
        n
    })
    .await
    .unwrap();
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert_eq!(seen_lines, 3);

    let before: Vec<_> = Store::open(&fx.store).unwrap().all_explanations().unwrap();
    wait_unlocked(&fx.store);
    assert!(
        before.len() >= 3 && before.len() < 8,
        "killed after {} explanations",
        before.len()
    );
    let out = glint(&fx.store, &server.url)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        sum["already_explained"].as_u64().unwrap() as usize,
        before.len()
    );
    assert_eq!(sum["done"].as_u64().unwrap() as usize, 8 - before.len());

    let store = Store::open(&fx.store).unwrap();
    let after = store.all_explanations().unwrap();
    assert_eq!(after.len(), 8);
    for e in &before {
        assert!(
            after.contains(e),
            "feature {} was kept as first stored",
            e.feature
        );
        assert_eq!(
            server.count(&e.feature.to_string()),
            1,
            "feature {} asked twice",
            e.feature
        );
    }
    // Only a request in flight at the kill may have been sent twice.
    let repeated = (0..8).filter(|f| server.count(&f.to_string()) > 1).count();
    assert!(repeated <= 1, "{repeated} features re-requested");
}

// Multi-threaded: the CLI runs as a blocking child process while this runtime serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_json_round_trips_through_the_cli() {
    let mut fx = fixture();
    fx.close();
    let server = MockServer::start(|s| {
        Reply::ok(&format!(
            "[EXPLANATION]: ünïcode {}",
            s.tag.as_deref().unwrap_or("")
        ))
    })
    .await;
    let out = glint(&fx.store, &server.url)
        .args(["--features", "0..3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("explained 3 features with llava-test"),
        "{text}"
    );
    let dir = fx.store.parent().unwrap().join("seed");
    std::fs::create_dir_all(&dir).unwrap();
    let out = glint(&fx.store, &server.url)
        .arg("--export-seed")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.join("model_layers_24.json");
    let list: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[1]["model.layers.24_feature1"], "ünïcode 1");
    std::fs::write(&file, r#"[{"model.layers.24_feature5": "published text"}]"#).unwrap();
    let out = glint(&fx.store, &server.url)
        .arg("--import-seed")
        .arg(&file)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(&fx.store).unwrap();
    let e = store.latest_explanation(5, None).unwrap().unwrap();
    assert_eq!(
        (e.text.as_str(), e.explainer_model.as_str()),
        ("published text", "llava-test")
    );
    assert_eq!(server.seen().len(), 3, "export and import send nothing");
    // The global --model names the LLaVA model; it is refused rather than sent to the server.
    let out = glint(&fx.store, &server.url)
        .env_remove("GLINT_MODEL")
        .args(["--model", "llava-test", "--redo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--explainer-model"));
    assert_eq!(server.seen().len(), 3);
}

// A manifest named by a bare file name resolves from the working folder (its `parent()` is the
// empty path, which once made the dataset "not found here").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_manifest_name_in_the_working_folder_is_the_dataset() {
    let mut fx = fixture();
    fx.close();
    let ds = fx.store.parent().unwrap().join("ds");
    std::fs::write(ds.join("ds.jsonl"), "{\"path\": \"images/img0.png\"}\n").unwrap();
    let preview = fx.store.parent().unwrap().join("preview");
    let out = glint(&fx.store, "http://127.0.0.1:9")
        .current_dir(&ds)
        .args(["--features", "0..1", "--dataset", "ds.jsonl", "--preview"])
        .arg(&preview)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(preview.join("feature0/request.json").is_file());
}

// Paid answers are journalled before they are parsed: a malformed or cut answer is reported
// again from the journal rather than paid for again, an answer that arrived but was never
// stored (a kill in between) is replayed, and --retry-paid asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_answers_are_journalled_and_never_asked_for_twice_unasked() {
    let fx = fixture();
    let server = MockServer::start(|s| match s.tag.as_deref() {
        Some("1") => Reply::status(200, "{\"choices\": [ oops"),
        Some("2") => Reply::Cut("{\"choices\": [{\"message\": {\"content\": \"[EXPL".into()),
        tag => Reply::ok(&format!("[EXPLANATION]: f{}", tag.unwrap_or("?"))),
    })
    .await;
    let store = fx.open();
    let first = run_batch(
        &explainer(&store, client(&server.url)),
        &store,
        &batch(FeatureFilter::Range(0, 3)),
    )
    .await
    .unwrap();
    assert_eq!(first.done, 1);
    let kinds: Vec<_> = first.failed.iter().map(|e| (e.feature, e.kind)).collect();
    assert_eq!(
        kinds,
        [
            (1, Some(FailureKind::Malformed)),
            (2, Some(FailureKind::Cut))
        ]
    );
    assert_eq!((server.count("1"), server.count("2")), (1, 1));
    assert_eq!(first.maybe_billed, 2, "the malformed and the cut answer");

    // A rerun reports both from the journal and sends nothing.
    let again = run_batch(
        &explainer(&store, client(&server.url)),
        &store,
        &batch(FeatureFilter::Range(0, 3)),
    )
    .await
    .unwrap();
    assert_eq!((again.failed.len(), again.requests), (2, 0));
    assert!(
        again.failed[0].reason.contains("--retry-paid"),
        "{}",
        again.failed[0].reason
    );

    // Feature 3's answer arrived and was journalled, then the run was killed before storing.
    let ex = explainer(&store, client(&server.url));
    let body = ex.request_body(&ex.evidence_now(&store, 3).unwrap());
    let request = glint::llm::journal::request_fingerprint(&body, Some("3"));
    let journal = glint::llm::journal::Journal::open(store.dir()).unwrap();
    let answer = glint::llm::journal::JournalAnswer {
        status: 200,
        complete: true,
        body: glint_mock_llm::completion("[EXPLANATION]: journalled"),
    };
    journal.answer(&request, Some("3"), &answer).unwrap();
    let ex = explainer(&store, client(&server.url));
    let resumed = run_batch(&ex, &store, &batch(FeatureFilter::Range(3, 4)))
        .await
        .unwrap();
    assert_eq!(
        (resumed.done, resumed.replayed, resumed.requests),
        (1, 1, 0)
    );
    assert_eq!(server.count("3"), 0);
    let e = store.latest_explanation(3, None).unwrap().unwrap();
    assert_eq!(e.text, "journalled");

    // The user asks to pay again.
    let paid = ClientConfig {
        retry_paid: true,
        ..client(&server.url)
    };
    let retried = run_batch(
        &explainer(&store, paid),
        &store,
        &batch(FeatureFilter::Range(1, 3)),
    )
    .await
    .unwrap();
    // A malformed answer is asked for once more; a cut one is retried like a timeout.
    assert_eq!(retried.requests, 4);
    assert_eq!((server.count("1"), server.count("2")), (2, 4));
}
