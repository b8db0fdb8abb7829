//! Plumbing shared by the store's per-feature JSON trees (explanations, scores): keys, bounds
//! checks, flushed writes, reads and scans, so each tree's module says only what its records are.

use anyhow::{Context, Result, bail};
use serde::{Serialize, de::DeserializeOwned};

use super::Store;
use crate::util::hash::Fingerprint;

/// A sled tree of JSON records whose keys start with the big-endian feature id.
pub(super) struct JsonTree {
    /// Name of the sled tree.
    pub name: &'static str,
    /// What one record is called in messages (`score`, `explanation`).
    pub record: &'static str,
    /// What the user should do about a damaged record.
    pub repair: &'static str,
}

/// Key: feature (big-endian, so a feature's records are adjacent and `1` is no prefix of `256`),
/// then `/` and each of `path`, then `/` and the fingerprint of (model, prompt hash).
pub(super) fn feature_key(feature: u32, path: &[&str], model: &str, prompt_hash: &str) -> Vec<u8> {
    let mut k = feature.to_be_bytes().to_vec();
    for part in path {
        k.push(b'/');
        k.extend(part.as_bytes());
    }
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
    /// Refuse a feature outside this store's SAE; `record` names what was not stored.
    pub(super) fn check_feature(&self, f: u32, record: &str) -> Result<()> {
        let n = self.manifest().num_latents;
        if f as usize >= n {
            bail!("feature {f} is outside this store's SAE ({n} latents); {record} not stored");
        }
        Ok(())
    }

    /// Write `value` under `key` of `tree` and flush, so a paid-for record survives a kill;
    /// `what` names it in the error (`explanation`, `iou score`).
    pub(super) fn put_record<T: Serialize>(
        &self,
        tree: &JsonTree,
        key: Vec<u8>,
        value: &T,
        f: u32,
        what: &str,
    ) -> Result<()> {
        let t = self.tree(tree.name)?;
        let ctx = || {
            format!(
                "cannot write the {what} of feature {f} to store {}",
                self.dir().display()
            )
        };
        t.insert(key, serde_json::to_vec(value)?)
            .with_context(ctx)?;
        t.flush().with_context(ctx)?;
        Ok(())
    }

    /// The record under `key` of `tree`, if any; `what` names it in the error.
    pub(super) fn get_record<T: DeserializeOwned>(
        &self,
        tree: &JsonTree,
        key: &[u8],
        f: u32,
        what: &str,
    ) -> Result<Option<T>> {
        let got = self.tree(tree.name)?.get(key).with_context(|| {
            format!(
                "cannot read the {what} of feature {f} from store {}",
                self.dir().display()
            )
        })?;
        got.map(|v| self.decode_record(tree, key, &v)).transpose()
    }

    /// Every record of `tree` in key order: those of one feature, or all of them.
    pub(super) fn scan_records<T: DeserializeOwned>(
        &self,
        tree: &JsonTree,
        feature: Option<u32>,
    ) -> Result<Vec<T>> {
        let t = self.tree(tree.name)?;
        let iter = match feature {
            Some(f) => t.scan_prefix(f.to_be_bytes()),
            None => t.iter(),
        };
        let mut out = Vec::new();
        for (k, v) in iter? {
            out.push(self.decode_record(tree, &k, &v)?);
        }
        Ok(out)
    }

    fn decode_record<T: DeserializeOwned>(&self, tree: &JsonTree, k: &[u8], v: &[u8]) -> Result<T> {
        serde_json::from_slice(v).with_context(|| {
            format!(
                "{} record {k:?} in store {} is damaged; {}",
                tree.record,
                self.dir().display(),
                tree.repair
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::RankRule;
    use super::super::manifest::tests::manifest;
    use super::*;

    const T: JsonTree = JsonTree {
        name: "codec-test",
        record: "thing",
        repair: "write it again",
    };

    #[test]
    fn keys_group_by_feature_and_path() {
        let a = feature_key(1, &[], "m", "h");
        let b = feature_key(1, &["iou"], "m", "h");
        assert_eq!(&a[..5], &[0, 0, 0, 1, b'/']);
        assert_eq!(&b[..9], b"\0\0\0\x01/iou/");
        assert_ne!(
            feature_key(1, &[], "m", "h"),
            feature_key(1, &[], "m", "h2")
        );
        assert!(!feature_key(256, &[], "m", "h").starts_with(&1u32.to_be_bytes()));
    }

    #[test]
    fn put_get_scan_and_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::create(&tmp.path().join("s"), &manifest(10, 3, RankRule::Max)).unwrap();
        let err = s.check_feature(10, "thing").unwrap_err().to_string();
        assert!(err.contains("feature 10 is outside") && err.contains("thing not stored"));
        s.check_feature(9, "thing").unwrap();
        s.put_record(&T, feature_key(2, &[], "m", "h"), &"two", 2, "thing")
            .unwrap();
        s.put_record(&T, feature_key(1, &[], "m", "h"), &"one", 1, "thing")
            .unwrap();
        let got: Option<String> = s
            .get_record(&T, &feature_key(2, &[], "m", "h"), 2, "thing")
            .unwrap();
        assert_eq!(got.as_deref(), Some("two"));
        let none: Option<String> = s
            .get_record(&T, &feature_key(3, &[], "m", "h"), 3, "thing")
            .unwrap();
        assert!(none.is_none());
        let all: Vec<String> = s.scan_records(&T, None).unwrap();
        assert_eq!(all, vec!["one", "two"]);
        let of2: Vec<String> = s.scan_records(&T, Some(2)).unwrap();
        assert_eq!(of2, vec!["two"]);
        s.tree(T.name)
            .unwrap()
            .insert([0, 0, 0, 5], &b"{"[..])
            .unwrap();
        let err = s.scan_records::<String>(&T, None).unwrap_err().to_string();
        assert!(
            err.contains("thing record [0, 0, 0, 5]") && err.ends_with("damaged; write it again"),
            "{err}"
        );
    }
}
