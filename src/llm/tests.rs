//! Unit tests of the chat client against the in-process mock server.

use std::time::{Instant, UNIX_EPOCH};

use super::*;
use glint_mock_llm::{MockServer, Reply};

fn cfg(url: &str) -> ClientConfig {
    ClientConfig {
        base_url: url.to_string(),
        model: "test-model".into(),
        // Always set, so the Authorization header can be checked without touching the environment.
        api_key_env: "PATH".into(),
        headers: vec![("X-Team".into(), "vision".into())],
        temperature: 0.0,
        max_tokens: Some(64),
        timeout: Duration::from_millis(300),
        retries: 2,
        backoff: Duration::from_millis(20),
        max_wait: Duration::from_secs(5),
        image_extra: serde_json::Map::new(),
        max_answer_bytes: 1 << 20,
        retry_paid: false,
        notices: Notices::default(),
    }
}

fn msgs() -> Value {
    json!([{"role": "user", "content": "hi"}])
}

#[test]
fn endpoints_headers_and_retry_after() {
    assert_eq!(endpoint("http://h:1"), "http://h:1/v1/chat/completions");
    assert_eq!(endpoint("http://h:1/v1/"), "http://h:1/v1/chat/completions");
    assert_eq!(
        endpoint("https://gw/x/v1/chat/completions"),
        "https://gw/x/v1/chat/completions"
    );
    assert_eq!(
        parse_header("X-A:  b c ").unwrap(),
        ("X-A".into(), "b c".into())
    );
    assert!(parse_header("novalue").is_err());
    assert!(parse_header("bad name: v").is_err());
    let now = UNIX_EPOCH + Duration::from_secs(784_111_770); // Sun, 06 Nov 1994 08:49:30 GMT
    assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
    assert_eq!(retry_after("0.25", now), Some(Duration::from_millis(250)));
    assert_eq!(
        retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
        Some(Duration::from_secs(7))
    );
    assert_eq!(
        retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after("-1", now), None);
    assert_eq!(retry_after("soon", now), None);
    let c = ChatClient::new(ClientConfig {
        base_url: "http://user:pw@example.org:8080/v1".into(),
        ..cfg("")
    });
    assert_eq!(c.unwrap().host(), "example.org:8080");
    assert!(ChatClient::new(cfg("ftp://x")).is_err());
    assert!(
        ChatClient::new(cfg("not a url"))
            .unwrap_err()
            .to_string()
            .contains("--base-url")
    );
}

#[test]
fn completions_parse_with_usage_parts_and_nulls() {
    let (c, u, f) = parse_completion(&glint_mock_llm::completion("hey")).unwrap();
    assert_eq!((c.as_str(), f.as_deref()), ("hey", Some("stop")));
    assert_eq!(u.unwrap().total_tokens, 110);
    let parts = r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
    let (c, u, _) = parse_completion(parts).unwrap();
    assert_eq!((c.as_str(), u.unwrap().total_tokens), ("ab", 7));
    let (c, u, _) = parse_completion(r#"{"choices":[{"message":{"content":null}}]}"#).unwrap();
    assert_eq!((c.as_str(), u), ("", None));
    assert!(parse_completion("{\"choices\": [").is_err());
    assert!(
        parse_completion(r#"{"error":"x"}"#)
            .unwrap_err()
            .to_string()
            .contains("choices")
    );
}

#[tokio::test]
async fn a_normal_answer_carries_model_settings_and_headers() {
    let server = MockServer::start(|_| Reply::ok("[EXPLANATION]: stripes")).await;
    let client = ChatClient::new(cfg(&server.url)).unwrap();
    let reply = client.complete(msgs(), Some("12")).await.unwrap();
    assert_eq!(
        (reply.content.as_str(), reply.attempts),
        ("[EXPLANATION]: stripes", 1)
    );
    assert_eq!(reply.usage.unwrap().prompt_tokens, 100);
    assert!(reply.raw.contains("chat.completion"));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.path, "/v1/chat/completions");
    let body = s.json();
    assert_eq!(
        (body["model"].as_str(), body["temperature"].as_f64()),
        (Some("test-model"), Some(0.0))
    );
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["messages"], msgs());
    assert_eq!(
        s.header("authorization"),
        Some(format!("Bearer {}", std::env::var("PATH").unwrap().trim()).as_str())
    );
    assert_eq!(
        (s.header("x-team"), s.tag.as_deref()),
        (Some("vision"), Some("12"))
    );
    let no_key = ChatClient::new(ClientConfig {
        api_key_env: "GLINT_TEST_UNSET_KEY_VAR".into(),
        max_tokens: None,
        ..cfg(&server.url)
    });
    no_key.unwrap().complete(msgs(), None).await.unwrap();
    let s = &server.seen()[1];
    assert_eq!(s.header("authorization"), None);
    assert!(
        s.json().get("max_tokens").is_none(),
        "None leaves it to the server"
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let server = MockServer::start(|s| match (s.tag.as_deref(), s.nth) {
        (Some("429"), 0) => {
            Reply::status(429, "{\"error\":\"slow down\"}").header("retry-after", "0.4")
        }
        (Some("500"), 0 | 1) => Reply::status(500, "boom"),
        (Some("503"), _) => Reply::status(503, "down"),
        _ => Reply::ok("[EXPLANATION]: ok"),
    })
    .await;
    let client = ChatClient::new(cfg(&server.url)).unwrap();
    let t = Instant::now();
    let r = client.complete(msgs(), Some("429")).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "Retry-After honoured: {:?}",
        t.elapsed()
    );
    assert_eq!(r.attempts, 2);
    let r = client.complete(msgs(), Some("500")).await.unwrap();
    assert_eq!(r.attempts, 3);
    let e = client.complete(msgs(), Some("503")).await.unwrap_err();
    assert_eq!((e.kind, e.attempts), (FailureKind::Http(503), 3));
    assert!(
        e.to_string().contains("503") && e.to_string().contains("3 attempts"),
        "{e}"
    );
    assert_eq!(server.count("503"), 3);
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let server = MockServer::start(|s| match (s.tag.as_deref(), s.nth) {
        (Some("slow-once"), 0) => Reply::Hang(Duration::from_secs(3)),
        (Some("slow"), _) => Reply::ok("late").after(Duration::from_secs(3)),
        _ => Reply::ok("[EXPLANATION]: ok"),
    })
    .await;
    let client = ChatClient::new(cfg(&server.url)).unwrap();
    assert_eq!(
        client
            .complete(msgs(), Some("slow-once"))
            .await
            .unwrap()
            .attempts,
        2
    );
    let t = Instant::now();
    let e = client.complete(msgs(), Some("slow")).await.unwrap_err();
    assert_eq!((e.kind, e.attempts), (FailureKind::Timeout, 3));
    assert!(e.message.contains("0.3 s"), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "each attempt stops at the timeout"
    );
}

#[tokio::test]
async fn client_errors_and_malformed_answers_are_not_retried() {
    let server = MockServer::start(|s| match s.tag.as_deref() {
        Some("400") => Reply::status(400, "{\"error\":\"too many images\"}"),
        Some("401") => Reply::status(401, "{\"error\":\"bad key\"}"),
        Some("404") => Reply::status(404, "model not found"),
        _ => Reply::status(200, "{\"choices\": [ oops"),
    })
    .await;
    let client = ChatClient::new(cfg(&server.url)).unwrap();
    let e = client.complete(msgs(), Some("400")).await.unwrap_err();
    assert!(
        !e.is_fatal() && e.attempts == 1 && e.message.contains("too many images"),
        "{e}"
    );
    let e = client.complete(msgs(), Some("401")).await.unwrap_err();
    assert!(e.is_fatal() && e.message.contains("$PATH"), "{e}");
    let e = client.complete(msgs(), Some("404")).await.unwrap_err();
    assert!(
        e.is_fatal() && e.message.contains("--explainer-model (test-model)"),
        "{e}"
    );
    let e = client.complete(msgs(), Some("bad")).await.unwrap_err();
    assert_eq!((e.kind, e.attempts), (FailureKind::Malformed, 1));
    assert_eq!(
        e.raw.as_deref(),
        Some("{\"choices\": [ oops"),
        "the raw body is kept"
    );
    assert_eq!(server.seen().len(), 4);
}

#[tokio::test]
async fn unreachable_servers_are_network_failures() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = ChatClient::new(ClientConfig {
        retries: 1,
        ..cfg(&format!("http://127.0.0.1:{port}"))
    })
    .unwrap();
    let e = client.complete(msgs(), None).await.unwrap_err();
    assert_eq!((e.kind, e.attempts), (FailureKind::Network, 2));
    assert!(e.message.contains(&port.to_string()), "{e}");
}

#[test]
fn backoff_doubles_with_jitter_and_is_capped() {
    let client = ChatClient::new(ClientConfig {
        backoff: Duration::from_millis(100),
        max_wait: Duration::from_millis(700),
        ..cfg("http://h")
    })
    .unwrap();
    let w1 = client.wait(1, None, Some("7"));
    let w3 = client.wait(3, None, Some("7"));
    assert!(
        w1 >= Duration::from_millis(50) && w1 <= Duration::from_millis(100),
        "{w1:?}"
    );
    assert!(
        w3 >= Duration::from_millis(200) && w3 <= Duration::from_millis(400),
        "{w3:?}"
    );
    assert_eq!(client.wait(9, None, Some("7")), Duration::from_millis(700));
    assert_eq!(
        client.wait(1, Some(Duration::from_secs(60)), None),
        Duration::from_millis(700)
    );
    assert_eq!(w1, client.wait(1, None, Some("7")), "deterministic");
}

#[tokio::test]
async fn a_long_retry_after_is_announced_with_the_wait() {
    let server = MockServer::start(|s| {
        if s.nth == 0 {
            Reply::status(429, "slow down").header("Retry-After", "100000")
        } else {
            Reply::ok("[EXPLANATION]: fine")
        }
    })
    .await;
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = said.clone();
    let client = ChatClient::new(ClientConfig {
        max_wait: Duration::from_millis(20),
        notices: Notices::to(move |l| sink.lock().unwrap().push(l.to_string())),
        ..cfg(&server.url)
    })
    .unwrap();
    client.complete(msgs(), Some("5")).await.unwrap();
    let said = said.lock().unwrap();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("feature 5")
            && said[0].contains("100000 s (Retry-After)")
            && said[0].contains("waiting 0.0 s before attempt 2"),
        "{said:?}"
    );
}

#[tokio::test]
async fn paid_answers_cut_off_or_oversize_are_not_asked_for_again() {
    let server = MockServer::start(|s| match s.tag.as_deref() {
        Some("cut") => {
            Reply::Cut("{\"choices\": [{\"message\": {\"content\": \"[EXPLANATION]: ha".into())
        }
        _ => Reply::ok(&format!("[EXPLANATION]: {}", "long ".repeat(1200))),
    })
    .await;
    let client = ChatClient::new(ClientConfig {
        max_answer_bytes: 5000,
        ..cfg(&server.url)
    })
    .unwrap();
    let e = client.complete(msgs(), Some("cut")).await.unwrap_err();
    assert_eq!((e.kind, e.attempts), (FailureKind::Cut, 1), "{e}");
    assert!(e.message.contains("--retry-paid"), "{e}");
    assert!(e.raw.unwrap().contains("[EXPLANATION]: ha"));
    let e = client.complete(msgs(), Some("big")).await.unwrap_err();
    assert_eq!((e.kind, e.attempts), (FailureKind::Oversize, 1), "{e}");
    assert!(e.message.contains("--max-answer-bytes"), "{e}");
    assert_eq!(server.seen().len(), 2, "neither was asked for twice");
    assert_eq!(client.requests_unanswered(), 2, "both may be billed");
}
