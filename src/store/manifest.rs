//! The store manifest: what a cache was computed from, and the checks that stop runs mixing.

use crate::session::encode::TokenSelection;
use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Version of the on-disk layout described in the [`super`] module docs.
pub const SCHEMA_VERSION: u32 = 4;

/// The glint version stamped into new manifests.
pub const GLINT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How the top examples of a feature are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RankRule {
    /// The largest activation over all of the image's tokens.
    #[default]
    #[serde(rename = "max")]
    Max,
    /// The mean over the base-view tokens, zeros included (the original system's rule).
    #[serde(rename = "mean-base")]
    MeanBase,
}

impl RankRule {
    /// The name used on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            RankRule::Max => "max",
            RankRule::MeanBase => "mean-base",
        }
    }
}

impl fmt::Display for RankRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RankRule {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "max" => Ok(RankRule::Max),
            "mean-base" => Ok(RankRule::MeanBase),
            _ => bail!("unknown rank rule {s:?}: use \"max\" or \"mean-base\""),
        }
    }
}

/// Which features a store keeps. The filter limits what is stored, not what is computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FeatureFilter {
    /// Every feature.
    #[default]
    All,
    /// Features in the half-open range `start..end`.
    Range(u32, u32),
    /// An explicit list, kept sorted and without duplicates.
    List(Vec<u32>),
}

impl FeatureFilter {
    /// Parse the original system's filter file (`{"model.layers.24": [0, 1, 2]}`) for one hookpoint.
    pub fn from_seed_json(text: &str, hookpoint: &str) -> Result<Self> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).context(
            "a feature filter must be a JSON object like {\"model.layers.24\": [0, 1, 2]}",
        )?;
        let Some(list) = map.get(hookpoint) else {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            bail!(
                "the feature filter has no entry for hookpoint {hookpoint:?}; it lists {keys:?}. \
                 Add a \"{hookpoint}\" key or pick one of those hookpoints"
            );
        };
        let items = list.as_array().with_context(|| {
            format!("filter entry {hookpoint:?} must be a list of feature indices")
        })?;
        let mut features = Vec::with_capacity(items.len());
        for item in items {
            let f = item
                .as_u64()
                .filter(|&f| f <= u64::from(u32::MAX))
                .with_context(|| {
                    format!("filter entry {hookpoint:?} holds {item}, which is not a feature index")
                })?;
            features.push(f as u32);
        }
        Ok(Self::list(features))
    }

    /// `features` as the original system's filter file for one hookpoint (the inverse of
    /// [`FeatureFilter::from_seed_json`]).
    pub fn seed_json(features: &[u32], hookpoint: &str) -> String {
        let mut map = serde_json::Map::new();
        map.insert(hookpoint.to_string(), serde_json::json!(features));
        let mut text = serde_json::Value::Object(map).to_string();
        text.push('\n');
        text
    }

    /// A list filter, sorted and de-duplicated.
    pub fn list(mut features: Vec<u32>) -> Self {
        features.sort_unstable();
        features.dedup();
        FeatureFilter::List(features)
    }

    /// Parse `start..end` (half-open) or `start..=end` (inclusive), as given to `--features`.
    pub fn parse_range(text: &str) -> Result<Self> {
        let bad =
            || format!("--features {text:?} is not a range; write it like 0..4096 or 0..=4095");
        let (a, b, inclusive) = if let Some((a, b)) = text.split_once("..=") {
            (a, b, true)
        } else if let Some((a, b)) = text.split_once("..") {
            (a, b, false)
        } else {
            bail!(bad());
        };
        let start: u32 = a.trim().parse().with_context(bad)?;
        let end: u32 = b.trim().parse().with_context(bad)?;
        let end = if inclusive {
            end.checked_add(1).with_context(bad)?
        } else {
            end
        };
        if start >= end {
            bail!("--features {text:?} is empty; the end must be past the start");
        }
        Ok(FeatureFilter::Range(start, end))
    }

    /// Whether feature `f` is kept.
    pub fn contains(&self, f: u32) -> bool {
        match self {
            FeatureFilter::All => true,
            FeatureFilter::Range(a, b) => (*a..*b).contains(&f),
            FeatureFilter::List(list) => list.binary_search(&f).is_ok(),
        }
    }

    /// Check that every named feature exists in an SAE with `num_latents` latents.
    pub fn check(&self, num_latents: usize) -> Result<()> {
        let largest = match self {
            FeatureFilter::All => return Ok(()),
            FeatureFilter::Range(_, b) => b.checked_sub(1),
            FeatureFilter::List(list) => list.last().copied(),
        };
        if let Some(f) = largest
            && f as usize >= num_latents
        {
            bail!(
                "the feature filter names feature {f}, but the SAE has only {num_latents} latents"
            );
        }
        Ok(())
    }
}

/// Everything a store was computed from; two stores mix only when their manifests agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of the store ([`SCHEMA_VERSION`] when written by this build).
    pub schema_version: u32,
    /// The glint version that created the store ([`GLINT_VERSION`]).
    pub glint_version: String,
    /// Model id or directory as given by the user.
    pub model_id: String,
    /// Hash of the model config and weights index.
    pub model_fingerprint: String,
    /// SAE id or directory as given by the user.
    pub sae_id: String,
    /// Hash of the SAE config and weights.
    pub sae_fingerprint: String,
    /// Hooked module name, e.g. `model.layers.24`.
    pub hookpoint: String,
    /// Language-model layer of the hookpoint.
    pub layer: usize,
    /// Number of SAE latents (features).
    pub num_latents: usize,
    /// Top-k of the SAE.
    pub k: usize,
    /// Dataset id or directory.
    pub dataset: String,
    /// Hash of the dataset's image list (and split).
    pub dataset_fingerprint: String,
    /// Preprocessing settings (pinpoints, view size, mean/std, …) as written by the cache job.
    pub preprocessing: serde_json::Value,
    /// Ranking rule of the top examples.
    pub rank: RankRule,
    /// Examples kept per feature.
    pub top_n: usize,
    /// `(i, n)` for shard `i` of `n` (0-based), or `None` for a whole run.
    pub shard: Option<(usize, usize)>,
    /// Features the store keeps.
    pub features: FeatureFilter,
    /// Which positions were scored (stores made before the choice existed scored image tokens).
    #[serde(default)]
    pub tokens: TokenSelection,
    /// Firing images each feature keeps as a uniform sample across its activation range (see
    /// `store::range_sample`); 0, as in stores made before the sample existed, keeps none.
    #[serde(default)]
    pub range_sample: usize,
}

impl Manifest {
    /// The manifest of a store that benchmarks fill with synthetic data: `num_latents`
    /// features of top-`k` codes, `sae_id` naming what made them.
    pub fn synthetic(sae_id: String, num_latents: usize, k: usize, top_n: usize) -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            glint_version: GLINT_VERSION.to_string(),
            model_id: "synthetic".into(),
            model_fingerprint: String::new(),
            sae_id,
            sae_fingerprint: String::new(),
            hookpoint: "synthetic".into(),
            layer: 0,
            num_latents,
            k,
            dataset: "synthetic".into(),
            dataset_fingerprint: String::new(),
            preprocessing: serde_json::Value::Null,
            rank: RankRule::Max,
            top_n,
            shard: None,
            features: FeatureFilter::All,
            tokens: Default::default(),
            range_sample: 0,
        }
    }

    /// Check the fields that make a manifest usable on its own.
    pub fn validate(&self) -> Result<()> {
        if self.schema_version != SCHEMA_VERSION {
            bail!(StoreError::SchemaVersion {
                path: "(new manifest)".into(),
                found: self.schema_version,
                expected: SCHEMA_VERSION,
            });
        }
        if self.top_n == 0 {
            bail!("top_n is 0; keep at least one example per feature");
        }
        if self.num_latents == 0 || self.num_latents > u32::MAX as usize {
            bail!("num_latents {} is out of range", self.num_latents);
        }
        if let Some((i, n)) = self.shard
            && i >= n
        {
            bail!("shard {i}/{n} does not exist; shards are numbered 0..{n}");
        }
        self.features.check(self.num_latents)
    }

    /// Fail unless `other` describes the same run, naming the first differing field and both values.
    pub fn compatible_with(&self, other: &Manifest) -> Result<()> {
        self.compare(other, false)
    }

    /// As [`Manifest::compatible_with`], but shards of one run may differ in `shard`.
    pub fn merge_compatible_with(&self, other: &Manifest) -> Result<()> {
        self.compare(other, true)
    }

    fn compare(&self, other: &Manifest, ignore_shard: bool) -> Result<()> {
        fn field<T: Serialize + PartialEq>(name: &str, a: &T, b: &T) -> Result<()> {
            if a == b {
                return Ok(());
            }
            let show = |v: &T| serde_json::to_string(v).unwrap_or_else(|_| "?".into());
            Err(StoreError::ManifestMismatch {
                field: name.to_string(),
                ours: show(a),
                theirs: show(b),
            }
            .into())
        }
        let (a, b) = (self, other);
        field("schema_version", &a.schema_version, &b.schema_version)?;
        field("glint_version", &a.glint_version, &b.glint_version)?;
        field("model_id", &a.model_id, &b.model_id)?;
        field(
            "model_fingerprint",
            &a.model_fingerprint,
            &b.model_fingerprint,
        )?;
        field("sae_id", &a.sae_id, &b.sae_id)?;
        field("sae_fingerprint", &a.sae_fingerprint, &b.sae_fingerprint)?;
        field("hookpoint", &a.hookpoint, &b.hookpoint)?;
        field("layer", &a.layer, &b.layer)?;
        field("num_latents", &a.num_latents, &b.num_latents)?;
        field("k", &a.k, &b.k)?;
        field("dataset", &a.dataset, &b.dataset)?;
        field(
            "dataset_fingerprint",
            &a.dataset_fingerprint,
            &b.dataset_fingerprint,
        )?;
        field("preprocessing", &a.preprocessing, &b.preprocessing)?;
        field("rank", &a.rank, &b.rank)?;
        field("top_n", &a.top_n, &b.top_n)?;
        if !ignore_shard {
            field("shard", &a.shard, &b.shard)?;
        }
        field("features", &a.features, &b.features)?;
        field("tokens", &a.tokens, &b.tokens)?;
        field("range_sample", &a.range_sample, &b.range_sample)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small manifest for tests.
    pub(crate) fn manifest(num_latents: usize, top_n: usize, rank: RankRule) -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            glint_version: GLINT_VERSION.into(),
            model_id: "sample/tiny-llava".into(),
            model_fingerprint: "00aa".into(),
            sae_id: "sample/tiny-sae".into(),
            sae_fingerprint: "00bb".into(),
            hookpoint: "model.layers.2".into(),
            layer: 2,
            num_latents,
            k: 4,
            dataset: "sample/shapes".into(),
            dataset_fingerprint: "00cc".into(),
            preprocessing: serde_json::json!({"tile_px": 336}),
            rank,
            top_n,
            shard: None,
            features: FeatureFilter::All,
            tokens: Default::default(),
            range_sample: 3,
        }
    }

    #[test]
    fn mismatch_names_field_and_values() {
        let a = manifest(64, 5, RankRule::Max);
        let mut b = a.clone();
        b.sae_fingerprint = "ffff".into();
        b.layer = 3;
        let err = a.compatible_with(&b).unwrap_err();
        let msg = format!("{err:#}");
        // sae_fingerprint comes before layer in the field order.
        assert!(msg.contains("sae_fingerprint"), "{msg}");
        assert!(msg.contains("00bb") && msg.contains("ffff"), "{msg}");
        match err.downcast_ref::<StoreError>() {
            Some(StoreError::ManifestMismatch { field, .. }) => {
                assert_eq!(field, "sae_fingerprint")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn shard_differs_only_for_merge() {
        let a = manifest(64, 5, RankRule::Max);
        let mut b = a.clone();
        b.shard = Some((1, 2));
        assert!(
            a.compatible_with(&b)
                .unwrap_err()
                .to_string()
                .contains("shard")
        );
        a.merge_compatible_with(&b).unwrap();
        b.rank = RankRule::MeanBase;
        let msg = a.merge_compatible_with(&b).unwrap_err().to_string();
        assert!(msg.contains("rank") && msg.contains("mean-base"), "{msg}");
    }

    #[test]
    fn rank_rule_names() {
        assert_eq!(
            serde_json::to_string(&RankRule::MeanBase).unwrap(),
            "\"mean-base\""
        );
        assert_eq!(
            serde_json::from_str::<RankRule>("\"max\"").unwrap(),
            RankRule::Max
        );
        assert_eq!("mean-base".parse::<RankRule>().unwrap(), RankRule::MeanBase);
        assert!("mean".parse::<RankRule>().is_err());
    }

    #[test]
    fn seed_filter_json() {
        let f = FeatureFilter::from_seed_json(
            r#"{"model.layers.24": [5, 1, 2, 1]}"#,
            "model.layers.24",
        )
        .unwrap();
        assert_eq!(f, FeatureFilter::List(vec![1, 2, 5]));
        assert!(f.contains(5) && f.contains(1) && !f.contains(3));
        let err = FeatureFilter::from_seed_json(r#"{"model.layers.24": [0]}"#, "model.layers.2")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.layers.2\"") && err.contains("[\"model.layers.24\"]"),
            "{err}"
        );
        assert!(
            FeatureFilter::from_seed_json(r#"{"model.layers.24": [-1]}"#, "model.layers.24")
                .is_err()
        );
        assert!(FeatureFilter::from_seed_json("[1, 2]", "model.layers.24").is_err());
    }

    #[test]
    fn ranges() {
        let f = FeatureFilter::parse_range("0..4096").unwrap();
        assert_eq!(f, FeatureFilter::Range(0, 4096));
        assert!(f.contains(0) && f.contains(4095) && !f.contains(4096));
        assert_eq!(
            FeatureFilter::parse_range("3..=5").unwrap(),
            FeatureFilter::Range(3, 6)
        );
        for bad in ["4..4", "5..2", "a..3", "12", "..3"] {
            assert!(FeatureFilter::parse_range(bad).is_err(), "{bad}");
        }
        assert!(FeatureFilter::Range(0, 65).check(64).is_err());
        FeatureFilter::Range(0, 64).check(64).unwrap();
        assert!(FeatureFilter::list(vec![64]).check(64).is_err());
    }
}
