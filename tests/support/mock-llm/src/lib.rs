//! A scripted OpenAI-compatible HTTP/1.1 server on 127.0.0.1 for the explainer tests.
//!
//! Each connection carries one request; the script sees it (with how many earlier requests
//! carried the same `x-glint-feature` tag) and picks the reply. Every request is recorded,
//! including those never answered. A crate of its own so that glint's unit tests and its
//! integration tests share it as an ordinary dev-dependency.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Request target, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
    /// Value of the `x-glint-feature` header.
    pub tag: Option<String>,
    /// Earlier requests with the same tag.
    pub nth: usize,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics on anything else: the client always sends JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// What the server does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer with a status, extra headers and a body.
    Status {
        code: u16,
        headers: Vec<(String, String)>,
        body: String,
        delay: Duration,
    },
    /// Say nothing for this long, then close the connection.
    Hang(Duration),
    /// A 200 whose head announces more than `body`, of which only `body` is sent before the
    /// connection closes.
    Cut(String),
}

impl Reply {
    /// A 200 chat completion whose assistant text is `content`, with usage 100 + 10 tokens.
    pub fn ok(content: &str) -> Self {
        Self::status(200, &completion(content))
    }

    /// Any status with a body.
    pub fn status(code: u16, body: &str) -> Self {
        Reply::Status {
            code,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// Add a response header.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        if let Reply::Status { headers, .. } = &mut self {
            headers.push((k.to_string(), v.to_string()));
        }
        self
    }

    /// Answer only after `d`.
    pub fn after(mut self, d: Duration) -> Self {
        if let Reply::Status { delay, .. } = &mut self {
            *delay = d;
        }
        self
    }
}

/// A chat-completion body with `content` and usage 100 + 10 tokens.
pub fn completion(content: &str) -> String {
    serde_json::json!({
        "id": "cmpl-1", "object": "chat.completion", "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    })
    .to_string()
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A running server; dropping it stops accepting.
pub struct MockServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Start on a free port of 127.0.0.1.
    pub async fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, log.clone(), script.clone()));
            }
        });
        Self { url, seen, task }
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests so far carrying `tag`.
    pub fn count(&self, tag: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.tag.as_deref() == Some(tag))
            .count()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn serve(mut sock: TcpStream, log: Arc<Mutex<Vec<Seen>>>, script: Arc<Script>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let tag = headers
        .iter()
        .find(|(k, _)| k == "x-glint-feature")
        .map(|(_, v)| v.clone());
    let seen = {
        let mut log = log.lock().unwrap();
        let nth = log.iter().filter(|s| s.tag == tag).count();
        let seen = Seen {
            path,
            headers,
            body,
            tag,
            nth,
        };
        log.push(seen.clone());
        seen
    };
    match script(&seen) {
        Reply::Hang(d) => tokio::time::sleep(d).await,
        Reply::Cut(body) => {
            let out = format!(
                "HTTP/1.1 200 Mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len() + 1000
            );
            let _ = sock.write_all(out.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
        Reply::Status {
            code,
            headers,
            body,
            delay,
        } => {
            tokio::time::sleep(delay).await;
            let mut out = format!(
                "HTTP/1.1 {code} Mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                out += &format!("{k}: {v}\r\n");
            }
            out += "\r\n";
            out += &body;
            let _ = sock.write_all(out.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    }
}
