//! The features table: id, density, max, images, score, explanation (or the human label,
//! marked); sortable by any column (keys or a click on its header) and filterable.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Row, Table, TableState};

use crate::tui::app::{App, Column, Hit};

/// Widths of the columns before the last, which takes the rest.
const WIDTHS: [u16; 5] = [8, 11, 9, 8, 7];

/// Draw the table into `area`.
pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let fs = &app.features;
    let (sort_col, desc) = fs.sort;
    let header = Row::new(Column::ALL.iter().enumerate().map(|(i, c)| {
        let arrow = if i == sort_col {
            if desc { " ▼" } else { " ▲" }
        } else {
            ""
        };
        Cell::from(format!("{}{arrow}", c.title()))
    }))
    .style(t.header);
    let rows = fs.view.iter().map(|&i| {
        let r = &fs.rows[i];
        Row::new(vec![
            Cell::from(format!("{:>6}", r.id)),
            Cell::from(format!("{:>9.5}", r.density)),
            Cell::from(format!("{:>7.3}", r.max)),
            Cell::from(format!("{:>6}", r.images)),
            Cell::from(r.score.map_or("-".to_string(), |s| format!("{s:>5.2}"))),
            Cell::from(r.shown_text().unwrap_or_else(|| "-".into())),
        ])
        .style(t.text)
    });
    let mut widths: Vec<Constraint> = WIDTHS.iter().map(|&w| Constraint::Length(w)).collect();
    widths.push(Constraint::Min(10));
    let mut filters = Vec::new();
    if !fs.search.is_empty() {
        filters.push(format!("search {:?}", fs.search));
    }
    if let Some((lo, hi)) = fs.density {
        filters.push(format!("density {lo}..{hi}"));
    }
    let title = Line::from(vec![
        Span::styled(
            format!(" features {}/{} ", fs.view.len(), fs.rows.len()),
            t.title,
        ),
        Span::styled(filters.join(" · "), t.dim),
    ]);
    let block = Block::bordered().title(title).border_style(t.focus_border);
    let inner = block.inner(area);
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(t.selected);
    // The same scrolling rule as the table's own (selection on the last visible row), fixed
    // here so the clickable rows below match what is drawn.
    let visible = usize::from(inner.height.saturating_sub(1)).max(1);
    let first = fs.sel.saturating_sub(visible - 1);
    let mut state = TableState::default()
        .with_offset(first)
        .with_selected((!fs.view.is_empty()).then_some(fs.sel));
    frame.render_stateful_widget(table, area, &mut state);
    record_hits(app, inner, first, visible);
}

/// Header cells sort, rows select (and open when selected).
fn record_hits(app: &App, inner: Rect, first: usize, visible: usize) {
    let mut x = inner.x;
    for (i, &w) in WIDTHS.iter().enumerate() {
        app.hit(
            Rect::new(x, inner.y, w, 1).intersection(inner),
            Hit::Header(i),
        );
        x += w + 1;
    }
    let rest = Rect::new(x, inner.y, inner.right().saturating_sub(x), 1).intersection(inner);
    app.hit(rest, Hit::Header(WIDTHS.len()));
    let shown = app.features.view.len().saturating_sub(first).min(visible);
    for k in 0..shown {
        let y = inner.y + 1 + k as u16;
        let row = Rect::new(inner.x, y, inner.width, 1).intersection(inner);
        app.hit(row, Hit::FeatureRow(first + k));
    }
}
