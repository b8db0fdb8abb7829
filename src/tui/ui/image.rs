//! The image screen: the image with the selected feature's heatmap and a patch cursor, the
//! features that fire on it, and those that fire at the cursor.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph};

use super::graphics::Graphics;
use super::heatmap::fitted_rect;
use crate::tui::app::{App, ImageFocus};

/// Draw the image screen into `area`.
pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect, gfx: &mut Graphics) {
    let t = &app.theme;
    let im = &app.image;
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
    let focus = |f: ImageFocus| {
        if im.focus == f {
            t.style("focus-border")
        } else {
            t.style("border")
        }
    };
    let feature = im
        .features
        .get(im.sel)
        .map_or("-".into(), |f| f.0.to_string());
    let title = format!(
        " {} · feature {feature} · cursor {},{} ",
        im.label, im.cursor.0, im.cursor.1
    );
    let block = Block::bordered()
        .title(Span::styled(title, t.style("title")))
        .border_style(focus(ImageFocus::Grid));
    let inner = block.inner(left);
    frame.render_widget(block, left);
    match (&im.picture, &im.rgb) {
        (Some(p), _) => {
            gfx.draw(frame, inner, &p.overlay(&app.style, &app.theme.ramp, None));
            draw_cursor(app, frame, inner, p.rgb.width(), p.rgb.height());
        }
        (None, Some(rgb)) => gfx.draw(frame, inner, rgb),
        (None, None) => frame.render_widget(
            Paragraph::new("reading the image …").style(t.style("dim")),
            inner,
        ),
    }
    let [list, at] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(right);
    let items: Vec<ListItem> = im
        .features
        .iter()
        .map(|(f, max, n)| ListItem::new(format!("{f:>6}  max {max:>7.3}  {n:>4} tok")))
        .collect();
    let waiting = if im.pending {
        " (model working …)"
    } else {
        ""
    };
    let lb = Block::bordered()
        .title(format!(
            " features on image: {}{waiting} ",
            im.features.len()
        ))
        .border_style(focus(ImageFocus::List));
    let mut state = ListState::default().with_selected((!items.is_empty()).then_some(im.sel));
    frame.render_stateful_widget(
        List::new(items)
            .style(t.style("text"))
            .highlight_style(t.style("selected"))
            .block(lb),
        list,
        &mut state,
    );
    let here: Vec<Line> = app
        .features_at_cursor()
        .iter()
        .map(|(f, v)| Line::from(Span::styled(format!("{f:>6}  {v:>7.3}"), t.style("text"))))
        .collect();
    let ab = Block::bordered()
        .title(" at cursor patch (Tab: move cursor) ")
        .border_style(t.style("border"));
    frame.render_widget(Paragraph::new(here).block(ab), at);
}

/// Mark the base-grid cell under the cursor with corner glyphs over the picture.
fn draw_cursor(app: &App, frame: &mut Frame<'_>, inner: Rect, iw: u32, ih: u32) {
    let Some(a) = &app.image.analysis else { return };
    let g = f64::from(a.layout.grid_side.max(1));
    let r = fitted_rect(iw, ih, inner);
    if r.width == 0 || r.height == 0 {
        return;
    }
    let (row, col) = (f64::from(app.image.cursor.0), f64::from(app.image.cursor.1));
    let x = r.x + ((col + 0.5) / g * f64::from(r.width)) as u16;
    let y = r.y + ((row + 0.5) / g * f64::from(r.height)) as u16;
    let style = app.theme.style("cursor");
    if let Some(cell) = frame
        .buffer_mut()
        .cell_mut((x.min(r.right() - 1), y.min(r.bottom() - 1)))
    {
        cell.set_symbol("+").set_fg(style.fg.unwrap_or_default());
    }
}
