//! The features table's search prompt beyond ids and text: `list:NAME` (a feature list),
//! `near:ID` (the nearest features of ID by decoder direction) and `writes:TEXT` (features whose
//! logit lens raises a token containing TEXT). The last two read the feature pages computed so far.

use crate::tui::app::App;

/// What a search asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Ids, explanations and labels containing the text (lower-cased).
    Text(String),
    /// The features of a list.
    List(String),
    /// The nearest features of one feature.
    Near(u32),
    /// Features whose logit lens raises a token containing the text (lower-cased).
    Writes(String),
}

impl Query {
    /// Parse the search prompt's text.
    pub fn parse(text: &str) -> Query {
        let t = text.trim();
        if let Some(name) = t.strip_prefix("list:") {
            return Query::List(name.trim().to_string());
        }
        if let Some(id) = t
            .strip_prefix("near:")
            .and_then(|i| i.trim().trim_start_matches('#').parse().ok())
        {
            return Query::Near(id);
        }
        if let Some(w) = t.strip_prefix("writes:") {
            return Query::Writes(w.trim().to_lowercase());
        }
        Query::Text(t.to_lowercase())
    }
}

impl App {
    /// The features a `list:`, `near:` or `writes:` search keeps (`None`: a text search).
    pub(crate) fn search_set(&self) -> Option<Vec<u32>> {
        match Query::parse(&self.features.search) {
            Query::Text(_) => None,
            Query::List(name) => Some(
                self.lists
                    .iter()
                    .find(|l| l.name == name)
                    .map(|l| l.entries.iter().map(|e| e.feature).collect())
                    .unwrap_or_default(),
            ),
            Query::Near(id) => Some(self.pages.get(&id).map_or_else(Vec::new, |p| {
                p.decoder_neighbours.iter().map(|n| n.feature).collect()
            })),
            Query::Writes(text) => Some(
                self.pages
                    .values()
                    .filter(|p| {
                        p.logit_lens.raises.iter().any(|t| {
                            t.readable()
                                .is_some_and(|s| s.to_lowercase().contains(&text))
                        })
                    })
                    .map(|p| p.feature)
                    .collect(),
            ),
        }
    }

    /// Why a `near:` or `writes:` search may show nothing: it reads only computed pages.
    pub(crate) fn search_note(&self) -> Option<String> {
        match Query::parse(&self.features.search) {
            Query::Near(id) if !self.pages.contains_key(&id) => Some(format!(
                "feature {id} has no page yet: open it and press w, then search near:{id} again"
            )),
            Query::Writes(_) => Some(format!(
                "writes: searches the {} feature pages computed so far (w on a feature)",
                self.pages.len()
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyCode;

    use super::*;
    use crate::dashboard::{FeaturePage, LogitLens, Neighbour, TokenLogit};
    use crate::tui::testing::{app, code, drive, key, message, typed};

    fn page(feature: u32, raises: &str, near: &[u32]) -> FeaturePage {
        FeaturePage {
            feature,
            sae_fingerprint: "s".into(),
            logit_lens: LogitLens {
                feature,
                raises: vec![TokenLogit {
                    token: 1,
                    text: Some(raises.into()),
                    logit: 1.0,
                }],
                lowers: vec![],
            },
            decoder_neighbours: near
                .iter()
                .map(|&f| Neighbour {
                    feature: f,
                    cosine: 0.5,
                })
                .collect(),
            encoder_neighbours: vec![],
            cofiring: vec![],
            cofiring_images: 0,
        }
    }

    fn search(a: &mut App, text: &str) -> Vec<u32> {
        let mut events = vec![
            key('/'),
            Event::Key(crossterm::event::KeyEvent::new(
                KeyCode::Char('u'),
                crossterm::event::KeyModifiers::CONTROL,
            )),
        ];
        events.extend(typed(text));
        events.push(code(KeyCode::Enter));
        drive(a, events);
        a.features
            .view
            .iter()
            .map(|&i| a.features.rows[i].id)
            .collect()
    }

    use crate::tui::app::Event;

    #[test]
    fn searches_by_what_features_write_and_by_neighbour() {
        assert_eq!(Query::parse(" near:#12 "), Query::Near(12));
        assert_eq!(Query::parse("writes: Red"), Query::Writes("red".into()));
        assert_eq!(Query::parse("Stripes"), Query::Text("stripes".into()));
        let mut a = app(&[1, 2, 3, 4, 5]);
        a.pages.insert(2, page(2, "Ġred", &[4, 5]));
        a.pages.insert(3, page(3, "blue", &[1]));
        assert_eq!(search(&mut a, "near:2"), [4, 5]);
        assert_eq!(search(&mut a, "writes: red"), [2]);
        assert!(message(&a).is_some_and(|m| m.contains("2 feature pages")));
        assert_eq!(search(&mut a, "near:5"), Vec::<u32>::new());
        assert!(message(&a).is_some_and(|m| m.contains("feature 5 has no page yet")));
        assert_eq!(search(&mut a, "4"), [4]);
    }
}
