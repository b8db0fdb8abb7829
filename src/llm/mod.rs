//! A client for OpenAI-compatible chat-completions servers (sglang, vLLM, gateways) with
//! per-request timeouts and retries that honour `Retry-After`.
//!
//! Only failures that cost nothing or that the server asks us to repeat are retried: timeouts,
//! connection errors, 408, 425, 429 and 5xx (except 501 and 505). A 200 answer is never
//! re-requested, whatever it says — not one that is malformed, cut off or over the size cap,
//! unless `retry_paid` says so; with a [`Journal`] every such answer is on the disk before it is
//! parsed, and a later run replays it instead of asking again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde_json::{Value, json};

use crate::store::TokenUsage;
use crate::util::rng::SeededRng;
use journal::{Journal, request_fingerprint};

mod body;
pub mod endpoint;
pub mod journal;
mod notices;
mod paid;
mod wire;

pub use endpoint::Endpoint;
pub use notices::Notices;
use wire::{error_chain, snippet};
pub use wire::{parse_completion, retry_after};

/// Header naming the feature a request explains, so server logs can be matched to glint's.
pub const FEATURE_HEADER: &str = "x-glint-feature";

/// How to reach and call the explainer.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Server root (`http://host:port`), its `/v1`, or the full chat-completions URL.
    pub base_url: String,
    /// Model name sent with each request.
    pub model: String,
    /// Environment variable holding the API key; unset or empty sends no `Authorization`.
    pub api_key_env: String,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// Sampling temperature (the original uses 0).
    pub temperature: f32,
    /// Cap on generated tokens; `None` leaves it to the server, as the original does.
    pub max_tokens: Option<u32>,
    /// Limit on one attempt, from connecting to the last byte of the answer.
    pub timeout: Duration,
    /// Attempts after the first one.
    pub retries: u32,
    /// First wait before retrying when the server gives no `Retry-After`; doubles each time.
    pub backoff: Duration,
    /// Longest single wait, `Retry-After` included.
    pub max_wait: Duration,
    /// Extra keys on every image part (e.g. sglang's `"modalities": "multi-images"`).
    pub image_extra: serde_json::Map<String, Value>,
    /// Largest answer body read, in bytes; a larger one is a failure, never stored.
    pub max_answer_bytes: usize,
    /// Ask again when a paid answer was cut off, malformed or oversize (it may be billed twice).
    pub retry_paid: bool,
    /// Where long waits are announced.
    pub notices: Notices,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: "http://localhost:12345".into(),
            model: "lmms-lab/llava-onevision-qwen2-72b-ov".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            headers: Vec::new(),
            temperature: 0.0,
            max_tokens: Some(512),
            timeout: Duration::from_secs(600),
            retries: 3,
            backoff: Duration::from_secs(2),
            max_wait: Duration::from_secs(300),
            image_extra: serde_json::Map::new(),
            max_answer_bytes: 4 << 20,
            retry_paid: false,
            notices: Notices::default(),
        }
    }
}

/// Parse `Name: value` as given to `--header`.
pub fn parse_header(text: &str) -> Result<(String, String)> {
    let Some((k, v)) = text.split_once(':') else {
        bail!("--header {text:?}: write it as `Name: value`");
    };
    let (k, v) = (k.trim(), v.trim());
    HeaderName::from_bytes(k.as_bytes())
        .with_context(|| format!("--header {text:?}: bad header name"))?;
    HeaderValue::from_str(v).with_context(|| format!("--header {text:?}: bad header value"))?;
    Ok((k.to_string(), v.to_string()))
}

/// What kind of failure ended a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Every attempt ran past the timeout.
    Timeout,
    /// Could not connect, or the connection broke.
    Network,
    /// The server answered with this error status.
    Http(u16),
    /// A 200 answer that is not a chat completion.
    Malformed,
    /// A 200 answer whose body broke off before its end.
    Cut,
    /// A 200 answer larger than the size cap.
    Oversize,
    /// The answer could not be written to the journal.
    Journal,
}

/// A request that failed for good.
#[derive(Debug, Clone)]
pub struct RequestError {
    /// What went wrong last.
    pub kind: FailureKind,
    /// A sentence for people.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last response body, if one arrived.
    pub raw: Option<String>,
}

impl RequestError {
    /// Whether every later request would fail the same way (bad key, URL or model name), so a
    /// batch should stop rather than spend its failure budget.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Http(401 | 403 | 404) | FailureKind::Journal
        )
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (after {} attempt{})",
            self.message,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        )
    }
}

/// A successful chat completion.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    /// The assistant's text (empty if the server sent none).
    pub content: String,
    /// The response body exactly as received.
    pub raw: String,
    /// Token usage, when reported.
    pub usage: Option<TokenUsage>,
    /// `finish_reason` of the first choice, when reported.
    pub finish_reason: Option<String>,
    /// Attempts made (1 when the first one answered; 0 when replayed from the journal).
    pub attempts: u32,
    /// Fingerprint of the request (its key in the journal).
    pub request: String,
}

/// The outcome of one attempt: an answer, or an error with whether to retry and a server hint.
enum Attempt {
    Done(ChatReply),
    Failed {
        err: RequestError,
        retry: bool,
        wait: Option<Duration>,
    },
}

/// An OpenAI-compatible chat-completions client; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    headers: HeaderMap,
    cfg: ClientConfig,
    sent: Arc<AtomicU64>,
    /// Attempts that may have been billed without giving a usable answer: timeouts, broken
    /// connections, answers cut off, oversize or malformed.
    unanswered: Arc<AtomicU64>,
    /// Answers taken from the journal instead of asking.
    replayed: Arc<AtomicU64>,
    journal: Option<Arc<Journal>>,
}

/// A failed attempt: what went wrong, whether to try again, and the server's wait hint.
fn fail(
    kind: FailureKind,
    message: String,
    retry: bool,
    raw: Option<String>,
    wait: Option<Duration>,
) -> Attempt {
    Attempt::Failed {
        err: RequestError {
            kind,
            message,
            attempts: 0,
            raw,
        },
        retry,
        wait,
    }
}

/// The chat-completions URL for a base URL given in any of the usual forms.
fn endpoint(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/chat/completions") {
        base.to_string()
    } else if base.ends_with("/v1") {
        format!("{base}/chat/completions")
    } else {
        format!("{base}/v1/chat/completions")
    }
}

impl ChatClient {
    /// Check the URL and headers and read the API key from the environment.
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        let endpoint = endpoint(&cfg.base_url);
        let url = reqwest::Url::parse(&endpoint).with_context(|| {
            format!(
                "--base-url {:?} is not a URL; write it like http://localhost:30000",
                cfg.base_url
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!(
                "--base-url {:?}: only http and https are supported",
                cfg.base_url
            );
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => bail!("--base-url {:?} names no host", cfg.base_url),
        };
        let mut headers = HeaderMap::new();
        if let Ok(key) = std::env::var(&cfg.api_key_env)
            && !key.trim().is_empty()
        {
            let v =
                HeaderValue::from_str(&format!("Bearer {}", key.trim())).with_context(|| {
                    format!(
                        "${} holds characters not allowed in a header",
                        cfg.api_key_env
                    )
                })?;
            headers.insert(AUTHORIZATION, v);
        }
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .with_context(|| format!("header name {k:?}"))?;
            headers.insert(
                name,
                HeaderValue::from_str(v).with_context(|| format!("header {k} value"))?,
            );
        }
        let http = reqwest::Client::builder()
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self {
            http,
            endpoint,
            host,
            headers,
            cfg,
            sent: Arc::new(AtomicU64::new(0)),
            unanswered: Arc::new(AtomicU64::new(0)),
            replayed: Arc::new(AtomicU64::new(0)),
            journal: None,
        })
    }

    /// Journal every answer to `journal` before parsing it, and replay what it holds.
    pub fn with_journal(mut self, journal: Arc<Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The journal in use, if any.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_deref()
    }

    /// Answers so far taken from the journal instead of being asked for.
    pub fn answers_replayed(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }

    /// Attempts so far that may have been billed without giving a usable answer.
    pub fn requests_unanswered(&self) -> u64 {
        self.unanswered.load(Ordering::Relaxed)
    }

    /// `host[:port]` of the server (no credentials, no path).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// HTTP requests sent so far by this client and its clones (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The request body for `messages`.
    pub fn body(&self, messages: Value) -> Value {
        let mut body = json!({"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature, "stream": false});
        if let Some(n) = self.cfg.max_tokens {
            body["max_tokens"] = json!(n);
        }
        body
    }

    /// Send `messages`, retrying as described in the module docs; `tag` (a feature id) is sent
    /// in [`FEATURE_HEADER`] and seeds the backoff jitter.
    pub async fn complete(
        &self,
        messages: Value,
        tag: Option<&str>,
    ) -> Result<ChatReply, RequestError> {
        let body = self.body(messages);
        let request = request_fingerprint(&body, tag);
        if let Some(answer) = self.journal.as_ref().and_then(|j| j.pending(&request)) {
            match self.replay(answer, &request) {
                Ok(reply) => {
                    self.replayed.fetch_add(1, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(e) if !self.cfg.retry_paid => return Err(e),
                Err(_) => {} // the user asked to pay again
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(&body, &request, tag).await {
                Attempt::Done(mut reply) => {
                    reply.attempts = attempt;
                    return Ok(reply);
                }
                Attempt::Failed {
                    mut err,
                    retry,
                    wait,
                } => {
                    err.attempts = attempt;
                    if !retry || attempt > self.cfg.retries {
                        return Err(err);
                    }
                    let pause = self.wait(attempt, wait, tag);
                    self.announce(pause, wait, attempt, tag);
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Wait before attempt `attempt + 1`: the server's hint, else doubling backoff with jitter.
    fn wait(&self, attempt: u32, hint: Option<Duration>, tag: Option<&str>) -> Duration {
        let wait = hint.unwrap_or_else(|| {
            let mut rng = SeededRng::for_name(u64::from(attempt), tag.unwrap_or(""));
            // Jitter spreads concurrent retries so they do not hit the server in step.
            let factor = 2f64.powi(attempt.min(30) as i32 - 1) * (0.5 + 0.5 * rng.uniform());
            self.cfg.backoff.mul_f64(factor)
        });
        wait.min(self.cfg.max_wait)
    }

    async fn attempt(&self, body: &Value, request: &str, tag: Option<&str>) -> Attempt {
        let mut req = self
            .http
            .post(&self.endpoint)
            .timeout(self.cfg.timeout)
            .headers(self.headers.clone())
            .json(body);
        if let Some(tag) = tag {
            req = req.header(FEATURE_HEADER, tag);
        }
        if let Err(e) = self.journal_sent(request, tag).await {
            return fail(e.kind, e.message, false, None, None);
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let transport = |e: reqwest::Error| {
            if !e.is_connect() {
                self.unanswered.fetch_add(1, Ordering::Relaxed);
            }
            if e.is_timeout() {
                fail(
                    FailureKind::Timeout,
                    format!(
                        "no answer within {:.1} s (--timeout)",
                        self.cfg.timeout.as_secs_f64()
                    ),
                    true,
                    None,
                    None,
                )
            } else {
                fail(
                    FailureKind::Network,
                    format!("cannot reach {}: {}", self.endpoint, error_chain(&e)),
                    true,
                    None,
                    None,
                )
            }
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return transport(e),
        };
        let status = resp.status();
        let hint = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        let text = match self.paid_body(resp, request, tag, hint).await {
            Ok(text) => text,
            Err(failed) => return failed,
        };
        if !status.is_success() {
            let code = status.as_u16();
            let retry = matches!(code, 408 | 425 | 429)
                || (status.is_server_error() && !matches!(code, 501 | 505));
            let advice = match code {
                401 | 403 => format!("; check the key in ${}", self.cfg.api_key_env),
                404 => format!(
                    "; check --base-url ({}) and --explainer-model ({})",
                    self.endpoint, self.cfg.model
                ),
                _ => String::new(),
            };
            let message = format!("HTTP {status}: {}{advice}", snippet(&text));
            return fail(FailureKind::Http(code), message, retry, Some(text), hint);
        }
        match parse_completion(&text) {
            Ok((content, usage, finish_reason)) => Attempt::Done(ChatReply {
                content,
                raw: text,
                usage,
                finish_reason,
                attempts: 0,
                request: request.to_string(),
            }),
            Err(e) => {
                self.unanswered.fetch_add(1, Ordering::Relaxed);
                fail(
                    FailureKind::Malformed,
                    format!("answer is not a chat completion ({e}): {}", snippet(&text)),
                    false,
                    Some(text),
                    None,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
