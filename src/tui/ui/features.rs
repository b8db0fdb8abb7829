//! The features table: id, density, max, images, score, explanation; sortable and filterable.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Row, Table, TableState};

use crate::tui::app::{App, Column};

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
    .style(t.style("header"));
    let rows = fs.view.iter().map(|&i| {
        let r = &fs.rows[i];
        Row::new(vec![
            Cell::from(format!("{:>6}", r.id)),
            Cell::from(format!("{:>9.5}", r.density)),
            Cell::from(format!("{:>7.3}", r.max)),
            Cell::from(format!("{:>6}", r.images)),
            Cell::from(r.score.map_or("-".to_string(), |s| format!("{s:.2}"))),
            Cell::from(r.explanation.clone().unwrap_or_else(|| "-".into())),
        ])
        .style(t.style("text"))
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(11),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Min(10),
    ];
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
            t.style("title"),
        ),
        Span::styled(filters.join(" · "), t.style("dim")),
    ]);
    let table = Table::new(rows, widths)
        .header(header)
        .block(
            Block::bordered()
                .title(title)
                .border_style(t.style("focus-border")),
        )
        .row_highlight_style(t.style("selected"));
    let mut state = TableState::default().with_selected((!fs.view.is_empty()).then_some(fs.sel));
    frame.render_stateful_widget(table, area, &mut state);
}
