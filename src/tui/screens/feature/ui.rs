//! The feature screen: statistics, histogram and explanation on the left, the top examples as a
//! grid of heatmaps on the right, and a full-size view of one example.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Sparkline, Wrap};

use crate::model::anyres::TokenKind;
use crate::session::encode::position_name;
use crate::store::{HIST_LEN, PositionRow, hist_edges};
use crate::tui::app::{App, Hit};
use crate::tui::data::{ExampleSet, ExampleView, FeatureDetail, HUMAN_MARK};
use crate::tui::keymap::Action;
use crate::tui::ui::graphics::Graphics;

/// Width of the left information column.
const INFO_W: u16 = 34;
/// Height of the smallest grid cell, border included (its width is twice that: terminal cells
/// are about twice as tall as wide, so the picture inside is about square).
const MIN_CELL_H: u16 = 11;
/// Height of the largest grid cell.
const MAX_CELL_H: u16 = 30;
/// Examples the grid keeps in view when it grows its cells on a large terminal.
const MIN_VISIBLE: usize = 8;

/// The example grid's layout: columns, rows, and one cell's size, border included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridShape {
    /// Examples a row holds.
    pub cols: usize,
    /// Rows in view.
    pub rows: usize,
    /// Cell width.
    pub cell_w: u16,
    /// Cell height.
    pub cell_h: u16,
}

/// The grid for `examples` inside a `width x height` area: the largest cells that still show
/// [`MIN_VISIBLE`] examples (or all of them), and never smaller than the smallest cell.
pub fn grid_shape(width: u16, height: u16, examples: usize) -> GridShape {
    let shape = |cell_h: u16| {
        let cell_w = cell_h * 2;
        GridShape {
            cols: usize::from((width / cell_w).max(1)),
            rows: usize::from((height / cell_h).max(1)),
            cell_w,
            cell_h,
        }
    };
    let want = examples.clamp(1, MIN_VISIBLE);
    (MIN_CELL_H..=MAX_CELL_H)
        .rev()
        .map(shape)
        .find(|g| g.cols * g.rows >= want)
        .unwrap_or_else(|| shape(MIN_CELL_H))
}

/// The grid of the feature screen on a terminal of `size` (columns, rows).
pub fn screen_grid(size: (u16, u16), examples: usize) -> GridShape {
    // Title and status lines, and the grid's border.
    let (w, h) = (size.0.saturating_sub(INFO_W + 2), size.1.saturating_sub(4));
    grid_shape(w, h, examples)
}

/// Draw the feature screen into `area`.
pub fn render(app: &App, frame: &mut Frame<'_>, area: Rect, gfx: &mut Graphics) {
    let t = &app.theme;
    let [info, grid] =
        Layout::horizontal([Constraint::Length(INFO_W), Constraint::Min(10)]).areas(area);
    let id = app.feature.id.map_or("-".to_string(), |f| f.to_string());
    let Some(detail) = app
        .feature
        .detail
        .as_ref()
        .filter(|d| Some(d.id) == app.feature.id)
    else {
        let msg = Paragraph::new(format!("loading feature {id} …")).style(t.dim);
        frame.render_widget(
            msg.block(Block::bordered().title(format!(" feature {id} "))),
            area,
        );
        return;
    };
    render_info(app, detail, frame, info);
    if let Some(marked) = app
        .feature
        .marked
        .as_ref()
        .filter(|_| app.feature.comparing)
    {
        super::compare_ui::render(app, marked, detail, frame, grid, gfx);
        return;
    }
    if app.feature.show_page {
        super::page_ui::render(app, frame, grid);
        return;
    }
    render_grid(app, detail, frame, grid, gfx);
    if app.feature.full
        && let Some(ex) = detail.examples_of(app.feature.set).get(app.feature.sel)
    {
        render_full(app, ex, frame, area, gfx);
    }
}

fn render_info(app: &App, d: &FeatureDetail, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let row = app.row(d.id);
    let [text, hist] = Layout::vertical([Constraint::Min(6), Constraint::Length(7)]).areas(area);
    let kv = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<10}"), t.dim),
            Span::styled(v, t.text),
        ])
    };
    let mut lines = vec![];
    if let Some(r) = row {
        lines.push(kv("density", format!("{:.5}", r.density)));
        lines.push(kv("max", format!("{:.3}", r.max)));
        lines.push(kv("images", r.images.to_string()));
    }
    if let Some(s) = &d.stats {
        lines.push(kv("mean", format!("{:.3}", s.mean_when_fired())));
    }
    if let Some(rows) = &d.by_position {
        lines.extend(position_lines(app, rows));
    }
    lines.push(kv(
        "heatmap",
        if app.mask_style() {
            "binary mask (m)".into()
        } else {
            "intensity (m)".into()
        },
    ));
    lines.push(Line::default());
    lines.extend(explanation_lines(app, d));
    let block = Block::bordered()
        .title(Span::styled(format!(" feature {} ", d.id), t.title))
        .border_style(t.border);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(block),
        text,
    );
    render_hist(app, d, frame, hist);
}

/// Where the feature fires by kind of position: density and mean activation per kind, or that
/// the kind was not scored.
fn position_lines(app: &App, rows: &[PositionRow]) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = vec![Line::from(Span::styled(
        format!("{:<10}{:<10}{}", "where", "density", "mean"),
        t.dim,
    ))];
    for r in rows {
        let cells = match (r.density, r.mean) {
            (None, _) => "not scored".to_string(),
            (Some(d), None) => format!("{d:<10.5}-"),
            (Some(d), Some(m)) => format!("{d:<10.5}{m:.3}"),
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{:<10}", r.kind), t.dim),
            Span::styled(cells, t.text),
        ]));
    }
    lines
}

/// The human label (marked), the newest machine explanation with its model, scores, and what
/// the explainer is doing.
fn explanation_lines(app: &App, d: &FeatureDetail) -> Vec<Line<'static>> {
    let t = &app.theme;
    let row = app.row(d.id);
    let mut lines = vec![];
    if let Some(l) = row.and_then(|r| r.label.clone()) {
        lines.push(Line::from(vec![
            Span::styled(HUMAN_MARK, t.key),
            Span::styled(l, t.text),
        ]));
    }
    let machine = row.and_then(|r| r.explanation.clone());
    match (machine, d.explanations.first()) {
        (Some(text), first) => {
            let by = first.map_or(String::new(), |e| format!("  ({})", e.explainer_model));
            lines.push(Line::from(vec![
                Span::styled(text, t.text),
                Span::styled(by, t.dim),
            ]));
        }
        (None, _) => lines.push(Line::from(Span::styled(
            format!(
                "no explanation yet: {} asks the explainer, {} writes a label",
                app.key_for(Action::Explain),
                app.key_for(Action::Label)
            ),
            t.dim,
        ))),
    }
    if let Some(secs) = app.explain_elapsed(d.id) {
        lines.push(Line::from(Span::styled(
            format!("explaining … {secs} s"),
            t.busy,
        )));
    }
    let mut seen = Vec::new();
    for s in &d.scores {
        // Newest first: one line per method.
        if seen.contains(&s.method) {
            continue;
        }
        seen.push(s.method.clone());
        let v = s.value.map_or("-".to_string(), |v| format!("{v:.3}"));
        lines.push(Line::from(vec![
            Span::styled(format!("{:<10}", s.method), t.dim),
            Span::styled(format!("{v} (n {})", s.n), t.text),
        ]));
    }
    if d.scores.is_empty()
        && let Some(s) = row.and_then(|r| r.score)
    {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<10}", "score"), t.dim),
            Span::styled(format!("{s:.3}"), t.text),
        ]));
    }
    lines
}

fn render_hist(app: &App, d: &FeatureDetail, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let block = Block::bordered()
        .title(" activations (log bins) ")
        .border_style(t.border);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(s) = &d.stats else { return };
    let first = s.hist.iter().position(|&c| c > 0).unwrap_or(0);
    let last = s.hist.iter().rposition(|&c| c > 0).unwrap_or(HIST_LEN - 1);
    let data: Vec<u64> = s.hist[first..=last].iter().map(|&c| u64::from(c)).collect();
    let edges = hist_edges();
    let edge = |b: usize| edges[b.saturating_sub(1).min(edges.len() - 1)];
    let [bars, labels] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    frame.render_widget(Sparkline::default().data(&data).style(t.bar), bars);
    // The axis ends at the largest activation seen, not at the top of its bin.
    let top = edge(last + 1).min(f64::from(s.max));
    let label = format!("{:.3} … {:.3}", edge(first).min(top), top);
    frame.render_widget(Paragraph::new(label).style(t.dim), labels);
}

fn render_grid(
    app: &App,
    d: &FeatureDetail,
    frame: &mut Frame<'_>,
    area: Rect,
    gfx: &mut Graphics,
) {
    let t = &app.theme;
    let set = app.feature.set;
    let examples = d.examples_of(set);
    let inner = Block::bordered().inner(area);
    let g = grid_shape(inner.width, inner.height, examples.len());
    let (cols, visible) = (g.cols, g.rows);
    let sel_row = app.feature.sel / cols;
    let first_row = sel_row.saturating_sub(visible - 1);
    let first = first_row * cols;
    let last = (first + visible * cols).min(examples.len());
    let mut title = match set {
        ExampleSet::Top => format!(" top {} examples ", examples.len()),
        ExampleSet::Range => range_title(app, d),
    };
    if last - first < examples.len() {
        title.push_str(&format!("· {}–{last} shown · j/k for more ", first + 1));
    }
    let other = match set {
        ExampleSet::Top => "across its range",
        ExampleSet::Range => "top examples",
    };
    let block = Block::bordered()
        .title(Span::styled(title, t.title))
        .title_bottom(Span::styled(
            format!(" {} {other} ", app.key_for(Action::ToggleRange)),
            t.dim,
        ))
        .border_style(t.focus_border);
    frame.render_widget(block, area);
    if examples.is_empty() {
        let msg = match set {
            ExampleSet::Top => "no examples",
            ExampleSet::Range => "no range sample: the store was cached without one",
        };
        frame.render_widget(Paragraph::new(msg).style(t.dim), inner);
        return;
    }
    let (cell_w, cell_h) = (g.cell_w, g.cell_h);
    let scale = app.row(d.id).map(|r| r.max);
    for (i, ex) in examples
        .iter()
        .enumerate()
        .skip(first_row * cols)
        .take(visible * cols)
    {
        let (r, c) = ((i / cols - first_row) as u16, (i % cols) as u16);
        let cell = Rect::new(inner.x + c * cell_w, inner.y + r * cell_h, cell_w, cell_h)
            .intersection(inner);
        let style = if i == app.feature.sel {
            t.focus_border
        } else {
            t.border
        };
        let rank = match (set, d.range.get(i)) {
            (ExampleSet::Range, Some(b)) => band_name(b.band, b.bands),
            _ => format!("#{}", i + 1),
        };
        let title = fit_title(&format!("{rank} {}", ex.picture.label), cell_w - 2);
        let b = Block::bordered()
            .title(title)
            .title_bottom(match ex.peak {
                Some(TokenKind::Base | TokenKind::HighRes) => format!("max {:.2}", ex.max),
                // Positions without pixels say so, or the empty heatmap would puzzle.
                other => format!("max {:.2} · {}", ex.max, position_name(other)),
            })
            .border_style(style);
        let pic = b.inner(cell);
        frame.render_widget(b, cell);
        app.hit(cell, Hit::Example(i));
        gfx.draw(
            frame,
            pic,
            &ex.picture.overlay(&app.style, &app.theme.ramp, scale),
        );
    }
}

/// The grid's title over the range sample: its size, what it samples, and the band of the
/// selected example with its edges.
fn range_title(app: &App, d: &FeatureDetail) -> String {
    let (n, fired) = d.range_of;
    let mut title = format!(" across its range: {n} of {fired} images ");
    if let Some(b) = d.range.get(app.feature.sel) {
        title.push_str(&format!(
            "· {} {:.3}–{:.3} ",
            band_name(b.band, b.bands),
            b.edges.0,
            b.edges.1
        ));
    }
    title
}

/// A band's short name: `d1` … `d10` for deciles (1: weakest), else `b1` ….
fn band_name(band: usize, bands: usize) -> String {
    let letter = if bands == crate::store::RANGE_BANDS {
        'd'
    } else {
        'b'
    };
    format!("{letter}{}", band + 1)
}

/// `text` in at most `width` columns: when too long, the middle gives way to `…`, as an image
/// id's distinguishing part is usually at its end.
pub fn fit_title(text: &str, width: u16) -> String {
    let chars: Vec<char> = text.chars().collect();
    let w = usize::from(width);
    if chars.len() <= w || w < 3 {
        return chars.into_iter().take(w).collect();
    }
    let head = (w - 1) / 2;
    let tail = w - 1 - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

fn render_full(app: &App, ex: &ExampleView, frame: &mut Frame<'_>, area: Rect, gfx: &mut Graphics) {
    let t = &app.theme;
    frame.render_widget(Clear, area);
    // The thumbnail stands in until the full-resolution picture has been read.
    let full = app
        .feature
        .full_picture
        .as_ref()
        .filter(|(at, _)| *at == (app.feature.set, app.feature.sel))
        .map(|(_, p)| p);
    let pic = full.unwrap_or(&ex.picture);
    let size = if full.is_some() {
        format!("{}x{}", pic.rgb.width(), pic.rgb.height())
    } else {
        "loading full size …".into()
    };
    let title = format!(
        " #{} image {} · {} · max {:.3} · {size} · Esc closes ",
        app.feature.sel + 1,
        ex.image,
        ex.picture.label,
        ex.max
    );
    let block = Block::bordered()
        .title(Span::styled(title, t.title))
        .border_style(t.focus_border);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    app.hit(area, Hit::Full);
    if let Some(m) = &pic.missing {
        frame.render_widget(Paragraph::new(m.clone()).style(t.error), inner);
    }
    gfx.draw(
        frame,
        inner,
        &pic.overlay(&app.style, &app.theme.ramp, None),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_grows_its_cells_on_large_terminals_and_keeps_eight_in_view() {
        // A 100x30 terminal: the smallest cells, as before.
        assert_eq!(
            screen_grid((100, 30), 16),
            GridShape {
                cols: 2,
                rows: 2,
                cell_w: 22,
                cell_h: 11
            }
        );
        let g = screen_grid((200, 50), 50);
        assert!(
            g.cell_h > MIN_CELL_H && g.cols * g.rows >= MIN_VISIBLE,
            "{g:?}"
        );
        // Few examples: as large as fits them.
        let g = screen_grid((200, 50), 2);
        assert!(g.cell_h >= 20 && g.cols * g.rows >= 2, "{g:?}");
        // Tiny terminals still get one cell.
        assert_eq!(grid_shape(5, 3, 4).cols, 1);
    }

    #[test]
    fn long_titles_keep_both_ends() {
        assert_eq!(fit_title("#1 shape-0003", 20), "#1 shape-0003");
        assert_eq!(
            fit_title("#12 train/cats/IMG_20240101_1234", 20),
            "#12 train…40101_1234"
        );
        assert_eq!(
            fit_title("#12 train/cats/IMG_20240101_1234", 20)
                .chars()
                .count(),
            20
        );
        assert_eq!(fit_title("abcdef", 2), "ab");
    }
}
