//! Label refinement, as in the original scorer: an explanation is rewritten by a text model into
//! the short entity phrase a grounding model (or CLIP) is given.

use crate::explain::prompt::DECLINED;
use crate::llm::{ChatClient, RequestError};

use super::prompt::ScorePrompt;

/// The label of an answer: the text after the first `[ANSWER]` (to the end, trimmed), or the
/// original's fallback sentence, which keeps a declined description recognisable.
pub fn parse_refined(content: &str) -> (String, bool) {
    match content.find("[ANSWER]") {
        Some(i) => (content[i + "[ANSWER]".len()..].trim().to_string(), true),
        None => (
            format!("Response {content}. Explanation could not be parsed."),
            false,
        ),
    }
}

/// Whether a label (or explanation) is the explainer declining to describe the feature; such
/// features are not scored, as in the original.
pub fn is_declined(label: &str) -> bool {
    label.contains(DECLINED)
}

/// A text model that shortens explanations into grounding phrases.
#[derive(Debug, Clone)]
pub struct Refiner {
    /// The chat client of the text model.
    pub client: ChatClient,
    /// The refinement template (shipped: `refine-v1`).
    pub prompt: ScorePrompt,
}

impl Refiner {
    /// Refine `explanation`; `tag` names the feature in the request headers.
    pub async fn refine(&self, explanation: &str, tag: &str) -> Result<String, RequestError> {
        if is_declined(explanation) {
            // The original's model passes it through verbatim; no request is needed for that.
            return Ok(explanation.to_string());
        }
        let messages = self
            .prompt
            .messages(explanation, &[], &serde_json::Map::new());
        let reply = self.client.complete(messages, Some(tag)).await?;
        Ok(parse_refined(&reply.content).0)
    }

    /// What the label depends on besides the explanation, for the score's prompt hash.
    pub fn recipe(&self) -> String {
        format!(
            "refine model={} prompt={}",
            self.client.config().model,
            self.prompt.hash("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ClientConfig;
    use crate::score::prompt::Builtin;
    use glint_mock_llm::{MockServer, Reply};

    #[test]
    fn answers_parse_like_the_original() {
        assert_eq!(
            parse_refined("[ANSWER] Honda vehicles\n"),
            ("Honda vehicles".into(), true)
        );
        assert_eq!(parse_refined("x [ANSWER]a\nb").0, "a\nb");
        let (l, ok) = parse_refined("Unable to produce descriptions");
        assert!(!ok && is_declined(&l));
        assert_eq!(
            l,
            "Response Unable to produce descriptions. Explanation could not be parsed."
        );
    }

    #[tokio::test]
    async fn refiner_sends_the_explanation_and_reads_the_answer() {
        let server = MockServer::start(|seen| {
            let body = seen.json();
            let text = body["messages"][0]["content"].as_str().unwrap_or("");
            if text.ends_with("Bright red circles on grey.") {
                Reply::ok("[ANSWER] red circles")
            } else {
                Reply::ok("no idea")
            }
        })
        .await;
        let r = Refiner {
            client: ChatClient::new(ClientConfig {
                base_url: server.url.clone(),
                model: "judge".into(),
                api_key_env: "GLINT_TEST_NO_KEY".into(),
                ..ClientConfig::default()
            })
            .unwrap(),
            prompt: ScorePrompt::builtin(Builtin::Refine),
        };
        let got = r.refine("Bright red circles on grey.", "3").await.unwrap();
        assert_eq!(got, "red circles");
        let declined = r
            .refine("Unable to produce descriptions", "4")
            .await
            .unwrap();
        assert!(is_declined(&declined));
        assert_eq!(server.seen().len(), 1, "declined needs no request");
        assert_eq!(server.seen()[0].tag.as_deref(), Some("3"));
    }
}
