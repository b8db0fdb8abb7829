//! `App::update`: the one place state changes. Pure: no I/O, no threads, no clocks; work that
//! needs them is returned as [`Effect`]s for the runner.
//!
//! This file routes events: keys through the keymap to actions, mouse events through the regions
//! the last frame recorded, and results of background work to the screen they belong to. Each
//! screen's own actions live in its folder under `screens/`; a new screen adds a [`Screen`]
//! variant, a folder there and one arm in [`App::screen_action`].

mod lists;
mod mouse;
mod search;

pub use lists::DEFAULT_LIST;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{App, Effect, Event, Prompt, Screen};
use super::keymap::{Action, Key, Lookup};
use crate::heatmap::overlay::OverlayStyle;

/// `pos` moved by `delta`, kept inside `0..len`.
pub(crate) fn step(pos: usize, len: usize, delta: isize) -> usize {
    if len == 0 {
        return 0;
    }
    pos.saturating_add_signed(delta).min(len - 1)
}

impl App {
    /// Apply one event; returns the work it asks for.
    ///
    /// Events arrive in batches (a press and its release, a result and a tick) and the frame is
    /// drawn after the batch, so an event that changes nothing never clears a redraw an earlier
    /// event of the batch asked for: handlers clear `dirty` for themselves only.
    pub fn update(&mut self, event: Event) -> Vec<Effect> {
        let pending = self.dirty;
        self.dirty = true;
        let effects = self.apply_event(event);
        self.dirty |= pending;
        effects
    }

    fn apply_event(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Key(k) => self.on_key(k),
            Event::Mouse(m) => self.on_mouse(m),
            Event::Resize(w, h) => {
                self.size = (w, h);
                vec![]
            }
            Event::Tick(status) => {
                self.ticks += 1;
                // Redraw on a tick only when something moves (spinner, progress).
                self.dirty = status.busy.is_some()
                    || status != self.actor
                    || !self.explain.running.is_empty();
                self.actor = status;
                vec![]
            }
            Event::FeatureLoaded { id, result } => self.on_feature_loaded(id, result),
            Event::FullLoaded {
                id,
                set,
                index,
                result,
            } => self.on_full_loaded(id, (set, index), result),
            Event::Explained { id, result } => self.on_explained(id, result),
            Event::LabelSaved { id, result } => self.on_label_saved(id, result),
            Event::ImageLoaded { ticket, result } => self.on_image_loaded(ticket, result),
            Event::Analyzed { ticket, result } => self.on_analyzed(ticket, result),
            Event::Steer(msg) => self.steer_event(msg),
            Event::Attributed(done) => self.on_attributed(done),
            Event::PageLoaded { id, result } => self.on_page_loaded(id, result),
            Event::ListSaved { id, result } => self.on_list_saved(id, result),
            Event::StoreGrew { rows, title } => self.on_store_grew(rows, title),
        }
    }

    fn on_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if k.kind == KeyEventKind::Release {
            self.dirty = false;
            return vec![];
        }
        if let Some((prompt, text)) = self.prompt.take() {
            return self.prompt_key(prompt, text, k);
        }
        let Some(key) = Key::from_event(&k) else {
            return vec![];
        };
        self.pending_keys.push(key);
        match self.keymap.lookup(self.screen.mode(), &self.pending_keys) {
            Lookup::Prefix => vec![],
            Lookup::Action(a) => {
                self.pending_keys.clear();
                self.on_action(a)
            }
            Lookup::None => {
                // A chord that went nowhere: try the last key alone.
                let retry = self.pending_keys.len() > 1;
                self.pending_keys.clear();
                // Any key closes the help, bound or not.
                self.help = false;
                if retry { self.on_key(k) } else { vec![] }
            }
        }
    }

    /// A key while a one-line prompt is open: edit, submit or cancel.
    fn prompt_key(&mut self, prompt: Prompt, mut text: String, k: KeyEvent) -> Vec<Effect> {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            // A leading space is part of an answer or baseline token.
            KeyCode::Enter if prompt.keeps_spaces() => return self.submit_prompt(prompt, text),
            KeyCode::Enter => return self.submit_prompt(prompt, text.trim().to_string()),
            KeyCode::Esc => return vec![],
            KeyCode::Char('c') if ctrl => return vec![],
            KeyCode::Char('u') if ctrl => text.clear(),
            KeyCode::Char('w') if ctrl => {
                let keep = text.trim_end().rfind(' ').map_or(0, |i| i + 1);
                text.truncate(keep);
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if !ctrl => text.push(c),
            _ => {}
        }
        self.prompt = Some((prompt, text));
        vec![]
    }

    /// Apply one keymap action.
    pub fn on_action(&mut self, a: Action) -> Vec<Effect> {
        self.dirty = true;
        // A message answers the last action; the next one starts with a clean status line.
        self.message = None;
        if self.help {
            return self.help_action(a);
        }
        if a != Action::Explain {
            self.explain.confirm = None;
        }
        match a {
            Action::Quit => return vec![Effect::Quit],
            Action::Help => {
                self.help = true;
                self.help_scroll = 0;
            }
            Action::Back => return self.back(),
            Action::Features => return self.show(Screen::Features),
            Action::Feature => return self.show(Screen::Feature),
            Action::Image => return self.show(Screen::Image),
            Action::Steer => return self.show(Screen::Steer),
            Action::Attrib => return self.show(Screen::Attrib),
            Action::SteerAdd => return self.steer_add_current(),
            Action::ListAdd => return self.list_prompt(),
            Action::Search => self.prompt = Some((Prompt::Search, self.features.search.clone())),
            Action::FilterDensity => self.prompt = Some((Prompt::Density, String::new())),
            Action::Jump => self.prompt = Some((Prompt::Jump, String::new())),
            Action::OpenImage => self.prompt = Some((Prompt::OpenImage, String::new())),
            Action::ToggleStyle => {
                self.style = if self.mask_style() {
                    OverlayStyle::default()
                } else {
                    OverlayStyle::DarkenMask
                };
            }
            _ => return self.screen_action(a),
        }
        vec![]
    }

    /// A key while the help is open: moves scroll it, quit quits, any other key closes it.
    fn help_action(&mut self, a: Action) -> Vec<Effect> {
        let most = super::ui::help::max_scroll(self);
        let page = self.page();
        let at = self.help_scroll.min(most);
        self.help_scroll = match a {
            Action::Down => step(at, most + 1, 1),
            Action::Up => step(at, most + 1, -1),
            Action::PageDown => step(at, most + 1, page),
            Action::PageUp => step(at, most + 1, -page),
            Action::First => 0,
            Action::Last => most,
            Action::Quit => return vec![Effect::Quit],
            _ => {
                self.help = false;
                0
            }
        };
        vec![]
    }

    /// An action only the current screen understands.
    fn screen_action(&mut self, a: Action) -> Vec<Effect> {
        match self.screen {
            Screen::Features => self.features_action(a),
            Screen::Feature => self.feature_action(a),
            Screen::Image => self.image_action(a),
            Screen::Steer => self.steer_action(a),
            Screen::Attrib if a == Action::Open => match self.attrib_selected_latent() {
                Some(id) => self.open_feature(id),
                None => vec![],
            },
            Screen::Attrib => self.attrib_action(a),
        }
    }

    /// Switch to `screen` (a tab key or a click on its title).
    pub(crate) fn show(&mut self, screen: Screen) -> Vec<Effect> {
        match screen {
            Screen::Features => self.screen = Screen::Features,
            Screen::Feature if self.feature.id.is_some() => self.screen = Screen::Feature,
            Screen::Feature => return self.open_selected(),
            Screen::Image if self.image.ticket > 0 => self.screen = Screen::Image,
            Screen::Image => {
                self.message = Some(("no image yet: press o to open one".into(), false))
            }
            Screen::Steer => self.screen = Screen::Steer,
            Screen::Attrib => return self.attrib_show(),
        }
        vec![]
    }

    pub(crate) fn back(&mut self) -> Vec<Effect> {
        if self.feature.full && self.screen == Screen::Feature {
            self.feature.full = false;
        } else if self.image.pending
            || self.attrib.pending
            || (self.screen == Screen::Steer && self.steer.pending)
            || self.actor.busy.is_some()
        {
            self.image.pending = false;
            self.attrib.pending = false;
            self.message = Some(("cancelled".into(), false));
            return vec![Effect::CancelModel];
        } else if self.screen != Screen::Features {
            self.screen = Screen::Features;
        } else if !self.features.search.is_empty() || self.features.density.is_some() {
            self.features.search.clear();
            self.features.density = None;
            self.refresh_view();
        }
        vec![]
    }

    /// Rows a page of the features table moves.
    pub(crate) fn page(&self) -> isize {
        self.size.1.saturating_sub(6).max(1) as isize
    }

    fn submit_prompt(&mut self, prompt: Prompt, text: String) -> Vec<Effect> {
        self.message = None;
        match prompt {
            Prompt::Search => {
                self.features.search = text;
                self.screen = Screen::Features;
                self.refresh_view();
                self.message = self.search_note().map(|n| (n, false));
            }
            Prompt::Density => {
                self.features.density = match parse_range(&text) {
                    Ok(r) => r,
                    Err(e) => {
                        self.message = Some((e, true));
                        return vec![];
                    }
                };
                self.screen = Screen::Features;
                self.refresh_view();
            }
            Prompt::Jump => return self.jump(&text),
            Prompt::OpenImage => return self.open_image(&text),
            Prompt::Label(id) => return self.set_label(id, text),
            Prompt::ListAdd(id) => return self.add_to_list(id, &text),
            Prompt::Steer(input) => return self.steer_input(input, text),
            Prompt::Attrib(input) => return self.attrib_input(input, text),
        }
        vec![]
    }
}

/// Parse `min..max` (either side may be empty); empty text clears the filter.
pub fn parse_range(text: &str) -> Result<Option<(f64, f64)>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let bad = || format!("{text:?}: write a density range like 0.001..0.1, ..0.05 or 0.01..");
    let (lo, hi) = text.split_once("..").ok_or_else(bad)?;
    let num = |s: &str, d: f64| {
        if s.trim().is_empty() {
            Ok(d)
        } else {
            s.trim().parse::<f64>().map_err(|_| bad())
        }
    };
    let (lo, hi) = (num(lo, 0.0)?, num(hi, f64::INFINITY)?);
    if lo > hi {
        return Err(format!(
            "{text:?}: the lower end is above the upper one; write min..max, e.g. {hi}..{lo}"
        ));
    }
    Ok(Some((lo, hi)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::testing::{app, code, drive, key, message, typed};

    #[test]
    fn ranges_and_steps() {
        assert_eq!(parse_range("").unwrap(), None);
        assert_eq!(parse_range("0.1..").unwrap(), Some((0.1, f64::INFINITY)));
        assert_eq!(parse_range("..0.5").unwrap(), Some((0.0, 0.5)));
        assert!(parse_range("abc").unwrap_err().contains("density range"));
        let e = parse_range("0.5..0.1").unwrap_err();
        assert!(
            e.contains("lower end is above") && e.contains("0.1..0.5"),
            "{e}"
        );
        assert_eq!(parse_range("0.1..0.1").unwrap(), Some((0.1, 0.1)));
        assert_eq!(step(0, 5, -1), 0);
        assert_eq!(step(3, 5, 10), 4);
        assert_eq!(step(3, 0, 1), 0);
    }

    #[test]
    fn a_message_lasts_until_the_next_action() {
        let mut a = app(&[1, 2, 3]);
        let mut events = vec![key('d')];
        events.extend(typed("0.5..0.1"));
        events.push(code(KeyCode::Enter));
        drive(&mut a, events);
        assert!(
            message(&a).is_some_and(|m| m.contains("lower end")),
            "{:?}",
            a.message
        );
        assert_eq!(a.features.density, None);
        drive(&mut a, vec![key('j')]);
        assert_eq!(message(&a), None);
        drive(&mut a, vec![key('3')]);
        assert!(message(&a).is_some_and(|m| m.contains("no image yet")));
        drive(&mut a, vec![key('k')]);
        assert_eq!(message(&a), None);
    }
}
