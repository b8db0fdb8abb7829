//! Scorer prompts: versioned template files (label refinement, detection, fuzzing) with the
//! explainer's section format, their hashes, and the chat messages built from them.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::util::prompt_template::{
    N_IMAGES, Sections, read_template, split_sections, template_hash, text_and_images,
};

/// Placeholder replaced by the explanation (or label) being scored.
pub const EXPLANATION: &str = "{{explanation}}";

/// Which shipped template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// The original's label refiner (explanation → short grounding phrase).
    Refine,
    /// Detection: which images fit the explanation.
    Detection,
    /// Fuzzing: which highlights fit the explanation.
    Fuzzing,
}

impl Builtin {
    fn file(self) -> (&'static str, &'static str) {
        match self {
            Self::Refine => ("refine-v1", include_str!("prompts/refine-v1.txt")),
            Self::Detection => ("detection-v1", include_str!("prompts/detection-v1.txt")),
            Self::Fuzzing => ("fuzzing-v1", include_str!("prompts/fuzzing-v1.txt")),
        }
    }
}

/// A scorer prompt template: an optional system message and a user text, images after it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorePrompt {
    /// The shipped template's name or the file's path.
    pub name: String,
    /// The text exactly as read (what the hash covers).
    pub source: String,
    system: Option<String>,
    user: String,
}

impl ScorePrompt {
    /// A shipped template.
    pub fn builtin(which: Builtin) -> Self {
        let (name, text) = which.file();
        Self::parse(name, text).expect("the shipped scorer templates parse")
    }

    /// A user-supplied template file.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_template(path, Self::parse)
    }

    /// The file at `path` if given, else the shipped `which`.
    pub fn load(path: Option<&Path>, which: Builtin) -> Result<Self> {
        match path {
            Some(p) => Self::from_file(p),
            None => Ok(Self::builtin(which)),
        }
    }

    /// Parse template text: `#` comment lines first, then `=== system ===` and `=== user ===`
    /// sections (text without headers is all user text); the user text must hold
    /// `{{explanation}}`.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let Sections { system, user } = split_sections(text, "start it with '#'")?;
        if !user.contains(EXPLANATION) {
            bail!("the user text never mentions {EXPLANATION}, so the judge would not see it");
        }
        Ok(Self {
            name: name.to_string(),
            source: text.to_string(),
            system,
            user,
        })
    }

    /// Hash of the template text and `recipe` (everything else that shapes the score).
    pub fn hash(&self, recipe: &str) -> String {
        template_hash("glint-score-prompt", &self.source, recipe)
    }

    /// Chat messages for `explanation` and the PNG images, each image part carrying
    /// `image_extra` keys.
    pub fn messages(
        &self,
        explanation: &str,
        pngs: &[Vec<u8>],
        image_extra: &serde_json::Map<String, Value>,
    ) -> Value {
        let n = pngs.len().to_string();
        let fill = |t: &str| t.replace(N_IMAGES, &n).replace(EXPLANATION, explanation);
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(json!({"role": "system", "content": fill(system)}));
        }
        if pngs.is_empty() {
            messages.push(json!({"role": "user", "content": fill(&self.user)}));
            return Value::Array(messages);
        }
        let parts = text_and_images(&fill(&self.user), pngs, image_extra);
        messages.push(json!({"role": "user", "content": parts}));
        Value::Array(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_templates_parse_and_hash_apart() {
        let r = ScorePrompt::builtin(Builtin::Refine);
        let d = ScorePrompt::builtin(Builtin::Detection);
        let f = ScorePrompt::builtin(Builtin::Fuzzing);
        assert!(r.system.is_none() && r.user.starts_with("[GUIDELINES]"));
        assert!(d.system.as_deref().unwrap().contains("Python list"));
        assert_ne!(d.hash("k=5"), f.hash("k=5"));
        assert_ne!(d.hash("k=5"), d.hash("k=4"));
        assert_eq!(r.hash("x"), ScorePrompt::builtin(Builtin::Refine).hash("x"));
    }

    #[test]
    fn messages_fill_placeholders_and_attach_images() {
        let d = ScorePrompt::builtin(Builtin::Detection);
        let m = d.messages(
            "red circles",
            &[vec![1, 2, 3], vec![4]],
            &Default::default(),
        );
        let parts = m[1]["content"].as_array().unwrap();
        let text = parts[0]["text"].as_str().unwrap();
        assert!(
            text.contains("red circles") && text.contains("2 images"),
            "{text}"
        );
        assert!(!text.contains("{{"));
        assert_eq!(parts[1]["image_url"]["url"], "data:image/png;base64,AQID");
        let r = ScorePrompt::builtin(Builtin::Refine).messages("x y", &[], &Default::default());
        assert!(r[0]["content"].as_str().unwrap().ends_with("x y"));
    }

    #[test]
    fn bad_templates_say_why() {
        let e = ScorePrompt::parse("x", "=== user ===\nno placeholder").unwrap_err();
        assert!(e.to_string().contains("{{explanation}}"), "{e}");
        let e = ScorePrompt::parse("x", "=== system ===\n{{explanation}}").unwrap_err();
        assert!(e.to_string().contains("no `=== user ===`"), "{e}");
        assert!(ScorePrompt::parse("x", "stray\n=== user ===\n{{explanation}}").is_err());
        assert!(ScorePrompt::parse("x", "Is it {{explanation}}?").is_ok());
    }
}
