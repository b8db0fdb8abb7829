//! Helpers for the workbench's unit tests: an app over synthetic rows and key events.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Effect, Event};
use super::data::FeatureRow;
use super::keymap::Keymap;
use super::theme::Theme;

/// A row for feature `id` with maximum `max` (density grows with the id, so sorts are visible).
pub fn row(id: u32, max: f32) -> FeatureRow {
    FeatureRow {
        id,
        density: f64::from(id) * 1e-3,
        max,
        images: 3,
        explanation: None,
        label: None,
        score: None,
    }
}

/// A workbench over features `ids` (max 1 + id / 10) with the default keys and dark theme.
pub fn app(ids: &[u32]) -> App {
    let rows = ids.iter().map(|&i| row(i, 1.0 + i as f32 / 10.0)).collect();
    let mut app = App::new(
        rows,
        Keymap::load(&[]).expect("default keymap"),
        Theme::load("dark", &[]).expect("dark theme"),
        "test".into(),
    );
    app.size = (100, 30);
    app
}

/// A plain key press.
pub fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

/// A special key press.
pub fn code(c: KeyCode) -> Event {
    Event::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

/// Typed text, one key press per character.
pub fn typed(text: &str) -> Vec<Event> {
    text.chars().map(key).collect()
}

/// Feed `events` to `app`, collecting the effects.
pub fn drive(app: &mut App, events: Vec<Event>) -> Vec<Effect> {
    events.into_iter().flat_map(|e| app.update(e)).collect()
}

/// The status-line message, if any.
pub fn message(app: &App) -> Option<&str> {
    app.message.as_ref().map(|m| m.0.as_str())
}
