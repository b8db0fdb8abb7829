//! The explainer prompt: a versioned template file, the chat messages built from it, and the
//! parsing of the `[EXPLANATION]:` answer format.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::util::prompt_template::{
    N_IMAGES, Sections, read_template, split_sections, template_hash, text_and_images,
};

/// Name of the shipped default template.
pub const BUILTIN_NAME: &str = "explain-v1";

/// The shipped default template (following the original system's image explainer).
pub const BUILTIN_TEMPLATE: &str = include_str!("../../prompts/explain-v1.txt");

/// Marker of the answer line, as in the original system.
pub const ANSWER_MARKER: &str = "[EXPLANATION]";

/// What the original system's explainer answers when it sees no common pattern.
pub const DECLINED: &str = "Unable to produce descriptions";

/// A prompt template: an optional system message and a user text followed by the images.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTemplate {
    /// Where it came from: [`BUILTIN_NAME`] or the file name.
    pub name: String,
    /// The file's text exactly as read (what the prompt hash covers).
    pub source: String,
    system: Option<String>,
    user: String,
}

impl PromptTemplate {
    /// The shipped default template.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN_NAME, BUILTIN_TEMPLATE).expect("the shipped template parses")
    }

    /// A user-supplied template file.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_template(path, Self::parse)
    }

    /// Parse template text: comment lines (`#`) first, then `=== system ===` and `=== user ===`
    /// sections; text without any section header is all user text.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let Sections { system, user } =
            split_sections(text, "start it with '#' or move it into a section")?;
        if user.is_empty() {
            bail!("the user text is empty; the template must say what to do with the images");
        }
        if !user.contains(ANSWER_MARKER) && !system.as_deref().unwrap_or("").contains(ANSWER_MARKER)
        {
            bail!("the template never mentions {ANSWER_MARKER}:, so answers could not be parsed");
        }
        Ok(Self {
            name: name.to_string(),
            source: text.to_string(),
            system,
            user,
        })
    }

    /// Hash of the template text and `recipe` (everything else that shapes the request except
    /// the model), stored with each explanation to tell runs apart.
    pub fn hash(&self, recipe: &str) -> String {
        template_hash("glint-explain-prompt", &self.source, recipe)
    }

    /// Chat messages: the system text, then one user message of a text part followed by one
    /// `image_url` part per PNG, each carrying `image_extra` keys (e.g. sglang's `modalities`).
    pub fn messages(
        &self,
        pngs: &[Vec<u8>],
        image_extra: &serde_json::Map<String, Value>,
    ) -> Value {
        let n = pngs.len().to_string();
        let parts = text_and_images(&self.user.replace(N_IMAGES, &n), pngs, image_extra);
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(json!({"role": "system", "content": system.replace(N_IMAGES, &n)}));
        }
        messages.push(json!({"role": "user", "content": parts}));
        Value::Array(messages)
    }
}

/// An answer read from the explainer's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The explanation, or the original system's fallback sentence when unparsed.
    pub text: String,
    /// Whether an `[EXPLANATION]:` line with text was found.
    pub parsed: bool,
}

/// Read the explanation from a reply: the text after the LAST `[EXPLANATION]` marker that is
/// followed by any (case-insensitive; a colon and markdown `**` after it are skipped), to the
/// end, trimmed. The prompt asks for the marker on the last line, so a model that reasons first
/// is read right. Without one, the text is the original system's fallback sentence.
pub fn parse_answer(content: &str) -> Answer {
    let lower = content.to_ascii_lowercase();
    let marker = ANSWER_MARKER.to_ascii_lowercase();
    let starts: Vec<usize> = lower.match_indices(&marker).map(|(i, _)| i).collect();
    for &i in starts.iter().rev() {
        let rest =
            content[i + marker.len()..].trim_start_matches([':', '*', ' ', '\t', '\r', '\n']);
        let text = rest.trim();
        if !text.is_empty() {
            return Answer {
                text: text.to_string(),
                parsed: true,
            };
        }
    }
    Answer {
        text: format!("Response {content}. Explanation could not be parsed."),
        parsed: false,
    }
}

/// Whether an explanation is the explainer declining to describe the feature.
pub fn is_declined(text: &str) -> bool {
    text.contains(DECLINED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_template_has_both_sections_and_the_marker() {
        let t = PromptTemplate::builtin();
        assert!(
            t.system
                .as_deref()
                .unwrap()
                .starts_with("You are a meticulous AI researcher")
        );
        assert!(
            t.user.starts_with("[REQUIREMENTS]"),
            "comments and headers are dropped"
        );
        assert!(t.user.contains("[EXPLANATION]:") && t.user.contains(DECLINED));
        assert!(!t.user.contains('#') && !t.user.contains("==="));
    }

    #[test]
    fn messages_put_text_first_then_one_part_per_image() {
        let t = PromptTemplate::builtin();
        let mut extra = serde_json::Map::new();
        extra.insert("modalities".into(), json!("multi-images"));
        let m = t.messages(&[vec![1, 2, 3], vec![4]], &extra);
        let m = m.as_array().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["role"], "system");
        let parts = m[1]["content"].as_array().unwrap();
        assert_eq!(parts.len(), 3);
        let text = parts[0]["text"].as_str().unwrap();
        assert!(
            text.contains("You will see 2 images") && !text.contains("{{"),
            "{text}"
        );
        assert_eq!(parts[1]["image_url"]["url"], "data:image/png;base64,AQID");
        assert_eq!(parts[2]["image_url"]["url"], "data:image/png;base64,BA==");
        assert_eq!(parts[2]["modalities"], "multi-images");
        let plain = t.messages(&[vec![1]], &serde_json::Map::new());
        assert!(plain[1]["content"][1].get("modalities").is_none());
    }

    #[test]
    fn user_templates_parse_or_say_what_is_wrong() {
        let t = PromptTemplate::parse("x", "Describe the lit parts. End with [EXPLANATION]: ...")
            .unwrap();
        assert!(t.system.is_none());
        assert_eq!(
            t.messages(&[], &serde_json::Map::new())
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let err = PromptTemplate::parse("x", "=== system ===\nhi [EXPLANATION]").unwrap_err();
        assert!(err.to_string().contains("no `=== user ===`"), "{err}");
        let err = PromptTemplate::parse("x", "=== user ===\nDescribe it.").unwrap_err();
        assert!(err.to_string().contains("[EXPLANATION]"), "{err}");
        let err = PromptTemplate::parse("x", "stray\n=== user ===\n[EXPLANATION]").unwrap_err();
        assert!(
            err.to_string().contains("before the first section"),
            "{err}"
        );
        assert!(PromptTemplate::parse("x", "# only a comment\n").is_err());
        let tmp = tempfile::tempdir().unwrap();
        let err = PromptTemplate::from_file(&tmp.path().join("none.txt")).unwrap_err();
        assert!(err.to_string().contains("none.txt"), "{err}");
    }

    #[test]
    fn hash_covers_template_and_recipe() {
        let t = PromptTemplate::builtin();
        let other = PromptTemplate::parse("y", "=== user ===\nsay [EXPLANATION]: x").unwrap();
        assert_eq!(t.hash("mask/5"), PromptTemplate::builtin().hash("mask/5"));
        assert_ne!(t.hash("mask/5"), t.hash("heat/5"));
        assert_ne!(t.hash("mask/5"), other.hash("mask/5"));
        assert_eq!(t.hash("r").len(), 16);
    }

    #[test]
    fn answers_parse_like_the_original_with_a_clear_fallback() {
        let a = parse_answer("[EXPLANATION]: Mesh-like structures.\n");
        assert_eq!(
            a,
            Answer {
                text: "Mesh-like structures.".into(),
                parsed: true
            }
        );
        let a = parse_answer(
            "Looking at the images, all show wheels.\n**[Explanation]:** round wheels",
        );
        assert_eq!(a.text, "round wheels");
        // The last marker with text wins; lines after it are kept, as in the original.
        let a = parse_answer("[EXPLANATION]: draft\nthinking…\n[EXPLANATION]:\n  fur\nof cats  ");
        assert_eq!(a.text, "fur\nof cats");
        let a = parse_answer("[EXPLANATION]: Unable to produce descriptions.");
        assert!(a.parsed && is_declined(&a.text));
        let a = parse_answer("I think these are dogs.");
        assert!(!a.parsed);
        assert_eq!(
            a.text,
            "Response I think these are dogs.. Explanation could not be parsed."
        );
        assert!(!parse_answer("[EXPLANATION]:   ").parsed);
    }
}
