//! The image screen: the image with the selected feature's heatmap and a patch cursor, the
//! features that fire on it, and those that fire at the cursor's tokens (the high-resolution
//! tile token under it and the base-view token at the same spot).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph};

use image::RgbImage;

use crate::model::anyres::{PixelRect, TokenKind};
use crate::tui::app::{App, Hit, ImageFocus};
use crate::tui::ui::graphics::Graphics;
use crate::tui::ui::heatmap::outline;

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
    let hi = app
        .features_at_cursor()
        .into_iter()
        .find(|t| t.token.kind == TokenKind::HighRes);
    let patch = match &hi {
        Some(t) => format!(
            "tile {} · row {} · col {}",
            t.token.tile, t.token.row, t.token.col
        ),
        None => format!("patch {},{}", im.cursor.0, im.cursor.1),
    };
    let title = format!(" {} · feature {feature} · {patch} ", im.label);
    let block = Block::bordered()
        .title(Span::styled(title, t.title))
        .border_style(focus(ImageFocus::Grid));
    let inner = block.inner(left);
    frame.render_widget(block, left);
    match (&im.picture, &im.rgb) {
        (Some(p), _) => {
            let mut pic = p.overlay(&app.style, &app.theme.ramp, None);
            // Drawn into the picture, the cursor shows with every graphics protocol.
            if let Some(rect) = hi.as_ref().and_then(|t| t.token.rect) {
                outline_patch(&mut pic, rect, app, inner);
            }
            let drawn = gfx.draw(frame, inner, &pic);
            app.hit(drawn, Hit::Picture);
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

/// Outline the cursor's patch `rect` (in the image's own pixels) on `pic`, the picture about to
/// be drawn into `area`.
fn outline_patch(pic: &mut RgbImage, rect: PixelRect, app: &App, area: Rect) {
    let Some(a) = &app.image.analysis else { return };
    let (oh, ow) = (a.layout.original.0 as f32, a.layout.original.1 as f32);
    let (pw, ph) = (pic.width() as f32, pic.height() as f32);
    let sx = |x: f32| (x / ow * pw).round() as u32;
    let sy = |y: f32| (y / oh * ph).round() as u32;
    // One band at least as thick as the sampling step of half blocks (the coarsest drawing).
    let band = (
        (pw / f32::from(area.width.max(1))).ceil() as u32,
        (ph / (2.0 * f32::from(area.height.max(1)))).ceil() as u32,
    );
    outline(
        pic,
        (sx(rect.x0), sy(rect.y0), sx(rect.x1), sy(rect.y1)),
        band,
    );
}
