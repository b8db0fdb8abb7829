//! Scores of explanations (IOU, CLIP, detection, fuzzing), kept in their own sled tree.
//!
//! A feature holds at most one score per (method, scorer model, prompt hash); writing the same
//! triple again replaces it, so a changed recipe is stored beside the old one rather than over
//! it. Every write is flushed before it returns, as for explanations.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::util::hash::Fingerprint;

/// Name of the sled tree holding scores.
pub const SCORES_TREE: &str = "scores";

/// One score of one feature's explanation by one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Feature index.
    pub feature: u32,
    /// Scoring method: `iou`, `clip`, `detection` or `fuzzing`.
    pub method: String,
    /// The headline number (mean IOU, mean CLIP score, balanced accuracy); `None` when the
    /// feature could not be scored (e.g. the explainer declined to describe it).
    pub value: Option<f64>,
    /// Samples scored (images, or judged items).
    pub n: usize,
    /// Samples that failed (no mask, unparsable answer, request error), reported apart.
    pub failures: usize,
    /// The label scored: the refined grounding phrase or the explanation text.
    pub label: String,
    /// Explainer model of the explanation scored.
    pub explainer_model: String,
    /// Prompt hash of the explanation scored.
    pub explanation_hash: String,
    /// When the explanation scored was made (with the hash, tells a re-explained feature apart).
    #[serde(default)]
    pub explanation_created_unix: u64,
    /// Scorer: the judge or CLIP model, `ground-truth`, or the grounding service's host.
    pub model: String,
    /// Hash of the scorer's prompt templates and recipe.
    pub prompt_hash: String,
    /// Seconds since the Unix epoch when the score was computed.
    pub created_unix: u64,
    /// Method-specific numbers (per-image IOUs, AUROC, baseline, …).
    #[serde(default)]
    pub details: serde_json::Value,
}

/// Key: feature (big-endian), `/`, method, `/`, fingerprint of (model, prompt hash).
fn score_key(feature: u32, method: &str, model: &str, prompt_hash: &str) -> Vec<u8> {
    let mut k = feature.to_be_bytes().to_vec();
    k.push(b'/');
    k.extend(method.as_bytes());
    k.push(b'/');
    k.extend(
        Fingerprint::new()
            .field(model)
            .field(prompt_hash)
            .hex()
            .as_bytes(),
    );
    k
}

impl Store {
    fn scores_tree(&self) -> Result<sled::Tree> {
        self.tree(SCORES_TREE)
    }

    fn decode_score(&self, k: &[u8], v: &[u8]) -> Result<Score> {
        serde_json::from_slice(v).with_context(|| {
            format!(
                "score record {k:?} in store {} is damaged; score that feature again with --force",
                self.dir().display()
            )
        })
    }

    /// Store `s`, replacing any score of the same feature, method, model and prompt hash; flush.
    pub fn put_score(&self, s: &Score) -> Result<()> {
        if s.feature as usize >= self.manifest().num_latents {
            bail!(
                "feature {} is outside this store's SAE ({} latents); score not stored",
                s.feature,
                self.manifest().num_latents
            );
        }
        if s.method.is_empty() || s.method.contains('/') {
            bail!(
                "score method {:?} must be a non-empty name without '/'",
                s.method
            );
        }
        let tree = self.scores_tree()?;
        let ctx = || {
            format!(
                "cannot write the {} score of feature {} to store {}",
                s.method,
                s.feature,
                self.dir().display()
            )
        };
        let k = score_key(s.feature, &s.method, &s.model, &s.prompt_hash);
        tree.insert(k, serde_json::to_vec(s)?).with_context(ctx)?;
        tree.flush().with_context(ctx)?;
        Ok(())
    }

    /// The score of `f` by `method` with this scorer model and prompt hash, if stored.
    pub fn score(
        &self,
        f: u32,
        method: &str,
        model: &str,
        prompt_hash: &str,
    ) -> Result<Option<Score>> {
        let k = score_key(f, method, model, prompt_hash);
        let got = self.scores_tree()?.get(&k).with_context(|| {
            format!(
                "cannot read the {method} score of feature {f} from store {}",
                self.dir().display()
            )
        })?;
        match got {
            None => Ok(None),
            Some(v) => {
                let s = self.decode_score(&k, &v)?;
                Ok(
                    (s.model == model && s.prompt_hash == prompt_hash && s.method == method)
                        .then_some(s),
                )
            }
        }
    }

    /// Every score of feature `f`, newest first (for the TUI's feature screen).
    pub fn scores_of(&self, f: u32) -> Result<Vec<Score>> {
        let tree = self.scores_tree()?;
        let mut out = Vec::new();
        for kv in tree.scan_prefix(f.to_be_bytes()) {
            let (k, v) =
                kv.with_context(|| format!("cannot scan store {}", self.dir().display()))?;
            out.push(self.decode_score(&k, &v)?);
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.created_unix));
        Ok(out)
    }

    /// The newest score of `f` by `method`, if any (one number per feature and method).
    pub fn latest_score(&self, f: u32, method: &str) -> Result<Option<Score>> {
        Ok(self.scores_of(f)?.into_iter().find(|s| s.method == method))
    }

    /// Every score in the store, by feature.
    pub fn all_scores(&self) -> Result<Vec<Score>> {
        let tree = self.scores_tree()?;
        let mut out = Vec::new();
        for kv in tree.iter() {
            let (k, v) =
                kv.with_context(|| format!("cannot scan store {}", self.dir().display()))?;
            out.push(self.decode_score(&k, &v)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::RankRule;
    use super::super::manifest::tests::manifest;
    use super::*;

    fn score(f: u32, method: &str, model: &str, hash: &str, t: u64) -> Score {
        Score {
            feature: f,
            method: method.into(),
            value: Some(0.25 * t as f64),
            n: 5,
            failures: 1,
            label: "red circle".into(),
            explainer_model: "m".into(),
            explanation_hash: "e1".into(),
            explanation_created_unix: 1,
            model: model.into(),
            prompt_hash: hash.into(),
            created_unix: t,
            details: serde_json::json!({"iou_scores": [0.5, -1.0]}),
        }
    }

    #[test]
    fn put_get_replace_and_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let s = Store::create(&dir, &manifest(300, 3, RankRule::Max)).unwrap();
        s.put_score(&score(7, "iou", "ground-truth", "h1", 1))
            .unwrap();
        s.put_score(&score(7, "detection", "judge", "h2", 2))
            .unwrap();
        s.put_score(&score(7, "iou", "ground-truth", "h9", 3))
            .unwrap();
        s.put_score(&score(256, "iou", "ground-truth", "h1", 4))
            .unwrap();
        s.put_score(&score(7, "iou", "ground-truth", "h1", 5))
            .unwrap(); // replaces the first
        let err = s.put_score(&score(300, "iou", "g", "h", 1)).unwrap_err();
        assert!(err.to_string().contains("feature 300"), "{err:#}");
        assert!(s.put_score(&score(1, "a/b", "g", "h", 1)).is_err());
        drop(s);
        let s = Store::open(&dir).unwrap();
        let of7 = s.scores_of(7).unwrap();
        assert_eq!(of7.len(), 3);
        assert_eq!(of7[0].created_unix, 5, "newest first");
        let got = s.score(7, "iou", "ground-truth", "h1").unwrap().unwrap();
        assert_eq!(got, score(7, "iou", "ground-truth", "h1", 5));
        assert!(s.score(7, "iou", "ground-truth", "h2").unwrap().is_none());
        assert!(s.score(7, "clip", "ground-truth", "h1").unwrap().is_none());
        assert_eq!(
            s.latest_score(7, "detection")
                .unwrap()
                .unwrap()
                .created_unix,
            2
        );
        assert!(s.latest_score(7, "fuzzing").unwrap().is_none());
        assert!(s.scores_of(1).unwrap().is_empty());
        let all: Vec<u32> = s.all_scores().unwrap().iter().map(|x| x.feature).collect();
        assert_eq!(all, vec![7, 7, 7, 256]);
        assert!(s.all_explanations().unwrap().is_empty(), "trees are apart");
    }
}
