//! Feature lists from any screen: `B` adds the feature the screen points at to a named list (a
//! note after a colon), kept in the store; `/list:NAME` shows a list in the features table
//! (see `search`).

use crate::store::FeatureList;
use crate::tui::app::{App, Effect, Prompt, Screen};

/// The list `B` adds to until another is named.
pub const DEFAULT_LIST: &str = "picked";

impl App {
    /// The feature the current screen points at: the one shown, the table's selection, the
    /// image screen's selected feature, or the attribution screen's selected latent.
    pub(crate) fn current_feature(&self) -> Option<u32> {
        match self.screen {
            Screen::Feature => self.feature.id,
            Screen::Image => self.image.features.get(self.image.sel).map(|f| f.0),
            Screen::Features => self.selected_row().map(|r| r.id),
            Screen::Attrib => self.attrib.selected().map(|l| l.latent),
            Screen::Steer => self.steer.selected().map(|r| r.feature),
        }
    }

    /// Open the prompt that adds the current feature to a list.
    pub(crate) fn list_prompt(&mut self) -> Vec<Effect> {
        match self.current_feature() {
            Some(id) => self.prompt = Some((Prompt::ListAdd(id), format!("{}: ", self.list))),
            None => self.message = Some(("no feature here to add to a list".into(), false)),
        }
        vec![]
    }

    /// `NAME[: note]` typed for feature `id`.
    pub(crate) fn add_to_list(&mut self, id: u32, text: &str) -> Vec<Effect> {
        let (name, note) = match text.split_once(':') {
            Some((n, note)) => (n.trim(), Some(note.trim()).filter(|t| !t.is_empty())),
            None => (text.trim(), None),
        };
        let name = if name.is_empty() {
            self.list.clone()
        } else {
            name.to_string()
        };
        self.list = name.clone();
        vec![Effect::AddToList {
            name,
            id,
            note: note.map(String::from),
        }]
    }

    /// A list was written (or could not be).
    pub(crate) fn on_list_saved(
        &mut self,
        id: u32,
        result: Result<FeatureList, String>,
    ) -> Vec<Effect> {
        match result {
            Ok(list) => {
                self.message = Some((
                    format!(
                        "feature {id} is on list {:?} ({} features; /list:{} shows it, \
                         `glint --batch export --format filter --list {}` writes it)",
                        list.name,
                        list.entries.len(),
                        list.name,
                        list.name
                    ),
                    false,
                ));
                match self.lists.iter_mut().find(|l| l.name == list.name) {
                    Some(l) => *l = list,
                    None => self.lists.push(list),
                }
                self.refresh_view();
            }
            Err(e) => {
                self.message = Some((format!("feature {id}: not added to the list: {e}"), true))
            }
        }
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyCode;

    use super::*;
    use crate::store::ListEntry;
    use crate::tui::app::Event;
    use crate::tui::testing::{app, code, drive, key, typed};

    #[test]
    fn b_adds_the_feature_on_screen_to_a_named_list_with_a_note() {
        let mut a = app(&[1, 2, 3, 4]);
        drive(&mut a, vec![key('j')]);
        let mut events = vec![key('B')];
        events.push(Event::Key(crossterm::event::KeyEvent::new(
            KeyCode::Char('u'),
            crossterm::event::KeyModifiers::CONTROL,
        )));
        events.extend(typed("stripes: diagonal ones"));
        events.push(code(KeyCode::Enter));
        let fx = drive(&mut a, events);
        assert_eq!(
            fx,
            vec![Effect::AddToList {
                name: "stripes".into(),
                id: 2,
                note: Some("diagonal ones".into())
            }]
        );
        let list = FeatureList {
            name: "stripes".into(),
            entries: vec![
                ListEntry {
                    feature: 2,
                    note: Some("diagonal ones".into()),
                },
                ListEntry {
                    feature: 4,
                    note: None,
                },
            ],
            updated_unix: 1,
        };
        a.update(Event::ListSaved {
            id: 2,
            result: Ok(list),
        });
        // The next B offers the list just used.
        drive(&mut a, vec![key('B')]);
        assert_eq!(a.prompt.as_ref().map(|p| p.1.as_str()), Some("stripes: "));
        drive(&mut a, vec![code(KeyCode::Esc)]);
        // The list as a search of the table.
        let mut events = vec![key('/')];
        events.extend(typed("list:stripes"));
        events.push(code(KeyCode::Enter));
        drive(&mut a, events);
        let shown: Vec<u32> = a
            .features
            .view
            .iter()
            .map(|&i| a.features.rows[i].id)
            .collect();
        assert_eq!(shown, [2, 4]);
    }
}
