//! Explaining one feature: draw its evidence, ask the explainer, store the answer the moment it
//! arrives. [`explain_feature`] is what the TUI calls; [`super::batch`] runs many.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::prompt::{PromptTemplate, parse_answer};
use super::select::{EvidenceImage, EvidenceOptions, dataset_root, render_evidence};
use crate::llm::{ChatClient, ClientConfig, FailureKind};
use crate::store::{Explanation, Store, unix_now};

/// Everything an [`Explainer`] needs.
#[derive(Debug, Clone)]
pub struct ExplainerConfig {
    /// Server, model and retry settings.
    pub client: ClientConfig,
    /// Which examples and how they are drawn.
    pub evidence: EvidenceOptions,
    /// The prompt template.
    pub prompt: PromptTemplate,
    /// Dataset folder or manifest, when the one recorded in the store has moved.
    pub dataset: Option<PathBuf>,
}

/// A ready explainer for one store: cheap to clone, safe to share between tasks.
#[derive(Debug, Clone)]
pub struct Explainer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: ChatClient,
    evidence: EvidenceOptions,
    prompt: PromptTemplate,
    prompt_hash: String,
    root: PathBuf,
}

/// Which step of explaining a feature failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading the examples or drawing the evidence images (no request was sent).
    Evidence,
    /// The request to the explainer.
    Request,
    /// Writing the answer to the store.
    Store,
}

/// Why a feature could not be explained.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainError {
    /// The feature.
    pub feature: u32,
    /// Where it failed.
    pub stage: Stage,
    /// The request failure's kind, for [`Stage::Request`].
    pub kind: Option<FailureKind>,
    /// A sentence for people.
    pub reason: String,
    /// Requests sent for it.
    pub attempts: u32,
    /// Whether other features would fail the same way (stop the batch).
    #[serde(skip)]
    pub fatal: bool,
}

impl std::fmt::Display for ExplainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "feature {}: {}", self.feature, self.reason)
    }
}

impl std::error::Error for ExplainError {}

impl Explainer {
    /// Set up the client and find the dataset the store's images come from.
    pub fn new(store: &Store, cfg: ExplainerConfig) -> Result<Self> {
        let root = dataset_root(
            &store.manifest().dataset,
            store.dir(),
            cfg.dataset.as_deref(),
        )?;
        let client = ChatClient::new(cfg.client)?;
        let c = client.config();
        let extra = serde_json::to_string(&c.image_extra)?;
        let recipe = format!(
            "{} temperature={} max_tokens={:?} image_extra={extra}",
            cfg.evidence.recipe(),
            c.temperature,
            c.max_tokens
        );
        let prompt_hash = cfg.prompt.hash(&recipe);
        let inner = Inner {
            client,
            evidence: cfg.evidence,
            prompt: cfg.prompt,
            prompt_hash,
            root,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Hash of the prompt template and evidence recipe, stored with each explanation.
    pub fn prompt_hash(&self) -> &str {
        &self.inner.prompt_hash
    }

    /// Model name sent to the server.
    pub fn model(&self) -> &str {
        &self.inner.client.config().model
    }

    /// `host[:port]` of the server.
    pub fn host(&self) -> &str {
        self.inner.client.host()
    }

    /// HTTP requests this explainer (and its clones) has sent, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.inner.client.requests_sent()
    }

    /// Name of the prompt template in use.
    pub fn prompt_name(&self) -> &str {
        &self.inner.prompt.name
    }

    /// The folder the store's image paths are relative to.
    pub fn dataset_root(&self) -> &Path {
        &self.inner.root
    }

    /// This explainer's earlier explanation of `f` (same model and prompt hash), if any.
    pub fn existing(&self, store: &Store, f: u32) -> Result<Option<Explanation>> {
        store.explanation(f, self.model(), self.prompt_hash())
    }

    /// How evidence is chosen and drawn.
    pub fn evidence_options(&self) -> &EvidenceOptions {
        &self.inner.evidence
    }

    /// The images that would be sent for `f`, drawn on this thread.
    pub fn evidence_now(&self, store: &Store, f: u32) -> Result<Vec<EvidenceImage>> {
        render_evidence(store, &self.inner.root, f, &self.inner.evidence)
    }

    /// The images that would be sent for `f` (drawn off the async threads).
    pub async fn evidence(&self, store: &Store, f: u32) -> Result<Vec<EvidenceImage>> {
        let (store, this) = (store.clone(), self.clone());
        tokio::task::spawn_blocking(move || this.evidence_now(&store, f))
            .await
            .context("drawing evidence images panicked")?
    }

    /// The request body that would be sent for these images (for previews and logs).
    pub fn request_body(&self, evidence: &[EvidenceImage]) -> Value {
        self.inner.client.body(self.messages(evidence))
    }

    fn messages(&self, evidence: &[EvidenceImage]) -> Value {
        let pngs: Vec<Vec<u8>> = evidence.iter().map(|e| e.png.clone()).collect();
        self.inner
            .prompt
            .messages(&pngs, &self.inner.client.config().image_extra)
    }
}

/// Explain feature `feature`: draw its evidence, ask the explainer, store the answer (even one
/// without an `[EXPLANATION]:` line, which gets the original's fallback text) and return it.
pub async fn explain_feature(
    explainer: &Explainer,
    store: &Store,
    feature: u32,
) -> Result<Explanation, ExplainError> {
    let err = |stage, kind, reason: String, attempts, fatal| ExplainError {
        feature,
        stage,
        kind,
        reason,
        attempts,
        fatal,
    };
    let evidence = explainer
        .evidence(store, feature)
        .await
        .map_err(|e| err(Stage::Evidence, None, format!("{e:#}"), 0, false))?;
    if evidence.is_empty() {
        return Err(err(
            Stage::Evidence,
            None,
            "it never fired in this store; nothing to show".into(),
            0,
            false,
        ));
    }
    let tag = feature.to_string();
    let reply = explainer
        .inner
        .client
        .complete(explainer.messages(&evidence), Some(&tag))
        .await
        .map_err(|e| {
            let fatal = e.is_fatal();
            err(
                Stage::Request,
                Some(e.kind),
                e.to_string(),
                e.attempts,
                fatal,
            )
        })?;
    let answer = parse_answer(&reply.content);
    let explanation = Explanation {
        feature,
        text: answer.text,
        label: None,
        explainer_model: explainer.model().to_string(),
        base_url_host: explainer.host().to_string(),
        prompt_hash: explainer.prompt_hash().to_string(),
        example_images: evidence.iter().map(|e| e.image).collect(),
        created_unix: unix_now(),
        raw_response: reply.raw,
        parsed: answer.parsed,
        usage: reply.usage,
        imported_from: None,
    };
    let (s, e) = (store.clone(), explanation.clone());
    let stored = tokio::task::spawn_blocking(move || s.put_explanation(&e)).await;
    match stored {
        Ok(Ok(())) => Ok(explanation),
        Ok(Err(e)) => Err(err(
            Stage::Store,
            None,
            format!("{e:#}"),
            reply.attempts,
            true,
        )),
        Err(e) => Err(err(
            Stage::Store,
            None,
            format!("storing panicked: {e}"),
            reply.attempts,
            true,
        )),
    }
}
