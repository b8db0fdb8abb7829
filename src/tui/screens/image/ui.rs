//! The image screen: the image with the selected feature's heatmap and a patch cursor, the
//! features that fire on it, and those that fire at the cursor's tokens (the high-resolution
//! tile token under it and the base-view token at the same spot).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph};

use crate::model::anyres::TokenKind;
use crate::tui::app::{App, Hit, ImageFocus};
use crate::tui::ui::graphics::Graphics;

/// Draw the image screen into `area`.
pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect, gfx: &mut Graphics) {
    let t = &app.theme;
    let im = &app.image;
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
    let focus = |f: ImageFocus| {
        if im.focus == f {
            t.focus_border
        } else {
            t.border
        }
    };
    let feature = im
        .features
        .get(im.sel)
        .map_or("-".into(), |f| f.0.to_string());
    let title = format!(
        " {} · feature {feature} · patch {},{} ",
        im.label, im.cursor.0, im.cursor.1
    );
    let block = Block::bordered()
        .title(Span::styled(title, t.title))
        .border_style(focus(ImageFocus::Grid));
    let inner = block.inner(left);
    frame.render_widget(block, left);
    match (&im.picture, &im.rgb) {
        (Some(p), _) => {
            let drawn = gfx.draw(frame, inner, &p.overlay(&app.style, &app.theme.ramp, None));
            app.hit(drawn, Hit::Picture);
            draw_cursor(app, frame, drawn);
        }
        (None, Some(rgb)) => {
            gfx.draw(frame, inner, rgb);
        }
        (None, None) => {
            frame.render_widget(Paragraph::new("reading the image …").style(t.dim), inner)
        }
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
    let list_inner = lb.inner(list);
    let visible = usize::from(list_inner.height).max(1);
    let first = im.sel.saturating_sub(visible - 1);
    for k in 0..items.len().saturating_sub(first).min(visible) {
        let row = Rect::new(list_inner.x, list_inner.y + k as u16, list_inner.width, 1);
        app.hit(row, Hit::ImageFeature(first + k));
    }
    let mut state = ListState::default()
        .with_offset(first)
        .with_selected((!items.is_empty()).then_some(im.sel));
    frame.render_stateful_widget(
        List::new(items)
            .style(t.text)
            .highlight_style(t.selected)
            .block(lb),
        list,
        &mut state,
    );
    let mut here: Vec<Line> = Vec::new();
    let toks = app.features_at_cursor();
    // Share the pane's rows between the tokens: a heading and its strongest features each.
    let room = usize::from(at.height.saturating_sub(2)) / toks.len().max(1);
    let per = room.saturating_sub(1).max(1);
    for tok in toks {
        let what = match tok.token.kind {
            TokenKind::Base => format!("base view {},{}", tok.token.row, tok.token.col),
            _ => format!(
                "tile {} · map {},{}",
                tok.token.tile, tok.token.row, tok.token.col
            ),
        };
        here.push(Line::from(Span::styled(
            format!("{what} (token {})", tok.index),
            t.header,
        )));
        if tok.features.is_empty() {
            here.push(Line::from(Span::styled("  nothing fires", t.dim)));
        }
        for (f, v) in tok.features.iter().take(per) {
            here.push(Line::from(Span::styled(
                format!("{f:>6}  {v:>7.3}"),
                t.text,
            )));
        }
    }
    let ab = Block::bordered()
        .title(" at the cursor (Tab, or click) ")
        .border_style(t.border);
    frame.render_widget(Paragraph::new(here).block(ab), at);
}

/// Mark the high-resolution cell under the cursor over the picture drawn in `r`.
fn draw_cursor(app: &App, frame: &mut Frame<'_>, r: Rect) {
    let Some(a) = &app.image.analysis else { return };
    if r.width == 0 || r.height == 0 {
        return;
    }
    let (oh, ow) = (a.layout.original.0 as f32, a.layout.original.1 as f32);
    let hi = app
        .features_at_cursor()
        .into_iter()
        .find(|t| t.token.kind == TokenKind::HighRes);
    let Some(p) = hi.and_then(|t| t.token.rect) else {
        return;
    };
    let x = r.x + (((p.x0 + p.x1) / 2.0 / ow) * f32::from(r.width)) as u16;
    let y = r.y + (((p.y0 + p.y1) / 2.0 / oh) * f32::from(r.height)) as u16;
    let style = app.theme.cursor;
    if let Some(cell) = frame
        .buffer_mut()
        .cell_mut((x.min(r.right() - 1), y.min(r.bottom() - 1)))
    {
        cell.set_symbol("+").set_fg(style.fg.unwrap_or_default());
    }
}
