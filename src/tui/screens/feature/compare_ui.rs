//! Two features side by side on the feature screen: the one marked with `c` and the one shown,
//! each with its statistics, label or explanation, what it writes (when its page is known) and
//! its strongest examples.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::ui::{fit_title, grid_shape};
use crate::tui::app::App;
use crate::tui::data::FeatureDetail;
use crate::tui::keymap::Action;
use crate::tui::ui::graphics::Graphics;

/// Lines of text above each side's examples.
const TEXT_ROWS: u16 = 9;
/// Tokens of the logit lens shown per side.
const LENS_SHOWN: usize = 4;

/// Draw `marked` beside `shown` into `area`.
pub fn render(
    app: &App,
    marked: &FeatureDetail,
    shown: &FeatureDetail,
    frame: &mut Frame<'_>,
    area: Rect,
    gfx: &mut Graphics,
) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    side(app, marked, "marked", frame, left, gfx);
    side(app, shown, "shown", frame, right, gfx);
}

fn side(
    app: &App,
    d: &FeatureDetail,
    role: &str,
    frame: &mut Frame<'_>,
    area: Rect,
    gfx: &mut Graphics,
) {
    let t = &app.theme;
    let key = app.key_for(Action::Compare);
    let block = Block::bordered()
        .title(Span::styled(
            format!(" feature {} ({role}) ", d.id),
            t.title,
        ))
        .title_bottom(Span::styled(format!(" {key}: stop comparing "), t.dim))
        .border_style(t.focus_border);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [text, grid] =
        Layout::vertical([Constraint::Length(TEXT_ROWS), Constraint::Min(1)]).areas(inner);
    frame.render_widget(
        Paragraph::new(text_lines(app, d)).wrap(Wrap { trim: true }),
        text,
    );
    let g = grid_shape(grid.width, grid.height, d.examples.len());
    let scale = app.row(d.id).map(|r| r.max);
    for (i, ex) in d.examples.iter().take(g.cols * g.rows).enumerate() {
        let (r, c) = ((i / g.cols) as u16, (i % g.cols) as u16);
        let cell = Rect::new(
            grid.x + c * g.cell_w,
            grid.y + r * g.cell_h,
            g.cell_w,
            g.cell_h,
        )
        .intersection(grid);
        let b = Block::bordered()
            .title(fit_title(
                &format!("#{} {}", i + 1, ex.picture.label),
                g.cell_w.saturating_sub(2),
            ))
            .title_bottom(format!("max {:.2}", ex.max))
            .border_style(t.border);
        let pic = b.inner(cell);
        frame.render_widget(b, cell);
        gfx.draw(
            frame,
            pic,
            &ex.picture.overlay(&app.style, &app.theme.ramp, scale),
        );
    }
}

/// Statistics, the label or explanation, and the top of the logit lens.
fn text_lines(app: &App, d: &FeatureDetail) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = Vec::new();
    if let Some(r) = app.row(d.id) {
        lines.push(Line::from(Span::styled(
            format!(
                "density {:.5} · max {:.3} · {} images",
                r.density, r.max, r.images
            ),
            t.text,
        )));
        let said = r
            .shown_text()
            .unwrap_or_else(|| "no explanation yet".into());
        lines.push(Line::from(Span::styled(said, t.text)));
    }
    if let Some(s) = &d.stats {
        lines.push(Line::from(Span::styled(
            format!("mean when fired {:.3}", s.mean_when_fired()),
            t.dim,
        )));
    }
    match app.pages.get(&d.id) {
        Some(p) => {
            let tokens = |list: &[crate::dashboard::TokenLogit]| {
                list.iter()
                    .take(LENS_SHOWN)
                    .map(|x| format!("{:?}", x.readable().unwrap_or_else(|| "?".into())))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            lines.push(Line::from(Span::styled(
                format!("raises {}", tokens(&p.logit_lens.raises)),
                t.text,
            )));
            lines.push(Line::from(Span::styled(
                format!("lowers {}", tokens(&p.logit_lens.lowers)),
                t.text,
            )));
        }
        None => lines.push(Line::from(Span::styled(
            format!(
                "what it writes: {} on its own page",
                app.key_for(Action::TogglePage)
            ),
            t.dim,
        ))),
    }
    lines
}
