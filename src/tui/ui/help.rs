//! The `?` overlay, generated from the active keymap: this screen's keys, then the global ones,
//! side by side when the terminal is wide enough, else one column that scrolls.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use crate::tui::app::{App, Hit};

/// Width of the key column.
const KEYS_W: usize = 16;
/// Narrowest terminal that shows the two sections side by side.
const TWO_COLUMNS_MIN_W: u16 = 120;

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

/// How the help is laid out in a body of `area`.
struct Plan {
    /// The overlay's rect.
    rect: Rect,
    /// Two sections side by side (nothing scrolls).
    two_columns: bool,
    /// Lines the single column holds.
    lines: usize,
    /// Rows the single column shows.
    rows: usize,
}

fn plan(app: &App, area: Rect) -> Plan {
    let screen = app.keymap.bindings(app.screen.mode()).len() + 1;
    let global = app.keymap.bindings("global").len() + 1;
    // Border (2) and footer (1) around the lines.
    let room = usize::from(area.height.saturating_sub(3));
    let lines = screen + 1 + global;
    let two_columns = lines > room && area.width >= TWO_COLUMNS_MIN_W && screen.max(global) <= room;
    let shown = if two_columns {
        screen.max(global)
    } else {
        lines
    };
    let h = (shown.min(room) as u16 + 3).min(area.height);
    let w = if two_columns { 160 } else { 80 }.min(area.width);
    Plan {
        rect: Rect::new(
            area.x + (area.width - w) / 2,
            area.y + (area.height - h) / 2,
            w,
            h,
        ),
        two_columns,
        lines,
        rows: room,
    }
}

/// The largest useful scroll of the help in a terminal of `app.size` (0 when it all fits).
pub fn max_scroll(app: &App) -> usize {
    let body = Rect::new(0, 0, app.size.0, app.size.1.saturating_sub(2));
    let p = plan(app, body);
    if p.two_columns {
        0
    } else {
        p.lines.saturating_sub(p.rows)
    }
}

/// Draw the help over `area`.
pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let p = plan(app, area);
    let screen = section(app, app.screen.mode());
    let global = section(app, "global");
    frame.render_widget(Clear, p.rect);
    app.hit(p.rect, Hit::Help);
    let block = Block::bordered()
        .title(" help ")
        .border_style(t.focus_border);
    let inner = block.inner(p.rect);
    frame.render_widget(block, p.rect);
    let [body, foot] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    if p.two_columns {
        frame.render_widget(
            Paragraph::new(Span::styled("any key closes this help", t.dim)),
            foot,
        );
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(body);
        frame.render_widget(Paragraph::new(screen), left);
        frame.render_widget(Paragraph::new(global), right);
        return;
    }
    let mut lines = screen;
    lines.push(Line::default());
    lines.extend(global);
    let scroll = app.help_scroll.min(max_scroll(app));
    let footer = if p.lines > usize::from(body.height) {
        format!(
            "lines {}–{} of {} · j/k, PgUp/PgDn scroll · any other key closes",
            scroll + 1,
            (scroll + usize::from(body.height)).min(p.lines),
            p.lines
        )
    } else {
        "any key closes this help".into()
    };
    frame.render_widget(Paragraph::new(Span::styled(footer, t.dim)), foot);
    let scroll = u16::try_from(scroll).unwrap_or(u16::MAX);
    frame.render_widget(Paragraph::new(lines).scroll((scroll, 0)), body);
}
