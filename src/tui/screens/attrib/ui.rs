//! The attribution screen's panes: the inputs on top, the ranked latents on the left and the
//! selected latent's patch attribution over the image on the right.
//!
//! Attributions are signed; the map draws one non-negative view of them in the theme's heatmap
//! ramp, chosen with the sign key: |attribution| (default), the positive part (patches pushing
//! towards the answer) or the negated negative part (patches pushing towards the baseline).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};

use crate::heatmap::overlay::render_overlay;
use crate::tui::app::App;
use crate::tui::data::field_at;
use crate::tui::keymap::Action;
use crate::tui::ui::graphics::Graphics;

/// Draw the attribution screen into `area`.
pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect, gfx: &mut Graphics) {
    let [inputs, body] = Layout::vertical([Constraint::Length(6), Constraint::Min(3)]).areas(area);
    render_inputs(app, frame, inputs);
    let [list, picture] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
    render_list(app, frame, list);
    render_picture(app, frame, picture, gfx);
}

fn render_inputs(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let st = &app.attrib;
    let field = |action: Action, name: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{:>3} ", app.key_for(action)), t.key),
            Span::styled(format!("{name:<9}"), t.header),
            Span::styled(value, t.text),
        ])
    };
    let quoted = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            format!("{s:?}")
        }
    };
    let lines = vec![
        field(
            Action::AttribImage,
            "image",
            st.image.clone().unwrap_or_else(|| "(none)".into()),
        ),
        field(Action::AttribPrompt, "prompt", quoted(&st.prompt)),
        field(Action::AttribAnswer, "answer", quoted(&st.answer)),
        field(Action::AttribBaseline, "baseline", quoted(&st.baseline)),
    ];
    let state = if st.pending {
        "(model working …) ".to_string()
    } else {
        format!("· {} runs ", app.key_for(Action::AttribRun))
    };
    let block = Block::bordered()
        .title(Line::from(vec![
            Span::styled(" attribution ", t.title),
            Span::styled(state, t.dim),
        ]))
        .border_style(t.border);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_list(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let st = &app.attrib;
    let title = match &st.result {
        Some(r) => format!(
            " {} latents by {} · M {:.3} ({} − {}) ",
            st.ranked.len(),
            st.sort.label(),
            r.patched_metric,
            r.answer.token,
            r.baseline.token
        ),
        None => " latents ".into(),
    };
    let block = Block::bordered()
        .title(Span::styled(title, t.title))
        .border_style(t.focus_border);
    if st.result.is_none() {
        let text = match (&st.error, st.pending) {
            (_, true) => Span::styled("attributing …", t.dim),
            (Some(e), _) => Span::styled(e.clone(), t.error),
            (None, _) => Span::styled("type a prompt, answer and baseline, then run", t.dim),
        };
        frame.render_widget(
            Paragraph::new(Line::from(text))
                .wrap(ratatui::widgets::Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    }
    let header = Row::new(["latent", "total", "image", "text", "explanation"]).style(t.header);
    let rows = st.ranked.iter().map(|l| {
        let text = app
            .row(l.latent)
            .and_then(|r| r.shown_text())
            .unwrap_or_else(|| "-".into());
        Row::new(vec![
            Cell::from(format!("{:>6}", l.latent)),
            Cell::from(format!("{:>9.4}", l.total)),
            Cell::from(format!("{:>9.4}", l.image)),
            Cell::from(format!("{:>9.4}", l.text)),
            Cell::from(text),
        ])
        .style(t.text)
    });
    let widths = [
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Min(4),
    ];
    let inner = block.inner(area);
    let visible = usize::from(inner.height.saturating_sub(1)).max(1);
    let mut state = TableState::default()
        .with_offset(st.sel.saturating_sub(visible - 1))
        .with_selected((!st.ranked.is_empty()).then_some(st.sel));
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(t.selected);
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_picture(app: &App, frame: &mut Frame<'_>, area: Rect, gfx: &mut Graphics) {
    let t = &app.theme;
    let st = &app.attrib;
    let latent = st
        .selected()
        .map_or("-".to_string(), |l| l.latent.to_string());
    let title = format!(" latent {latent} · {} ", st.sign.label());
    let block = Block::bordered()
        .title(Span::styled(title, t.title))
        .border_style(t.border);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let layout = st.result.as_ref().and_then(|r| r.layout.as_ref());
    let (Some(rgb), Some(layout)) = (&st.rgb, layout) else {
        let why = if st.result.is_some() {
            "no image in this attribution"
        } else {
            ""
        };
        frame.render_widget(Paragraph::new(why).style(t.dim), inner);
        return;
    };
    let field = field_at(layout, &st.map_acts(), rgb.width(), rgb.height());
    let img = render_overlay(rgb, &field, &app.style, &t.ramp, None);
    gfx.draw(frame, inner, &img);
}
