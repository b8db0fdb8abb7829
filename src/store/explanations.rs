//! Explanations of features, kept in their own sled tree beside the cache records.
//!
//! A feature may hold several explanations, one per (explainer model, prompt hash) pair; writing
//! the same pair again replaces it. Every write is flushed before it returns, so an explanation
//! that has been paid for survives a kill of the process right after.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::Store;
use super::tree_codec::{JsonTree, feature_key};

/// Name of the sled tree holding explanations (the cache's default tree is never touched).
pub const EXPLANATIONS_TREE: &str = "explanations";

/// Token counts reported by an OpenAI-compatible server for one or more requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens of the prompt (images included, as the server counts them).
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Total as reported (prompt + completion when the server leaves it out).
    pub total_tokens: u64,
}

impl TokenUsage {
    /// Add another report.
    pub fn add(&mut self, other: &TokenUsage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
    }
}

/// One explanation of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Feature index.
    pub feature: u32,
    /// The explanation (for an unparsed answer, the original system's fallback sentence).
    pub text: String,
    /// A short human label, set by a person.
    #[serde(default)]
    pub label: Option<String>,
    /// Model name sent to the server (or recorded by the importer).
    pub explainer_model: String,
    /// `host[:port]` of the server that answered; empty for imports.
    pub base_url_host: String,
    /// Hash of the prompt template and evidence recipe the request was built from.
    pub prompt_hash: String,
    /// Dataset indices of the images shown, in the order sent.
    pub example_images: Vec<u32>,
    /// Seconds since the Unix epoch when the answer arrived (or was imported).
    pub created_unix: u64,
    /// The server's response body exactly as received (the text itself for imports).
    pub raw_response: String,
    /// Whether the answer held an `[EXPLANATION]:` line.
    #[serde(default = "yes")]
    pub parsed: bool,
    /// Token usage of the request, when the server reported it.
    #[serde(default)]
    pub usage: Option<TokenUsage>,
    /// File the explanation was imported from, if it did not come from a server.
    #[serde(default)]
    pub imported_from: Option<String>,
}

fn yes() -> bool {
    true
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where explanations live and how their damage is reported.
const EXPLANATIONS: JsonTree = JsonTree {
    name: EXPLANATIONS_TREE,
    record: "explanation",
    repair: "delete it with a new explanation for that feature or re-import",
};

/// Key of an explanation: feature (big-endian, so a feature's explanations are adjacent), then
/// the fingerprint of (model, prompt hash).
fn explanation_key(feature: u32, model: &str, prompt_hash: &str) -> Vec<u8> {
    feature_key(feature, &[], model, prompt_hash)
}

impl Store {
    /// Store `e`, replacing any explanation of the same feature, model and prompt hash, and flush.
    pub fn put_explanation(&self, e: &Explanation) -> Result<()> {
        self.check_feature(e.feature, "explanation")?;
        let k = explanation_key(e.feature, &e.explainer_model, &e.prompt_hash);
        self.put_record(&EXPLANATIONS, k, e, e.feature, "explanation")
    }

    /// The explanation of feature `f` by `model` with `prompt_hash`, if there is one.
    pub fn explanation(
        &self,
        f: u32,
        model: &str,
        prompt_hash: &str,
    ) -> Result<Option<Explanation>> {
        let k = explanation_key(f, model, prompt_hash);
        let got: Option<Explanation> = self.get_record(&EXPLANATIONS, &k, f, "explanation")?;
        // Guards against a fingerprint collision between two (model, hash) pairs.
        Ok(got.filter(|e| e.explainer_model == model && e.prompt_hash == prompt_hash))
    }

    /// Every explanation of feature `f`, newest first.
    pub fn explanations_of(&self, f: u32) -> Result<Vec<Explanation>> {
        let mut out: Vec<Explanation> = self.scan_records(&EXPLANATIONS, Some(f))?;
        out.sort_by_key(|e| std::cmp::Reverse(e.created_unix));
        Ok(out)
    }

    /// The newest explanation of feature `f`, optionally only those by `model`.
    pub fn latest_explanation(&self, f: u32, model: Option<&str>) -> Result<Option<Explanation>> {
        Ok(self
            .explanations_of(f)?
            .into_iter()
            .find(|e| model.is_none_or(|m| e.explainer_model == m)))
    }

    /// Every explanation in the store, by feature.
    pub fn all_explanations(&self) -> Result<Vec<Explanation>> {
        self.scan_records(&EXPLANATIONS, None)
    }
}

/// Name of the sled tree holding human labels, one per feature (absent in older stores).
pub const LABELS_TREE: &str = "labels";

/// A label a person wrote for a feature, kept beside (never over) the machine explanations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HumanLabel {
    text: String,
    created_unix: u64,
}

impl Store {
    /// Set feature `f`'s human label (`None` or blank removes it) and flush.
    pub fn put_label(&self, f: u32, text: Option<&str>) -> Result<()> {
        self.check_feature(f, "label")?;
        let tree = self.tree(LABELS_TREE)?;
        let ctx = || {
            format!(
                "cannot write the label of feature {f} to store {}",
                self.dir().display()
            )
        };
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => {
                let rec = HumanLabel {
                    text: t.to_string(),
                    created_unix: unix_now(),
                };
                tree.insert(f.to_be_bytes(), serde_json::to_vec(&rec)?)
                    .with_context(ctx)?;
            }
            None => {
                tree.remove(f.to_be_bytes()).with_context(ctx)?;
            }
        }
        tree.flush().with_context(ctx)?;
        Ok(())
    }

    /// Every human label in the store: `(feature, text)` by feature.
    pub fn labels(&self) -> Result<Vec<(u32, String)>> {
        let mut out = Vec::new();
        for (k, v) in self.tree(LABELS_TREE)?.iter()? {
            let (Ok(id), Ok(rec)) = (
                <[u8; 4]>::try_from(k.as_ref()),
                serde_json::from_slice::<HumanLabel>(&v),
            ) else {
                bail!(
                    "label record {k:?} in store {} is damaged; set that feature's label again",
                    self.dir().display()
                );
            };
            out.push((u32::from_be_bytes(id), rec.text));
        }
        Ok(out)
    }

    /// Feature `f`'s human label, if a person wrote one.
    pub fn label(&self, f: u32) -> Result<Option<String>> {
        let got = self
            .tree(LABELS_TREE)?
            .get(f.to_be_bytes())
            .with_context(|| {
                format!(
                    "cannot read the label of feature {f} from store {}",
                    self.dir().display()
                )
            })?;
        match got {
            None => Ok(None),
            Some(v) => serde_json::from_slice::<HumanLabel>(&v)
                .map(|r| Some(r.text))
                .with_context(|| {
                    format!(
                        "label of feature {f} in store {} is damaged; set it again",
                        self.dir().display()
                    )
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::RankRule;
    use super::super::manifest::tests::manifest;
    use super::*;

    fn expl(f: u32, model: &str, hash: &str, t: u64) -> Explanation {
        Explanation {
            feature: f,
            text: format!("{model} {hash} {t}"),
            label: None,
            explainer_model: model.into(),
            base_url_host: "127.0.0.1:1".into(),
            prompt_hash: hash.into(),
            example_images: vec![3, 1],
            created_unix: t,
            raw_response: "{}".into(),
            parsed: true,
            usage: Some(TokenUsage {
                prompt_tokens: 5,
                completion_tokens: 2,
                total_tokens: 7,
            }),
            imported_from: None,
        }
    }

    #[test]
    fn put_get_replace_and_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let s = Store::create(&dir, &manifest(300, 3, RankRule::Max)).unwrap();
        s.put_explanation(&expl(7, "m1", "h1", 10)).unwrap();
        s.put_explanation(&expl(7, "m2", "h1", 20)).unwrap();
        s.put_explanation(&expl(256, "m1", "h1", 5)).unwrap();
        s.put_explanation(&expl(7, "m1", "h1", 30)).unwrap(); // replaces the first
        let err = s.put_explanation(&expl(300, "m1", "h1", 1)).unwrap_err();
        assert!(err.to_string().contains("feature 300"), "{err:#}");
        drop(s);
        let s = Store::open(&dir).unwrap();
        let of7 = s.explanations_of(7).unwrap();
        assert_eq!(of7.len(), 2);
        assert_eq!(of7[0].created_unix, 30, "newest first");
        assert_eq!(
            s.explanation(7, "m1", "h1").unwrap().unwrap().text,
            "m1 h1 30"
        );
        assert!(s.explanation(7, "m1", "h2").unwrap().is_none());
        assert_eq!(
            s.latest_explanation(7, Some("m2")).unwrap().unwrap().text,
            "m2 h1 20"
        );
        // Feature 256 shares no key prefix with feature 1 (big-endian ids).
        assert!(s.explanations_of(1).unwrap().is_empty());
        let all: Vec<u32> = s
            .all_explanations()
            .unwrap()
            .iter()
            .map(|e| e.feature)
            .collect();
        assert_eq!(all, vec![7, 7, 256]);
        // Human labels live beside the machine explanations and survive a reopen.
        s.put_label(7, Some("  red circles ")).unwrap();
        s.put_label(256, Some("stripes")).unwrap();
        s.put_label(256, None).unwrap();
        assert!(s.put_label(300, Some("x")).is_err());
        drop(s);
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.labels().unwrap(), vec![(7, "red circles".to_string())]);
        assert_eq!(s.label(7).unwrap().as_deref(), Some("red circles"));
        assert_eq!(s.explanations_of(7).unwrap().len(), 2);
        // The cache's records are untouched by the explanation tree.
        assert_eq!(s.progress().unwrap(), Default::default());
    }
}
