//! The features table: moving, sorting, filtering, and opening a feature.

use crate::tui::app::{App, Column, Effect, PageState, Screen};
use crate::tui::data::FeatureRow;
use crate::tui::keymap::Action;
use crate::tui::update::step;

impl App {
    pub(crate) fn features_action(&mut self, a: Action) -> Vec<Effect> {
        let len = self.features.view.len();
        let sel = self.features.sel;
        let page = self.page();
        self.features.sel = match a {
            Action::Up => step(sel, len, -1),
            Action::Down => step(sel, len, 1),
            Action::PageUp => step(sel, len, -page),
            Action::PageDown => step(sel, len, page),
            Action::First => 0,
            Action::Last => len.saturating_sub(1),
            Action::Open | Action::Right => return self.open_selected(),
            Action::Label | Action::Explain => {
                // Both act on the selected feature, as on its own screen.
                return match self.selected_row().map(|r| r.id) {
                    Some(id) if a == Action::Label => self.label_prompt(id),
                    Some(id) => self.explain(id),
                    None => vec![],
                };
            }
            Action::SortNext => {
                self.sort_by((self.features.sort.0 + 1) % Column::ALL.len());
                return vec![];
            }
            Action::SortReverse => {
                self.features.sort.1 = !self.features.sort.1;
                self.show_sorted();
                return vec![];
            }
            _ => sel,
        };
        vec![]
    }

    /// Sort by column `col`: numbers largest first, id and text ascending; the same column
    /// again reverses the order.
    pub(crate) fn sort_by(&mut self, col: usize) {
        let (cur, desc) = self.features.sort;
        self.features.sort = if col == cur {
            (col, !desc)
        } else {
            (
                col,
                !matches!(Column::ALL[col], Column::Id | Column::Explanation),
            )
        };
        self.show_sorted();
    }

    /// After a new order: show its top, as the point of sorting is what now comes first.
    fn show_sorted(&mut self) {
        self.refresh_view();
        self.features.sel = 0;
    }

    /// Show feature `id`; loads it unless it is already shown, and asks for its neighbours in
    /// the table's order to be read ahead so that next / previous is instant.
    pub(crate) fn open_feature(&mut self, id: u32) -> Vec<Effect> {
        self.screen = Screen::Feature;
        if self.feature.id == Some(id) && self.feature.detail.is_some() {
            return vec![];
        }
        self.feature.id = Some(id);
        self.feature.detail = None;
        self.feature.sel = 0;
        self.feature.full = false;
        self.feature.full_picture = None;
        self.feature.page_sel = 0;
        // The page is read from the store at once, and computed only where it is shown.
        let compute = self.feature.show_page;
        self.feature.page = if compute {
            PageState::Loading
        } else {
            PageState::None
        };
        let fs = &self.features;
        let near: Vec<u32> = fs
            .view
            .iter()
            .position(|&i| fs.rows[i].id == id)
            .map(|p| {
                [p.checked_sub(1), Some(p + 1)]
                    .into_iter()
                    .flatten()
                    .filter_map(|q| fs.view.get(q).map(|&i| fs.rows[i].id))
                    .collect()
            })
            .unwrap_or_default();
        let mut out = vec![Effect::LoadFeature(id), Effect::LoadPage { id, compute }];
        if !near.is_empty() {
            out.push(Effect::Prefetch(near));
        }
        out
    }

    pub(crate) fn open_selected(&mut self) -> Vec<Effect> {
        match self.selected_row().map(|r| r.id) {
            Some(id) => self.open_feature(id),
            None => {
                self.message = Some(("no feature selected".into(), false));
                vec![]
            }
        }
    }

    /// The jump prompt: select feature `text` in the table (clearing filters that hide it) and
    /// open it.
    pub(crate) fn jump(&mut self, text: &str) -> Vec<Effect> {
        match text.trim_start_matches('#').parse::<u32>() {
            Ok(id) if self.row(id).is_some() => {
                let rows = &self.features.rows;
                if !self.features.view.iter().any(|&i| rows[i].id == id) {
                    self.features.search.clear();
                    self.features.density = None;
                    self.refresh_view();
                }
                let rows = &self.features.rows;
                self.features.sel = self
                    .features
                    .view
                    .iter()
                    .position(|&i| rows[i].id == id)
                    .unwrap_or(0);
                self.open_feature(id)
            }
            Ok(id) => {
                let text = self
                    .out_of_range(id)
                    .unwrap_or_else(|| format!("feature {id} never fired in this store"));
                self.message = Some((text, true));
                vec![]
            }
            Err(_) => {
                self.message = Some((format!("{text:?} is not a feature number"), true));
                vec![]
            }
        }
    }

    /// New rows from a store another job is writing: the view rebuilt around the selected
    /// feature, and the feature on screen read again (its examples may have changed).
    pub(crate) fn on_store_grew(&mut self, rows: Vec<FeatureRow>, title: String) -> Vec<Effect> {
        let keep = self.selected_row().map(|r| r.id);
        // The old view indexes the old rows.
        self.features.view.clear();
        self.features.rows = rows;
        self.title = title;
        self.refresh_view();
        if let Some(pos) = keep.and_then(|id| {
            let rows = &self.features.rows;
            self.features.view.iter().position(|&i| rows[i].id == id)
        }) {
            self.features.sel = pos;
        }
        self.dirty = true;
        match (self.screen, self.feature.id) {
            (Screen::Feature, Some(id)) => vec![Effect::LoadFeature(id)],
            _ => vec![],
        }
    }

    /// Rebuild the sorted, filtered view, keeping the selected feature where possible.
    pub fn refresh_view(&mut self) {
        let keep = self.selected_row().map(|r| r.id);
        let q = self.features.search.trim().to_lowercase();
        let has = |t: &Option<String>| t.as_ref().is_some_and(|e| e.to_lowercase().contains(&q));
        // `list:NAME`, `near:ID` and `writes:TEXT` keep a set of features.
        let listed = self.search_set();
        let fs = &mut self.features;
        let mut view: Vec<usize> = (0..fs.rows.len())
            .filter(|&i| {
                let r = &fs.rows[i];
                let text_ok = match &listed {
                    Some(ids) => ids.contains(&r.id),
                    None => {
                        q.is_empty()
                            || r.id.to_string().contains(&q)
                            || has(&r.explanation)
                            || has(&r.label)
                    }
                };
                let dens_ok = fs
                    .density
                    .is_none_or(|(lo, hi)| r.density >= lo && r.density <= hi);
                text_ok && dens_ok
            })
            .collect();
        let (col, desc) = fs.sort;
        let rows = &fs.rows;
        view.sort_by(|&a, &b| {
            let (x, y) = (&rows[a], &rows[b]);
            let o = match Column::ALL[col] {
                Column::Id => x.id.cmp(&y.id),
                Column::Density => x.density.total_cmp(&y.density),
                Column::Max => x.max.total_cmp(&y.max),
                Column::Images => x.images.cmp(&y.images),
                Column::Score => x
                    .score
                    .unwrap_or(f32::NEG_INFINITY)
                    .total_cmp(&y.score.unwrap_or(f32::NEG_INFINITY)),
                Column::Explanation => x.shown_text().cmp(&y.shown_text()),
            };
            let o = if desc { o.reverse() } else { o };
            o.then(x.id.cmp(&y.id))
        });
        fs.sel = keep
            .and_then(|id| view.iter().position(|&i| rows[i].id == id))
            .unwrap_or(0);
        fs.view = view;
    }
}

#[cfg(test)]
mod tests {
    use crate::tui::app::{Effect, Event, Screen};
    use crate::tui::testing::{app, drive, key, row};

    #[test]
    fn rows_from_a_growing_store_keep_the_selection_and_reload_the_feature_shown() {
        let mut a = app(&[1, 2, 3, 4, 5]);
        drive(&mut a, vec![key('j'), key('j')]);
        assert_eq!(a.selected_row().map(|r| r.id), Some(3));
        let grown: Vec<_> = [0, 1, 2, 3, 4, 5].iter().map(|&i| row(i, 1.0)).collect();
        let fx = drive(
            &mut a,
            vec![Event::StoreGrew {
                rows: grown.clone(),
                title: "s · 40 images".into(),
            }],
        );
        assert!(fx.is_empty(), "{fx:?}");
        assert_eq!(a.features.view.len(), 6);
        assert_eq!(a.selected_row().map(|r| r.id), Some(3));
        assert_eq!(a.title, "s · 40 images");
        // On the feature screen the feature shown is read again.
        drive(&mut a, vec![key('l')]);
        assert_eq!((a.screen, a.feature.id), (Screen::Feature, Some(3)));
        let fx = drive(
            &mut a,
            vec![Event::StoreGrew {
                rows: grown,
                title: "s · 48 images".into(),
            }],
        );
        assert_eq!(fx, vec![Effect::LoadFeature(3)]);
    }

    #[test]
    fn sorting_shows_the_top_of_the_new_order() {
        let mut a = app(&[1, 2, 3, 4, 5]);
        drive(&mut a, vec![key('j'), key('j')]);
        assert_eq!(a.selected_row().map(|r| r.id), Some(3));
        // By density, largest first: 5 is on top and selected.
        drive(&mut a, vec![key('s')]);
        assert_eq!(
            (a.features.sel, a.selected_row().map(|r| r.id)),
            (0, Some(5))
        );
        drive(&mut a, vec![key('j'), key('S')]);
        assert_eq!(
            (a.features.sel, a.selected_row().map(|r| r.id)),
            (0, Some(1))
        );
    }
}
