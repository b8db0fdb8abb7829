//! Drawing the steering screen: prompt line, rows table, and the two texts side by side.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};

use super::diff::changed;
use super::state::{SteerState, Stream};
use crate::generate::{Sampling, StopReason};
use crate::sae::intervene::{Direction, Mode};
use crate::tui::app::{App, Hit};
use crate::tui::keymap::Action;

/// Most rows shown before the table scrolls.
const MAX_TABLE_ROWS: u16 = 8;

/// Draw the steering screen into `area`.
pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let st = &app.steer;
    let notes = notes(st);
    let table_h = (st.rows.len() as u16).clamp(1, MAX_TABLE_ROWS) + 3;
    let [top, rows, texts, bottom] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(table_h),
        Constraint::Min(3),
        Constraint::Length(notes.len() as u16),
    ])
    .areas(area);
    render_prompt(app, frame, top);
    render_rows(app, frame, rows);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(texts);
    render_default(app, frame, left);
    render_steered(app, frame, right);
    let t = &app.theme;
    let lines: Vec<Line> = notes
        .into_iter()
        .map(|(text, error)| {
            let style = if error { t.error } else { t.busy };
            Line::from(Span::styled(text, style))
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), bottom);
}

/// Warnings and the error of the latest request, at most three lines.
fn notes(st: &SteerState) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = st.error.iter().map(|e| (e.clone(), true)).collect();
    out.extend(st.warnings.iter().map(|w| (format!("warning: {w}"), false)));
    out.truncate(3);
    out
}

/// The first key bound to `action` on the steering screen, for hints.
fn key(app: &App, action: Action) -> String {
    app.keymap
        .bindings("steer")
        .into_iter()
        .find(|(_, a)| *a == action)
        .and_then(|(keys, _)| keys.split(' ').next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn render_prompt(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let st = &app.steer;
    let sampling = match st.sampling {
        Sampling::Greedy => "greedy".to_string(),
        Sampling::TopP {
            temperature,
            top_p,
            seed,
        } => format!("T={temperature} top-p={top_p} seed={seed}"),
    };
    let line = Line::from(vec![
        Span::styled(st.prompt.clone(), t.text),
        Span::styled(
            format!(
                "  · image {} · {} tokens · {sampling}",
                st.image.as_deref().unwrap_or("none"),
                st.max_new_tokens
            ),
            t.dim,
        ),
    ]);
    let hint = format!(
        " {} prompt · {} image · {} tokens · {} save · {} load ",
        key(app, Action::EditPrompt),
        key(app, Action::EditImage),
        key(app, Action::MaxTokens),
        key(app, Action::SavePreset),
        key(app, Action::LoadPreset),
    );
    let block = Block::bordered()
        .title(Span::styled(" prompt ", t.title))
        .title_bottom(Span::styled(hint, t.dim))
        .border_style(t.border);
    frame.render_widget(Paragraph::new(line).block(block), area);
}

fn mode_text(mode: Mode, direction: Direction) -> String {
    match (mode, direction) {
        (Mode::Add, Direction::Unit) => "add·unit".into(),
        (m, _) => m.to_string(),
    }
}

fn render_rows(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let st = &app.steer;
    let header = Row::new([
        "feature",
        "mode",
        "strength",
        "raw",
        "phase",
        "tokens",
        "explanation",
    ])
    .style(t.header);
    let rows = st.rows.iter().map(|r| {
        let stored = app.row(r.feature);
        let raw = r
            .spec(stored.map(|s| s.max))
            .map_or("?".to_string(), |s| format!("{:.2}", s.value));
        Row::new(vec![
            Cell::from(format!("{:>7}", r.feature)),
            Cell::from(mode_text(r.mode, r.direction)),
            Cell::from(r.strength_text()),
            Cell::from(raw),
            Cell::from(r.scope.phase.to_string()),
            Cell::from(r.scope.tokens.to_string()),
            Cell::from(
                stored
                    .and_then(|s| s.shown_text())
                    .unwrap_or_else(|| "-".into()),
            ),
        ])
        .style(t.text)
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(11),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Min(8),
    ];
    let hint = format!(
        " {}/{} fine · {}/{} coarse · {} type · {} add · {} delete · {} mode · {} unit · {} phase · {} tokens ",
        key(app, Action::StrengthDown),
        key(app, Action::StrengthUp),
        key(app, Action::StrengthDownCoarse),
        key(app, Action::StrengthUpCoarse),
        key(app, Action::TypeStrength),
        key(app, Action::AddRow),
        key(app, Action::DeleteRow),
        key(app, Action::CycleMode),
        key(app, Action::CycleUnit),
        key(app, Action::CyclePhase),
        key(app, Action::CycleTokens),
    );
    let block = Block::bordered()
        .title(Span::styled(
            format!(" steering rows {} ", st.rows.len()),
            t.title,
        ))
        .title_bottom(Span::styled(hint, t.dim))
        .border_style(t.focus_border);
    if st.rows.is_empty() {
        let msg = format!(
            "no rows: press {} to type one (12 = replace 50; 7 clamp 3x), or S on a feature",
            key(app, Action::AddRow)
        );
        let p = Paragraph::new(Span::styled(msg, t.dim)).block(block);
        frame.render_widget(p, area);
        return;
    }
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(t.selected);
    let mut state = TableState::default().with_selected(Some(st.sel));
    frame.render_stateful_widget(table, area, &mut state);
}

/// The pane title: side, token count, rate and state.
fn title(name: &str, s: &Stream, current: bool, pending: bool, extra: &str) -> String {
    let state = if !current {
        "previous".to_string()
    } else {
        match s.stop {
            None if pending => "streaming".into(),
            None => "stopped".into(),
            Some(StopReason::EndToken) => "done".into(),
            Some(StopReason::MaxTokens) => "limit".into(),
            Some(StopReason::ContextFull) => "context full".into(),
            Some(StopReason::Cancelled) => "cancelled".into(),
            Some(StopReason::Stopped) => "stopped".into(),
        }
    };
    let rate = if s.cached {
        " · cached".to_string()
    } else if s.rate > 0.0 {
        format!(" · {:.1} tok/s", s.rate)
    } else {
        String::new()
    };
    format!(" {name} · {} tok{extra}{rate} · {state} ", s.tokens.len())
}

/// Text pieces with styles, split into lines at newlines.
fn lines_of(pieces: Vec<(String, Style)>) -> Vec<Line<'static>> {
    let mut lines = vec![Line::default()];
    for (text, style) in pieces {
        for (i, part) in text.split('\n').enumerate() {
            if i > 0 {
                lines.push(Line::default());
            }
            if !part.is_empty()
                && let Some(l) = lines.last_mut()
            {
                l.spans.push(Span::styled(part.to_string(), style));
            }
        }
    }
    lines
}

fn render_default(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let st = &app.steer;
    let s = &st.default;
    let current = s.ticket == st.ticket && st.ticket > 0;
    let style = if current { t.text } else { t.dim };
    let mut pieces: Vec<(String, Style)> =
        s.tokens.iter().map(|(_, x)| (x.clone(), style)).collect();
    pieces.push((s.tail.clone(), style));
    if st.ticket == 0 {
        let hint = format!(
            "press {} to generate, or edit a row",
            key(app, Action::Regenerate)
        );
        pieces.push((hint, t.dim));
    } else if current && s.stop.is_none() && st.pending {
        pieces.push(("▌".into(), t.busy));
    }
    let block = Block::bordered()
        .title(Span::styled(
            title("default", s, current, st.pending, ""),
            t.header,
        ))
        .border_style(t.border);
    render_text(app, frame, area, block, lines_of(pieces));
}

/// A generation pane: wrapped text scrolled by the panes' shared offset, stopping at its end.
fn render_text(app: &App, frame: &mut Frame<'_>, area: Rect, block: Block<'_>, text: Vec<Line>) {
    let inner = block.inner(area);
    let rows = wrapped_rows(&text, inner.width);
    let scroll = app.steer.scroll.min(rows.saturating_sub(inner.height));
    let block = if rows > inner.height {
        let shown = format!(
            " lines {}–{} of {rows} · PgUp/PgDn ",
            scroll + 1,
            (scroll + inner.height).min(rows)
        );
        block.title_bottom(Span::styled(shown, app.theme.dim))
    } else {
        block
    };
    app.hit(area, Hit::SteerText);
    let p = Paragraph::new(text)
        .block(block)
        .wrap(Wrap { trim: false })
        .scroll((scroll, 0));
    frame.render_widget(p, area);
}

/// Rows `lines` take when wrapped at `width` columns (words may wrap earlier; close enough to
/// bound the scroll).
fn wrapped_rows(lines: &[Line], width: u16) -> u16 {
    let w = usize::from(width.max(1));
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(w).max(1)).sum();
    u16::try_from(rows).unwrap_or(u16::MAX)
}

fn render_steered(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let st = &app.steer;
    let s = &st.steered;
    let current = s.ticket == st.ticket && st.ticket > 0;
    let default_ids: Vec<u32> = st.default.tokens.iter().map(|x| x.0).collect();
    let ids: Vec<u32> = s.tokens.iter().map(|x| x.0).collect();
    let marks = changed(&default_ids, &ids);
    let n_changed = marks.iter().filter(|&&m| m).count();
    let (plain, diff) = if current {
        (t.text, t.diff)
    } else {
        (t.dim, t.dim)
    };
    let mut pieces: Vec<(String, Style)> = s
        .tokens
        .iter()
        .zip(&marks)
        .map(|((_, x), &m)| (x.clone(), if m { diff } else { plain }))
        .collect();
    pieces.push((s.tail.clone(), plain));
    if st.rows.is_empty() {
        pieces = vec![(
            "no steering rows: the steered text appears here".into(),
            t.dim,
        )];
    } else if current && s.stop.is_none() && st.pending {
        pieces.push(("▌".into(), t.busy));
    }
    let extra = format!(" · {n_changed} differ");
    let block = Block::bordered()
        .title(Span::styled(
            title("steered", s, current, st.pending, &extra),
            t.header,
        ))
        .border_style(t.border);
    render_text(app, frame, area, block, lines_of(pieces));
}
