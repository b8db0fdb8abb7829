//! Drawing a feature's page in place of its examples: what it writes (the logit lens), its
//! nearest features by decoder and encoder direction, and the features that fire with it.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::dashboard::{CoFiring, FeaturePage, Neighbour, TokenLogit};
use crate::tui::app::{App, PageState};
use crate::tui::keymap::Action;

/// Draw the page of the feature shown into `area`.
pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let back = app.key_for(Action::TogglePage);
    let page = match &app.feature.page {
        PageState::Ready(p) => p,
        other => {
            let text = match other {
                PageState::Failed(e) => Span::styled(e.clone(), t.error),
                _ => Span::styled(
                    "computing: logit lens, neighbours, co-firing over the top images …",
                    t.busy,
                ),
            };
            let block = Block::bordered()
                .title(Span::styled(
                    format!(" page · {back} shows the examples "),
                    t.title,
                ))
                .border_style(t.focus_border);
            frame.render_widget(Paragraph::new(text).block(block), area);
            return;
        }
    };
    let [writes, near, with] = Layout::horizontal([
        Constraint::Percentage(32),
        Constraint::Percentage(30),
        Constraint::Percentage(38),
    ])
    .areas(area);
    let block = |title: String| {
        Block::bordered()
            .title(Span::styled(title, t.title))
            .border_style(t.border)
    };
    frame.render_widget(
        Paragraph::new(writes_lines(app, page)).block(
            block(" writes ".into())
                .title_bottom(Span::styled(format!(" {back}: examples "), t.dim)),
        ),
        writes,
    );
    frame.render_widget(
        Paragraph::new(neighbour_lines(app, page)).block(
            block(" nearest features ".into()).title_bottom(Span::styled(
                format!(" {} opens ", app.key_for(Action::Open)),
                t.dim,
            )),
        ),
        near,
    );
    frame.render_widget(
        Paragraph::new(cofiring_lines(app, page)).block(block(format!(
            " fires with · {} images ",
            page.cofiring_images
        ))),
        with,
    );
}

/// A token as the page shows it: its piece with byte-level BPE's space and newline marks read
/// back, quoted so spaces show; or its id.
fn token_text(t: &TokenLogit) -> String {
    match t.readable() {
        Some(s) => format!("{s:?}"),
        None => format!("#{}", t.token),
    }
}

fn writes_lines(app: &App, p: &FeaturePage) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = vec![Line::from(Span::styled("raises", t.header))];
    let entry = |x: &TokenLogit| {
        Line::from(vec![
            Span::styled(format!("{:>+8.3} ", x.logit), t.dim),
            Span::styled(token_text(x), t.text),
        ])
    };
    lines.extend(p.logit_lens.raises.iter().map(entry));
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("lowers", t.header)));
    lines.extend(p.logit_lens.lowers.iter().map(entry));
    lines
}

/// Why the page links to a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Close by decoder direction.
    Decoder,
    /// Close by encoder direction.
    Encoder,
    /// Fires on the same tokens.
    CoFiring,
}

/// The features a page links to, in the order the cursor walks them: decoder neighbours,
/// encoder neighbours, then the features that fire with it.
pub(crate) fn linked_features(p: &FeaturePage) -> Vec<(Link, u32)> {
    let near = |link, list: &[Neighbour]| {
        list.iter()
            .map(move |n| (link, n.feature))
            .collect::<Vec<_>>()
    };
    let mut out = near(Link::Decoder, &p.decoder_neighbours);
    out.extend(near(Link::Encoder, &p.encoder_neighbours));
    out.extend(p.cofiring.iter().map(|c| (Link::CoFiring, c.feature)));
    out
}

/// Where the page's cursor is, as an index into [`linked_features`].
fn cursor(app: &App, p: &FeaturePage) -> usize {
    app.feature
        .page_sel
        .min(linked_features(p).len().saturating_sub(1))
}

fn neighbour_lines(app: &App, p: &FeaturePage) -> Vec<Line<'static>> {
    let t = &app.theme;
    let at = cursor(app, p);
    let side = |title: &str, list: &[Neighbour], first: usize| {
        let mut out = vec![Line::from(Span::styled(
            format!("{title} cosine"),
            t.header,
        ))];
        out.extend(list.iter().enumerate().map(|(i, n)| {
            let label = app
                .row(n.feature)
                .and_then(|r| r.shown_text())
                .unwrap_or_default();
            let line = Line::from(vec![
                Span::styled(format!("{:>6} {:>5.3} ", n.feature, n.cosine), t.text),
                Span::styled(label, t.dim),
            ]);
            if first + i == at {
                line.style(t.selected)
            } else {
                line
            }
        }));
        out
    };
    let mut lines = side("decoder", &p.decoder_neighbours, 0);
    lines.push(Line::default());
    lines.extend(side(
        "encoder",
        &p.encoder_neighbours,
        p.decoder_neighbours.len(),
    ));
    lines
}

fn cofiring_lines(app: &App, p: &FeaturePage) -> Vec<Line<'static>> {
    let t = &app.theme;
    let at = cursor(app, p);
    let first = p.decoder_neighbours.len() + p.encoder_neighbours.len();
    // Jaccard over (image, token) pairs; n tokens shared; p = P(it fires | this one fires).
    let mut lines = vec![Line::from(Span::styled(" feat jacc     n    p", t.header))];
    if p.cofiring.is_empty() {
        lines.push(Line::from(Span::styled("nothing fires with it", t.dim)));
    }
    lines.extend(
        p.cofiring
            .iter()
            .enumerate()
            .map(|(i, c): (usize, &CoFiring)| {
                let line = Line::from(Span::styled(
                    format!(
                        "{:>5} {:>4.2} {:>5} {:>4.2}",
                        c.feature, c.jaccard, c.shared, c.p_given_feature
                    ),
                    t.text,
                ));
                if first + i == at {
                    line.style(t.selected)
                } else {
                    line
                }
            }),
    );
    lines
}
