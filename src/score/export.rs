//! `glint --batch export --format csv|json`: every feature with an explanation, a score or a
//! label, with its statistics, label, newest explanation and newest score per method; the JSON
//! form also carries each feature's page where one was computed.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::Method;
use crate::dashboard::FeaturePage;
use crate::store::{Explanation, PositionRow, RangeBand, Score, Store};

/// One exported feature.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureRow {
    /// Feature index.
    pub feature: u32,
    /// Images it fired on.
    pub fired_images: u64,
    /// Tokens it fired on.
    pub fired_tokens: u64,
    /// Largest activation.
    pub max_activation: f32,
    /// The label a person gave it (the workbench's `L`), if any.
    pub label: Option<String>,
    /// Its newest explanation.
    pub explanation: Option<Explanation>,
    /// Every stored score, newest first.
    pub scores: Vec<Score>,
    /// Its feature page (logit lens, neighbours, co-firing), when one was computed for the
    /// store's SAE (in the workbench, `w` on the feature screen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<FeaturePage>,
    /// Examples across its range: its range sample split into deciles, weakest first (absent
    /// for a store cached without range samples).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub range: Vec<RangeBand>,
    /// Where it fires by kind of position (base, high-res, newline, text): positions scored,
    /// fired on, density and mean activation; absent for a store that did not count them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_position: Option<Vec<PositionRow>>,
}

/// Methods in column order.
const METHODS: [Method; 4] = [
    Method::Iou,
    Method::Clip,
    Method::Detection,
    Method::Fuzzing,
];

/// The rows of every feature that has an explanation, a score or a label, by feature.
pub fn rows(store: &Store) -> Result<Vec<FeatureRow>> {
    let mut labels: BTreeMap<u32, Option<String>> = BTreeMap::new();
    for e in store.all_explanations()? {
        labels.entry(e.feature).or_default();
    }
    for s in store.all_scores()? {
        labels.entry(s.feature).or_default();
    }
    let sae = store.manifest().sae_fingerprint.clone();
    let mut pages: BTreeMap<u32, FeaturePage> = BTreeMap::new();
    for f in store.paged_features()? {
        if let Some(p) = store.page::<FeaturePage>(f, &sae)? {
            labels.entry(f).or_default();
            pages.insert(f, p);
        }
    }
    for (f, label) in store.labels()? {
        labels.insert(f, Some(label));
    }
    let scored = store.progress()?.scored_by_position;
    let mut out = Vec::with_capacity(labels.len());
    for (f, label) in labels {
        let stats = store.feature_stats(f)?.unwrap_or_default();
        let by_position = stats
            .by_position
            .zip(scored)
            .map(|(tallies, scored)| tallies.table(&scored));
        let explanation = store.latest_explanation(f, None)?;
        out.push(FeatureRow {
            feature: f,
            fired_images: stats.fired_images,
            fired_tokens: stats.fired_tokens,
            max_activation: stats.max,
            // A label kept with an explanation by older stores counts when there is no other.
            label: label.or_else(|| explanation.as_ref().and_then(|e| e.label.clone())),
            explanation,
            scores: store.scores_of(f)?,
            page: pages.remove(&f),
            range: store.range_bands(f)?,
            by_position,
        });
    }
    Ok(out)
}

/// Why an export holds no feature, for the message that says so.
pub const EMPTY_EXPORT_REASON: &str = "no feature has an explanation, a score or a label yet \
     (explain with `glint --batch explain`, score with `glint --batch score`, or label with L in \
     the workbench)";

/// A CSV field, quoted when it holds a comma, quote or line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The rows as CSV: statistics, the newest explanation, and per method the newest score's value,
/// failures and samples (empty where there is none).
pub fn to_csv(rows: &[FeatureRow]) -> String {
    let mut head = vec![
        "feature",
        "fired_images",
        "fired_tokens",
        "max_activation",
        "explainer_model",
        "explanation",
        "label",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    for m in METHODS {
        let m = m.name();
        head.extend([m.to_string(), format!("{m}_failures"), format!("{m}_n")]);
    }
    let mut out = head.join(",") + "\n";
    for r in rows {
        let e = r.explanation.as_ref();
        let mut cells = vec![
            r.feature.to_string(),
            r.fired_images.to_string(),
            r.fired_tokens.to_string(),
            r.max_activation.to_string(),
            field(e.map_or("", |e| &e.explainer_model)),
            field(e.map_or("", |e| &e.text)),
            field(r.label.as_deref().unwrap_or("")),
        ];
        for m in METHODS {
            match r.scores.iter().find(|s| s.method == m.name()) {
                Some(s) => cells.extend([
                    s.value.map_or(String::new(), |v| v.to_string()),
                    s.failures.to_string(),
                    s.n.to_string(),
                ]),
                None => cells.extend([String::new(), String::new(), String::new()]),
            }
        }
        out += &cells.join(",");
        out.push('\n');
    }
    out
}

/// Formats of the feature table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// Comma-separated, one feature a line.
    Csv,
    /// A pretty-printed JSON list.
    Json,
}

/// The feature table of `store` in `format`, and how many features it holds.
pub fn render_table(store: &Store, format: TableFormat) -> Result<(String, usize)> {
    let rows = rows(store)?;
    let text = match format {
        TableFormat::Csv => to_csv(&rows),
        TableFormat::Json => serde_json::to_string_pretty(&rows)? + "\n",
    };
    Ok((text, rows.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_fills_methods() {
        let row = FeatureRow {
            feature: 3,
            fired_images: 2,
            fired_tokens: 9,
            max_activation: 1.5,
            label: None,
            explanation: None,
            page: None,
            range: Vec::new(),
            by_position: None,
            scores: vec![Score {
                feature: 3,
                method: "detection".into(),
                value: Some(0.75),
                n: 20,
                failures: 5,
                label: "x".into(),
                explainer_model: "m".into(),
                explanation_hash: "h".into(),
                explanation_created_unix: 0,
                model: "j".into(),
                prompt_hash: "p".into(),
                created_unix: 1,
                details: serde_json::Value::Null,
            }],
        };
        let csv = to_csv(&[row]);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("feature,fired_images") && lines[0].ends_with("fuzzing_n"));
        assert_eq!(lines[1], "3,2,9,1.5,,,,,,,,,,0.75,5,20,,,");
        assert_eq!(field("a, \"b\""), "\"a, \"\"b\"\"\"");
        assert_eq!(lines[0].split(',').count(), lines[1].split(',').count());
    }

    #[test]
    fn labels_alone_make_a_row_and_fill_the_label_column() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::testutil::empty_store(dir.path(), 8);
        store.put_label(4, Some("stripes")).unwrap();
        let rows = rows(&store).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].feature, rows[0].label.as_deref()),
            (4, Some("stripes"))
        );
        let csv = to_csv(&rows);
        assert!(csv.lines().nth(1).unwrap().starts_with("4,"), "{csv}");
        assert!(csv.contains(",stripes,"), "{csv}");
    }
}
