//! Named feature lists made while browsing, with a note per feature, kept in their own tree.
//! A list leaves the store as the original system's filter file, so it drives `--filter` /
//! `--features` of cache, explain, score and steer, and a filter file comes back in as a list.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{FeatureFilter, Store, unix_now};

/// Name of the sled tree holding feature lists.
pub const LISTS_TREE: &str = "lists";

/// One feature of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// Feature index.
    pub feature: u32,
    /// Why it is on the list, if the user said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A named list of features, in the order they were added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureList {
    /// Its name.
    pub name: String,
    /// Its features.
    pub entries: Vec<ListEntry>,
    /// When it last changed (seconds since the epoch).
    pub updated_unix: u64,
}

impl FeatureList {
    /// The list's features as the original system's filter file for `hookpoint`.
    pub fn filter_json(&self, hookpoint: &str) -> String {
        let ids: Vec<u32> = self.entries.iter().map(|e| e.feature).collect();
        FeatureFilter::seed_json(&ids, hookpoint)
    }
}

/// Refuse names that would not survive a file name or a prompt.
fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.contains(['/', '\\', ':', '\n']) || name.len() > 64 {
        bail!(
            "{name:?} is not a list name: use up to 64 characters, without / \\ : or line breaks"
        );
    }
    Ok(())
}

impl Store {
    /// Add feature `f` to list `name` (made when missing), or change its note; flushed.
    pub fn add_to_list(&self, name: &str, f: u32, note: Option<&str>) -> Result<FeatureList> {
        check_name(name)?;
        self.check_feature(f, "list entry")?;
        let mut list = self.list(name)?.unwrap_or_else(|| FeatureList {
            name: name.to_string(),
            entries: Vec::new(),
            updated_unix: 0,
        });
        let note = note
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from);
        match list.entries.iter_mut().find(|e| e.feature == f) {
            Some(e) => e.note = note.or(e.note.take()),
            None => list.entries.push(ListEntry { feature: f, note }),
        }
        self.put_list(&mut list)?;
        Ok(list)
    }

    /// Take feature `f` off list `name`; an emptied list is deleted. Returns the list left.
    pub fn remove_from_list(&self, name: &str, f: u32) -> Result<Option<FeatureList>> {
        let Some(mut list) = self.list(name)? else {
            return Ok(None);
        };
        list.entries.retain(|e| e.feature != f);
        if list.entries.is_empty() {
            let t = self.tree(LISTS_TREE)?;
            t.remove(name.as_bytes())
                .and_then(|_| t.flush())
                .with_context(|| {
                    format!("cannot delete list {name:?} in {}", self.dir().display())
                })?;
            return Ok(None);
        }
        self.put_list(&mut list)?;
        Ok(Some(list))
    }

    /// Make list `name` hold exactly `features` (a filter file read back in); flushed.
    pub fn replace_list(&self, name: &str, features: &[u32]) -> Result<FeatureList> {
        check_name(name)?;
        for &f in features {
            self.check_feature(f, "list entry")?;
        }
        let old = self.list(name)?;
        let note_of = |f: u32| {
            old.as_ref()
                .and_then(|l| l.entries.iter().find(|e| e.feature == f))
                .and_then(|e| e.note.clone())
        };
        let mut list = FeatureList {
            name: name.to_string(),
            entries: features
                .iter()
                .map(|&f| ListEntry {
                    feature: f,
                    note: note_of(f),
                })
                .collect(),
            updated_unix: 0,
        };
        self.put_list(&mut list)?;
        Ok(list)
    }

    /// List `name`, if there is one.
    pub fn list(&self, name: &str) -> Result<Option<FeatureList>> {
        let got = self
            .tree(LISTS_TREE)?
            .get(name.as_bytes())
            .with_context(|| format!("cannot read list {name:?} from {}", self.dir().display()))?;
        got.map(|v| {
            serde_json::from_slice(&v).with_context(|| {
                format!("list {name:?} in store {} is damaged", self.dir().display())
            })
        })
        .transpose()
    }

    /// Every list, by name.
    pub fn lists(&self) -> Result<Vec<FeatureList>> {
        let mut out = Vec::new();
        for (k, v) in self.tree(LISTS_TREE)?.iter()? {
            out.push(serde_json::from_slice(&v).with_context(|| {
                format!(
                    "list {:?} in store {} is damaged",
                    String::from_utf8_lossy(&k),
                    self.dir().display()
                )
            })?);
        }
        Ok(out)
    }

    fn put_list(&self, list: &mut FeatureList) -> Result<()> {
        list.updated_unix = unix_now();
        let t = self.tree(LISTS_TREE)?;
        let ctx = || {
            format!(
                "cannot write list {:?} to {}",
                list.name,
                self.dir().display()
            )
        };
        t.insert(list.name.as_bytes(), serde_json::to_vec(&*list)?)
            .with_context(ctx)?;
        t.flush().with_context(ctx)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::empty_store;

    #[test]
    fn lists_keep_order_and_notes_and_round_trip_through_the_filter_format() {
        let dir = tempfile::tempdir().unwrap();
        let store = empty_store(dir.path(), 16);
        store.add_to_list("stripes", 9, Some("diagonal")).unwrap();
        store.add_to_list("stripes", 2, None).unwrap();
        // Adding again keeps the place and the note unless a new note is given.
        let l = store.add_to_list("stripes", 9, None).unwrap();
        assert_eq!(
            l.entries,
            [
                ListEntry {
                    feature: 9,
                    note: Some("diagonal".into())
                },
                ListEntry {
                    feature: 2,
                    note: None
                },
            ]
        );
        let json = l.filter_json("model.layers.2");
        assert_eq!(json, "{\"model.layers.2\":[9,2]}\n");
        let back = FeatureFilter::from_seed_json(&json, "model.layers.2").unwrap();
        assert_eq!(back, FeatureFilter::list(vec![2, 9]));
        // Read back in: the features replace the list, notes of kept features stay.
        let l = store.replace_list("stripes", &[2, 9, 4]).unwrap();
        assert_eq!(l.entries[1].note.as_deref(), Some("diagonal"));
        assert_eq!(store.lists().unwrap().len(), 1);
        assert!(
            store.add_to_list("stripes", 16, None).is_err(),
            "outside the SAE"
        );
        assert!(store.add_to_list("a/b", 1, None).is_err());
        for f in [2, 9, 4] {
            store.remove_from_list("stripes", f).unwrap();
        }
        assert_eq!(
            store.list("stripes").unwrap(),
            None,
            "an emptied list is gone"
        );
    }
}
