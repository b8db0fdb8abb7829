//! The `?` overlay, generated from the active keymap.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::tui::app::App;

/// Draw the help over `area`.
pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let mut lines = Vec::new();
    for mode in ["global", app.screen.mode()] {
        lines.push(Line::from(Span::styled(
            format!("{mode} keys"),
            t.style("header"),
        )));
        for (keys, action) in app.keymap.bindings(mode) {
            lines.push(Line::from(vec![
                Span::styled(format!("  {keys:<16}"), t.style("key")),
                Span::styled(action.description(), t.style("text")),
            ]));
        }
    }
    lines.push(Line::from(Span::styled(
        "any key closes this help",
        t.style("dim"),
    )));
    let h = (lines.len() as u16 + 2).min(area.height);
    let w = 80.min(area.width);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    frame.render_widget(Clear, r);
    let block = Block::bordered()
        .title(" help ")
        .border_style(t.style("focus-border"));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        r,
    );
}
