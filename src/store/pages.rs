//! Feature pages (logit lens, neighbours, co-firing) kept beside the cache in their own tree,
//! keyed by feature and the SAE they were computed with: a page is computed once, on the model's
//! device, and opens at once after. Pages are derived data: merges do not copy them, and a
//! damaged one is computed again.

use anyhow::Result;
use serde::{Serialize, de::DeserializeOwned};

use super::Store;
use super::tree_codec::{JsonTree, feature_key};

/// Name of the sled tree holding feature pages.
pub const PAGES_TREE: &str = "pages";

const PAGES: JsonTree = JsonTree {
    name: PAGES_TREE,
    record: "feature page",
    repair: "open the feature again to compute it anew",
};

fn key(f: u32, sae_fingerprint: &str) -> Vec<u8> {
    feature_key(f, &["page"], sae_fingerprint, "")
}

impl Store {
    /// Keep feature `f`'s page, computed with the SAE of `sae_fingerprint`, and flush.
    pub fn put_page<T: Serialize>(&self, f: u32, sae_fingerprint: &str, page: &T) -> Result<()> {
        self.check_feature(f, "feature page")?;
        self.put_record(&PAGES, key(f, sae_fingerprint), page, f, "feature page")
    }

    /// The features that have a page kept (for any SAE), in order.
    pub fn paged_features(&self) -> Result<Vec<u32>> {
        let mut out: Vec<u32> = Vec::new();
        for (k, _) in self.tree(PAGES_TREE)?.iter()? {
            if let Ok(id) = <[u8; 4]>::try_from(&k[..4.min(k.len())]) {
                let id = u32::from_be_bytes(id);
                if out.last() != Some(&id) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Feature `f`'s page computed with the SAE of `sae_fingerprint`, if one was kept; a damaged
    /// record reads as none, so it is computed again.
    pub fn page<T: DeserializeOwned>(&self, f: u32, sae_fingerprint: &str) -> Result<Option<T>> {
        match self.get_record(&PAGES, &key(f, sae_fingerprint), f, "feature page") {
            Err(e) if format!("{e:#}").contains("is damaged") => Ok(None),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testutil::empty_store;

    #[test]
    fn pages_are_kept_per_feature_and_sae() {
        let dir = tempfile::tempdir().unwrap();
        let store = empty_store(dir.path(), 8);
        let page = serde_json::json!({"feature": 3, "raises": [1, 2]});
        store.put_page(3, "sae-a", &page).unwrap();
        let got: Option<serde_json::Value> = store.page(3, "sae-a").unwrap();
        assert_eq!(got, Some(page));
        let other: Option<serde_json::Value> = store.page(3, "sae-b").unwrap();
        assert_eq!(other, None, "a page of another SAE is not this one's");
        let none: Option<serde_json::Value> = store.page(4, "sae-a").unwrap();
        assert_eq!(none, None);
        store.put_page(3, "sae-b", &0).unwrap();
        store.put_page(1, "sae-a", &0).unwrap();
        assert_eq!(store.paged_features().unwrap(), [1, 3]);
        assert!(store.put_page(8, "sae-a", &1).is_err(), "outside the SAE");
        // A record of the wrong shape is computed again, not an error.
        store.put_page(5, "sae-a", &"not a page").unwrap();
        let bad: Option<Vec<u32>> = store.page(5, "sae-a").unwrap();
        assert_eq!(bad, None);
    }
}
