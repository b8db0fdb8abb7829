//! The one grammar of a feature list, shared by every command and the workbench: `all`, a range
//! `A..B` or `A..=B`, a list `3,17,42`, or the original system's filter JSON file.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::FeatureFilter;

impl FeatureFilter {
    /// Parse a feature list as `--features` takes it; a filter file is read for `hookpoint`.
    pub fn parse(text: &str, hookpoint: &str) -> Result<Self> {
        let t = text.trim();
        if t == "all" {
            return Ok(FeatureFilter::All);
        }
        let path = Path::new(t);
        // A file first: a relative path may well contain `..`.
        if path.is_file() || t.ends_with(".json") {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read the filter file", path.display()))?;
            return FeatureFilter::from_seed_json(&json, hookpoint)
                .with_context(|| format!("{}: bad filter file", path.display()));
        }
        if t.contains("..") {
            return FeatureFilter::parse_range(t);
        }
        let mut list = Vec::new();
        for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<u32>() {
                Ok(f) => list.push(f),
                Err(_) => bail!(
                    "--features {text:?}: not `all`, a range like 0..100, a list like 3,17 or a \
                     filter JSON file ({part:?} is not a feature index)"
                ),
            }
        }
        if list.is_empty() {
            bail!("--features {text:?} names no feature");
        }
        Ok(FeatureFilter::list(list))
    }

    /// The named features in order, for commands that visit each one (`all` is refused: such
    /// commands need the features named).
    pub fn to_list(&self, text: &str) -> Result<Vec<u32>> {
        let features: Vec<u32> = match self {
            FeatureFilter::List(list) => list.clone(),
            FeatureFilter::Range(a, b) => (*a..*b).collect(),
            FeatureFilter::All => bail!("--features {text:?} selects every feature; name them"),
        };
        if features.is_empty() {
            bail!("--features {text:?} names no feature");
        }
        Ok(features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_errors_say_what_is_accepted() {
        assert_eq!(
            FeatureFilter::parse("all", "h").unwrap(),
            FeatureFilter::All
        );
        assert_eq!(
            FeatureFilter::parse("2..5", "h").unwrap(),
            FeatureFilter::Range(2, 5)
        );
        assert_eq!(
            FeatureFilter::parse("9, 3,3", "h").unwrap(),
            FeatureFilter::List(vec![3, 9])
        );
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("filter.json");
        std::fs::write(&f, r#"{"model.layers.24": [4, 1]}"#).unwrap();
        assert_eq!(
            FeatureFilter::parse(f.to_str().unwrap(), "model.layers.24").unwrap(),
            FeatureFilter::List(vec![1, 4])
        );
        assert_eq!(
            FeatureFilter::parse("7", "h").unwrap(),
            FeatureFilter::List(vec![7])
        );
        let wrong = format!(
            "{:#}",
            FeatureFilter::parse(f.to_str().unwrap(), "x").unwrap_err()
        );
        assert!(wrong.contains("filter.json"), "{wrong}");
        let e = FeatureFilter::parse("some", "h").unwrap_err().to_string();
        assert!(
            e.contains("a range like") && e.contains("not a feature index"),
            "{e}"
        );
        assert!(FeatureFilter::parse("", "h").is_err());
        assert!(FeatureFilter::All.to_list("all").is_err());
        assert_eq!(
            FeatureFilter::Range(4, 7).to_list("4..7").unwrap(),
            vec![4, 5, 6]
        );
    }
}
