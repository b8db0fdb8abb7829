//! The feature screen: the example grid, the full-size view, next / previous feature, and the
//! explanation and human label of the feature.

use super::page_ui::linked_features;
use super::ui::screen_grid;
use crate::dashboard::FeaturePage;
use crate::store::Explanation;
use crate::tui::app::{App, Effect, PageState, Prompt};
use crate::tui::data::{ExampleSet, FeatureDetail, Picture};
use crate::tui::keymap::Action;
use crate::tui::update::step;

/// Ticks per second of the runner's ticker (for elapsed times on the status line).
pub const TICKS_PER_SECOND: u64 = 8;

impl App {
    pub(crate) fn feature_action(&mut self, a: Action) -> Vec<Effect> {
        let len = self.shown_examples();
        let cols = screen_grid(self.size, len).cols as isize;
        if let Some(fx) = self.page_action(a) {
            return fx;
        }
        let sel = self.feature.sel;
        let moved = match a {
            Action::Left => step(sel, len, -1),
            Action::Right => step(sel, len, 1),
            Action::Up => step(sel, len, -cols),
            Action::Down => step(sel, len, cols),
            Action::First => 0,
            Action::Last => len.saturating_sub(1),
            Action::Open => return self.toggle_full(),
            Action::NextFeature | Action::PrevFeature | Action::PageDown | Action::PageUp => {
                // Next / previous feature in the table's order (page keys, as in older keymaps).
                let delta = if matches!(a, Action::NextFeature | Action::PageDown) {
                    1
                } else {
                    -1
                };
                // From the feature on screen (it may have been opened from another screen),
                // else from the table's cursor.
                let fs = &self.features;
                let here = self
                    .feature
                    .id
                    .and_then(|id| fs.view.iter().position(|&i| fs.rows[i].id == id))
                    .unwrap_or(fs.sel);
                self.features.sel = step(here, fs.view.len(), delta);
                return self.open_selected();
            }
            Action::TogglePage => return self.toggle_page(),
            Action::ToggleRange => return self.toggle_range(),
            Action::Compare => return self.compare(),
            Action::Explain => return self.feature.id.map_or(vec![], |id| self.explain(id)),
            Action::Label => return self.feature.id.map_or(vec![], |id| self.label_prompt(id)),
            _ => sel,
        };
        self.select_example(moved)
    }

    /// Keys on the page: the cursor walks the features the page links to, and `open` shows
    /// the one under it (with its page, so a neighbourhood can be walked feature by feature).
    /// `None` where the page is not on screen or the key means nothing to it.
    fn page_action(&mut self, a: Action) -> Option<Vec<Effect>> {
        let PageState::Ready(page) = &self.feature.page else {
            return None;
        };
        if !self.feature.show_page {
            return None;
        }
        let linked = linked_features(page);
        let sel = self.feature.page_sel.min(linked.len().saturating_sub(1));
        self.feature.page_sel = match a {
            Action::Up | Action::Left => step(sel, linked.len(), -1),
            Action::Down | Action::Right => step(sel, linked.len(), 1),
            Action::First => 0,
            Action::Last => linked.len().saturating_sub(1),
            Action::Open => {
                let Some(&(_, id)) = linked.get(sel) else {
                    self.message = Some(("the page links to no feature".into(), false));
                    return Some(vec![]);
                };
                let from = self.feature.id;
                let fx = self.open_feature(id);
                if let Some(from) = from {
                    self.message = Some((format!("feature {id}, from the page of {from}"), false));
                }
                return Some(fx);
            }
            _ => return None,
        };
        Some(vec![])
    }

    /// Examples in the list the grid shows.
    fn shown_examples(&self) -> usize {
        let set = self.feature.set;
        self.feature
            .detail
            .as_ref()
            .map_or(0, |d| d.examples_of(set).len())
    }

    /// Switch the grid between the top examples and those across the feature's range.
    fn toggle_range(&mut self) -> Vec<Effect> {
        let f = &mut self.feature;
        f.set = match f.set {
            ExampleSet::Top => ExampleSet::Range,
            ExampleSet::Range => ExampleSet::Top,
        };
        (f.sel, f.full, f.full_picture) = (0, false, None);
        (f.show_page, f.comparing) = (false, false);
        let empty = f.detail.as_ref().is_some_and(|d| d.range.is_empty());
        if f.set == ExampleSet::Range && empty {
            let id = f.id.map_or(String::new(), |id| format!("feature {id} "));
            self.message = Some((
                format!(
                    "{id}has no range sample: the store was cached with --range-sample 0 or \
                     before range samples existed"
                ),
                false,
            ));
        }
        vec![]
    }

    /// Switch the right-hand pane between the examples and the feature page; the page is
    /// computed on the model the first time it is shown (the store keeps it after).
    pub(crate) fn toggle_page(&mut self) -> Vec<Effect> {
        self.feature.show_page = !self.feature.show_page;
        self.feature.full = false;
        self.feature.comparing = false;
        match (self.feature.show_page, self.feature.id, &self.feature.page) {
            (true, Some(id), PageState::None | PageState::Failed(_)) => {
                self.feature.page = PageState::Loading;
                vec![Effect::LoadPage { id, compute: true }]
            }
            _ => vec![],
        }
    }

    /// `c`: mark the feature shown; on another feature, compare the two side by side; while
    /// comparing, stop.
    pub(crate) fn compare(&mut self) -> Vec<Effect> {
        let key = self.key_for(Action::Compare);
        let f = &mut self.feature;
        let Some(shown) = f.detail.clone().filter(|d| Some(d.id) == f.id) else {
            return vec![];
        };
        let text = match f.marked.as_ref().map(|m| m.id) {
            _ if f.comparing => {
                f.comparing = false;
                "comparison closed (the mark stays)".to_string()
            }
            Some(m) if m != shown.id => {
                f.comparing = true;
                f.show_page = false;
                f.full = false;
                format!("feature {m} beside feature {}", shown.id)
            }
            _ => {
                let id = shown.id;
                f.marked = Some(Box::new(shown));
                format!("feature {id} marked: open another feature and press {key} to compare")
            }
        };
        self.message = Some((text, false));
        vec![]
    }

    pub(crate) fn on_page_loaded(
        &mut self,
        id: u32,
        result: Result<Option<FeaturePage>, String>,
    ) -> Vec<Effect> {
        if let Ok(Some(p)) = &result {
            self.pages.insert(id, p.clone());
        }
        if self.feature.id != Some(id) {
            self.dirty = false;
            return vec![];
        }
        self.feature.page = match result {
            Ok(Some(p)) => PageState::Ready(Box::new(p)),
            Ok(None) => PageState::None,
            Err(e) => PageState::Failed(e),
        };
        vec![]
    }

    /// Select example `i`; with the full-size view open, load that example's full picture.
    pub(crate) fn select_example(&mut self, i: usize) -> Vec<Effect> {
        self.feature.sel = i;
        if self.feature.full {
            return self.full_effect();
        }
        vec![]
    }

    /// Open or close the full-size view of the selected example.
    pub(crate) fn toggle_full(&mut self) -> Vec<Effect> {
        let len = self.shown_examples();
        self.feature.full = !self.feature.full && len > 0;
        if self.feature.full {
            return self.full_effect();
        }
        vec![]
    }

    fn full_effect(&self) -> Vec<Effect> {
        let (set, index) = (self.feature.set, self.feature.sel);
        match (self.feature.id, &self.feature.full_picture) {
            (Some(_), Some((at, _))) if *at == (set, index) => vec![],
            (Some(id), _) => vec![Effect::LoadFull { id, set, index }],
            (None, _) => vec![],
        }
    }

    pub(crate) fn on_feature_loaded(
        &mut self,
        id: u32,
        result: Result<FeatureDetail, String>,
    ) -> Vec<Effect> {
        if self.feature.id == Some(id) {
            match result {
                Ok(d) => self.feature.detail = Some(d),
                Err(e) => self.message = Some((format!("feature {id}: {e}"), true)),
            }
        }
        vec![]
    }

    pub(crate) fn on_full_loaded(
        &mut self,
        id: u32,
        at: (ExampleSet, usize),
        result: Result<Picture, String>,
    ) -> Vec<Effect> {
        if self.feature.id == Some(id) {
            match result {
                Ok(p) => self.feature.full_picture = Some((at, p)),
                Err(e) => self.message = Some((format!("feature {id}: {e}"), true)),
            }
        }
        vec![]
    }

    /// Ask for an explanation of `id`. A feature that already has one needs the key twice, as
    /// each request costs the explainer's time; one already in flight is not asked again.
    pub(crate) fn explain(&mut self, id: u32) -> Vec<Effect> {
        if self.explain.running.contains_key(&id) {
            self.message = Some((format!("feature {id} is being explained already"), false));
            return vec![];
        }
        let has = self.row(id).is_some_and(|r| r.explanation.is_some());
        if has && self.explain.confirm != Some(id) {
            self.explain.confirm = Some(id);
            let key = self.key_for(Action::Explain);
            self.message = Some((
                format!("feature {id} is explained already; press {key} again to ask anew"),
                false,
            ));
            return vec![];
        }
        self.explain.confirm = None;
        self.explain.running.insert(id, self.ticks);
        self.message = None;
        vec![Effect::Explain(id)]
    }

    pub(crate) fn on_explained(
        &mut self,
        id: u32,
        result: Result<Explanation, String>,
    ) -> Vec<Effect> {
        self.explain.running.remove(&id);
        match result {
            Ok(e) => {
                let text = e.text.clone();
                if let Some(r) = self.features.rows.iter_mut().find(|r| r.id == id) {
                    r.explanation = Some(text.clone());
                }
                if let Some(d) = self.feature.detail.as_mut().filter(|d| d.id == id) {
                    d.explanations.retain(|x| {
                        (&x.explainer_model, &x.prompt_hash) != (&e.explainer_model, &e.prompt_hash)
                    });
                    d.explanations.insert(0, e);
                }
                self.message = Some((format!("feature {id} explained: {text}"), false));
                self.refresh_view();
            }
            Err(why) => self.message = Some((format!("explaining feature {id}: {why}"), true)),
        }
        vec![]
    }

    /// Open the label prompt for `id`, holding its label or, to edit, its explanation.
    pub(crate) fn label_prompt(&mut self, id: u32) -> Vec<Effect> {
        let text = self
            .row(id)
            .and_then(|r| r.label.clone().or_else(|| r.explanation.clone()))
            .unwrap_or_default();
        self.prompt = Some((Prompt::Label(id), text));
        vec![]
    }

    /// Keep the label at once (the store write follows as an effect).
    pub(crate) fn set_label(&mut self, id: u32, text: String) -> Vec<Effect> {
        let text = (!text.is_empty()).then_some(text);
        if let Some(r) = self.features.rows.iter_mut().find(|r| r.id == id) {
            r.label = text.clone();
        }
        self.refresh_view();
        vec![Effect::SaveLabel { id, text }]
    }

    pub(crate) fn on_label_saved(&mut self, id: u32, result: Result<(), String>) -> Vec<Effect> {
        let kept = self.row(id).is_some_and(|r| r.label.is_some());
        self.message = Some(match result {
            Ok(()) if kept => (format!("feature {id}: label saved"), false),
            Ok(()) => (format!("feature {id}: label removed"), false),
            Err(e) => (format!("feature {id}: label not saved: {e}"), true),
        });
        vec![]
    }

    /// Seconds since the explanation of `id` was asked for, by ticks.
    pub fn explain_elapsed(&self, id: u32) -> Option<u64> {
        self.explain
            .running
            .get(&id)
            .map(|&t| self.ticks.saturating_sub(t) / TICKS_PER_SECOND)
    }

    /// The first key bound to `a` on this screen (or globally), for messages.
    pub fn key_for(&self, a: Action) -> String {
        [self.screen.mode(), "global"]
            .iter()
            .flat_map(|m| self.keymap.bindings(m))
            .find(|(_, b)| *b == a)
            .map_or_else(
                || a.name().to_string(),
                |(k, _)| k.split(' ').next().unwrap_or_default().to_string(),
            )
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyCode;

    use crate::tui::app::{Effect, Event};
    use crate::tui::testing::{app, code, drive, key, message};

    #[test]
    fn next_and_previous_step_from_the_feature_on_screen() {
        let mut a = app(&[1, 2, 3, 4, 5]);
        // Opened from elsewhere (the image screen, an attribution): the table cursor stays on 1.
        a.open_feature(4);
        assert_eq!(a.features.sel, 0);
        let fx = drive(&mut a, vec![key('n')]);
        assert_eq!(a.feature.id, Some(5));
        assert!(fx.contains(&Effect::LoadFeature(5)), "{fx:?}");
        drive(&mut a, vec![key('p'), key('p')]);
        assert_eq!(a.feature.id, Some(3));
        assert_eq!(a.selected_row().map(|r| r.id), Some(3));
    }

    #[test]
    fn clearing_a_label_says_so() {
        let mut a = app(&[7]);
        let mut events = vec![key('L')];
        events.extend("on".chars().map(key));
        events.push(code(KeyCode::Enter));
        let fx = drive(&mut a, events);
        assert!(
            fx.iter()
                .any(|e| matches!(e, Effect::SaveLabel { text: Some(_), .. }))
        );
        a.update(Event::LabelSaved {
            id: 7,
            result: Ok(()),
        });
        assert_eq!(message(&a), Some("feature 7: label saved"));
        let events = vec![
            key('L'),
            Event::Key(crossterm::event::KeyEvent::new(
                KeyCode::Char('u'),
                crossterm::event::KeyModifiers::CONTROL,
            )),
            code(KeyCode::Enter),
        ];
        let fx = drive(&mut a, events);
        assert!(
            fx.contains(&Effect::SaveLabel { id: 7, text: None }),
            "{fx:?}"
        );
        a.update(Event::LabelSaved {
            id: 7,
            result: Ok(()),
        });
        assert_eq!(message(&a), Some("feature 7: label removed"));
    }

    #[test]
    fn the_page_cursor_walks_its_links_and_opens_one_with_its_page() {
        use crate::dashboard::{CoFiring, FeaturePage, LogitLens, Neighbour};
        let near = |f| Neighbour {
            feature: f,
            cosine: 0.5,
        };
        let page = FeaturePage {
            feature: 1,
            sae_fingerprint: "s".into(),
            logit_lens: LogitLens {
                feature: 1,
                raises: vec![],
                lowers: vec![],
            },
            decoder_neighbours: vec![near(3)],
            encoder_neighbours: vec![near(4)],
            cofiring: vec![CoFiring {
                feature: 5,
                shared: 2,
                tokens: 4,
                jaccard: 0.5,
                p_given_feature: 0.5,
            }],
            cofiring_images: 1,
        };
        let mut a = app(&[1, 2, 3, 4, 5]);
        a.open_feature(1);
        let fx = drive(&mut a, vec![key('w')]);
        assert!(
            fx.contains(&Effect::LoadPage {
                id: 1,
                compute: true
            }),
            "{fx:?}"
        );
        a.update(Event::PageLoaded {
            id: 1,
            result: Ok(Some(page)),
        });
        // Down past the end stays on the last link; up comes back to the co-firing one.
        drive(
            &mut a,
            vec![key('j'), key('j'), key('j'), key('k'), key('j')],
        );
        assert_eq!(a.feature.page_sel, 2);
        let fx = drive(&mut a, vec![code(KeyCode::Enter)]);
        assert_eq!(a.feature.id, Some(5));
        assert!(a.feature.show_page, "the page stays on screen");
        assert!(
            fx.contains(&Effect::LoadPage {
                id: 5,
                compute: true
            }),
            "{fx:?}"
        );
        assert_eq!(a.feature.page_sel, 0);
        assert_eq!(message(&a), Some("feature 5, from the page of 1"));
    }
}
