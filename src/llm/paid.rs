//! What a paid answer needs beyond an HTTP exchange: the journal written before anything is
//! parsed, answers replayed from it, and bodies cut off or over the size cap reported rather
//! than asked for again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;

use super::body::{Body, read_capped};
use super::wire::snippet;
use super::{Attempt, ChatClient, ChatReply, FailureKind, RequestError, fail, parse_completion};
use crate::llm::journal::{Journal, JournalAnswer};

impl ChatClient {
    /// An answer from the journal as this request's reply: nothing is sent.
    pub(super) fn replay(
        &self,
        answer: JournalAnswer,
        request: &str,
    ) -> Result<ChatReply, RequestError> {
        let failed = |kind, message: String| RequestError {
            kind,
            message: format!(
                "{message}; it is kept in {} and may have been billed, so it is not asked for \
                 again: pass --retry-paid to ask again",
                self.journal
                    .as_ref()
                    .map_or_else(String::new, |j| j.path().display().to_string())
            ),
            attempts: 0,
            raw: Some(answer.body.clone()),
        };
        if !answer.complete {
            return Err(failed(
                FailureKind::Cut,
                "an earlier answer to this request arrived incomplete (cut off or over the size cap)"
                    .into(),
            ));
        }
        match parse_completion(&answer.body) {
            Ok((content, usage, finish_reason)) => Ok(ChatReply {
                content,
                raw: answer.body,
                usage,
                finish_reason,
                attempts: 0,
                request: request.to_string(),
            }),
            Err(e) => Err(failed(
                FailureKind::Malformed,
                format!(
                    "an earlier answer to this request is not a chat completion ({e}): {}",
                    snippet(&answer.body)
                ),
            )),
        }
    }

    /// Journal `answer` to `request` (on a blocking thread: it waits for the disk).
    pub(super) async fn journal_answer(
        &self,
        request: &str,
        tag: Option<&str>,
        answer: JournalAnswer,
    ) -> Result<(), RequestError> {
        self.journal_line(request, tag, move |j, request, tag| {
            j.answer(request, tag, &answer)
        })
        .await
    }

    /// Journal that `request` is about to be sent (on a blocking thread).
    pub(super) async fn journal_sent(
        &self,
        request: &str,
        tag: Option<&str>,
    ) -> Result<(), RequestError> {
        self.journal_line(request, tag, |j, request, tag| j.sent(request, tag))
            .await
    }

    /// Run `write` on the journal, if there is one, on a blocking thread; its failure is the
    /// request's.
    async fn journal_line(
        &self,
        request: &str,
        tag: Option<&str>,
        write: impl FnOnce(&Journal, &str, Option<&str>) -> anyhow::Result<()> + Send + 'static,
    ) -> Result<(), RequestError> {
        let Some(j) = self.journal.clone() else {
            return Ok(());
        };
        let (request, tag) = (request.to_string(), tag.map(String::from));
        let written = tokio::task::spawn_blocking(move || write(&j, &request, tag.as_deref()))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        written.map_err(|e| RequestError {
            kind: FailureKind::Journal,
            message: format!("{e:#}"),
            attempts: 0,
            raw: None,
        })
    }

    /// The body of `resp`, read within the size cap; a success is journalled before it is
    /// returned, and one cut off or oversize is journalled and reported as the attempt's end.
    pub(super) async fn paid_body(
        &self,
        resp: reqwest::Response,
        request: &str,
        tag: Option<&str>,
        hint: Option<Duration>,
    ) -> Result<String, Attempt> {
        let status: StatusCode = resp.status();
        let cap = self.cfg.max_answer_bytes;
        let text = match read_capped(resp, cap).await {
            Body::Whole(t) => t,
            Body::Cut(part, why) if status.is_success() => {
                self.unanswered.fetch_add(1, Ordering::Relaxed);
                let answer = JournalAnswer {
                    status: status.as_u16(),
                    complete: false,
                    body: part.clone(),
                };
                if let Err(e) = self.journal_answer(request, tag, answer).await {
                    return Err(fail(e.kind, e.message, false, Some(part), None));
                }
                let message = format!(
                    "the answer broke off after {} bytes ({why}); it may have been billed, so it \
                     is not asked for again: pass --retry-paid to ask again",
                    part.len()
                );
                return Err(fail(
                    FailureKind::Cut,
                    message,
                    self.cfg.retry_paid,
                    Some(part),
                    None,
                ));
            }
            Body::Cut(part, why) => {
                self.unanswered.fetch_add(1, Ordering::Relaxed);
                let message = format!("the error answer broke off ({why}): {}", snippet(&part));
                return Err(fail(FailureKind::Network, message, true, Some(part), hint));
            }
            Body::Oversize(part, len) if status.is_success() => {
                self.unanswered.fetch_add(1, Ordering::Relaxed);
                let answer = JournalAnswer {
                    status: status.as_u16(),
                    complete: false,
                    body: part.clone(),
                };
                if let Err(e) = self.journal_answer(request, tag, answer).await {
                    return Err(fail(e.kind, e.message, false, None, None));
                }
                let message = format!(
                    "the answer is {len} bytes or more, over the cap of {cap} (--max-answer-bytes); \
                     not stored (its first {} bytes are journalled)",
                    part.len()
                );
                return Err(fail(FailureKind::Oversize, message, false, None, None));
            }
            Body::Oversize(part, _) => part,
        };
        if status.is_success() {
            let answer = JournalAnswer {
                status: status.as_u16(),
                complete: true,
                body: text.clone(),
            };
            if let Err(e) = self.journal_answer(request, tag, answer).await {
                return Err(fail(e.kind, e.message, false, Some(text), None));
            }
        }
        Ok(text)
    }
}
