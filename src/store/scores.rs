//! Scores of explanations (IOU, CLIP, detection, fuzzing), kept in their own sled tree.
//!
//! A feature holds at most one score per (method, scorer model, prompt hash); writing the same
//! triple again replaces it, so a changed recipe is stored beside the old one rather than over
//! it. Every write is flushed before it returns, as for explanations.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::Store;
use super::tree_codec::{JsonTree, feature_key};

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

/// Where scores live and how their damage is reported.
const SCORES: JsonTree = JsonTree {
    name: SCORES_TREE,
    record: "score",
    repair: "score that feature again with --force",
};

/// Key: feature (big-endian), `/`, method, `/`, fingerprint of (model, prompt hash).
fn score_key(feature: u32, method: &str, model: &str, prompt_hash: &str) -> Vec<u8> {
    feature_key(feature, &[method], model, prompt_hash)
}

impl Store {
    /// Store `s`, replacing any score of the same feature, method, model and prompt hash; flush.
    pub fn put_score(&self, s: &Score) -> Result<()> {
        self.check_feature(s.feature, "score")?;
        if s.method.is_empty() || s.method.contains('/') {
            bail!(
                "score method {:?} must be a non-empty name without '/'",
                s.method
            );
        }
        let k = score_key(s.feature, &s.method, &s.model, &s.prompt_hash);
        self.put_record(&SCORES, k, s, s.feature, &format!("{} score", s.method))
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
        let got: Option<Score> = self.get_record(&SCORES, &k, f, &format!("{method} score"))?;
        // Guards against a fingerprint collision between two (model, hash) pairs.
        Ok(got.filter(|s| s.model == model && s.prompt_hash == prompt_hash && s.method == method))
    }

    /// Every score of feature `f`, newest first (for the TUI's feature screen).
    pub fn scores_of(&self, f: u32) -> Result<Vec<Score>> {
        let mut out: Vec<Score> = self.scan_records(&SCORES, Some(f))?;
        out.sort_by_key(|s| std::cmp::Reverse(s.created_unix));
        Ok(out)
    }

    /// The newest score of `f` by `method`, if any (one number per feature and method).
    pub fn latest_score(&self, f: u32, method: &str) -> Result<Option<Score>> {
        Ok(self.scores_of(f)?.into_iter().find(|s| s.method == method))
    }

    /// Every score in the store, by feature.
    pub fn all_scores(&self) -> Result<Vec<Score>> {
        self.scan_records(&SCORES, None)
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
