//! The `?` overlay, generated from the active keymap: this screen's keys, then the global ones,
//! side by side when one column would not fit the terminal.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::tui::app::{App, Hit};

/// Width of the key column.
const KEYS_W: usize = 16;

/// The lines of one keymap mode: a heading, then one line per action.
fn section(app: &App, mode: &str) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = vec![Line::from(Span::styled(format!("{mode} keys"), t.header))];
    for (keys, action) in app.keymap.bindings(mode) {
        lines.push(Line::from(vec![
            Span::styled(format!(" {keys:<KEYS_W$} "), t.key),
            Span::styled(action.description(), t.text),
        ]));
    }
    lines
}

/// Draw the help over `area`.
pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let screen = section(app, app.screen.mode());
    let global = section(app, "global");
    let footer = Line::from(Span::styled("any key closes this help", t.dim));
    let one_column = screen.len() + global.len() + 2 <= usize::from(area.height.saturating_sub(2));
    let rows = if one_column {
        screen.len() + global.len() + 2
    } else {
        screen.len().max(global.len()) + 2
    };
    let h = (rows as u16 + 2).min(area.height);
    let w = if one_column { 80 } else { 160 }.min(area.width);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    frame.render_widget(Clear, r);
    app.hit(r, Hit::Help);
    let block = Block::bordered()
        .title(" help ")
        .border_style(t.focus_border);
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let [body, foot] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    frame.render_widget(Paragraph::new(footer), foot);
    if one_column {
        let mut lines = screen;
        lines.push(Line::default());
        lines.extend(global);
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), body);
        return;
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(body);
    frame.render_widget(Paragraph::new(screen).wrap(Wrap { trim: false }), left);
    frame.render_widget(Paragraph::new(global).wrap(Wrap { trim: false }), right);
}
