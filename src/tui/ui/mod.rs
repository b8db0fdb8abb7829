//! Rendering: split the screen and hand each screen its rect; the title bar, the status line and
//! the widgets every screen shares (pictures, heatmaps, help). Reads the app state, changes nothing.

pub mod graphics;
pub mod heatmap;
pub mod help;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Hit, Screen};
use super::screens;
pub use graphics::{Graphics, GraphicsMode};

const SPINNER: [&str; 4] = ["|", "/", "-", "\\"];

/// Draw the whole workbench.
pub fn render(app: &App, frame: &mut Frame<'_>, gfx: &mut Graphics) {
    let [title, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    app.hits.borrow_mut().clear();
    render_title(app, frame, title);
    match app.screen {
        Screen::Features => screens::features::ui::render(app, frame, body),
        Screen::Feature => screens::feature::ui::render(app, frame, body, gfx),
        Screen::Image => screens::image::ui::render(app, frame, body, gfx),
        Screen::Steer => screens::steer::ui::render(app, frame, body),
        Screen::Attrib => screens::attrib::ui::render(app, frame, body, gfx),
    }
    render_status(app, frame, status);
    if app.help {
        help::render(app, frame, body);
    }
}

/// The screens' tabs in the title bar, in order.
const TABS: [(Screen, &str); 5] = [
    (Screen::Features, "1 features"),
    (Screen::Feature, "2 feature"),
    (Screen::Image, "3 image"),
    (Screen::Steer, "4 steer"),
    (Screen::Attrib, "5 attrib"),
];

fn render_title(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let mut spans = vec![Span::styled(" glint ", t.title)];
    let mut x = area.x + 7;
    for (s, name) in TABS {
        let style = if app.screen == s { t.selected } else { t.dim };
        let w = name.chars().count() as u16 + 2;
        app.hit(Rect::new(x, area.y, w, 1).intersection(area), Hit::Tab(s));
        x += w;
        spans.push(Span::styled(format!(" {name} "), style));
    }
    spans.push(Span::styled(format!("  {}", app.title), t.dim));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The actor's state (and the explainer's, while it works) in words.
pub fn actor_text(app: &App) -> String {
    let model = model_text(app);
    let running = &app.explain.running;
    let Some(&first) = running.keys().next() else {
        return model;
    };
    let spin = SPINNER[(app.ticks % 4) as usize];
    let secs = app.explain_elapsed(first).unwrap_or(0);
    let more = if running.len() > 1 {
        format!(" (+{} more)", running.len() - 1)
    } else {
        String::new()
    };
    format!("{spin} explaining feature {first}{more} · {secs} s │ {model}")
}

fn model_text(app: &App) -> String {
    let a = &app.actor;
    match &a.busy {
        None if app.image.pending => "model: queued".into(),
        None => "model: idle".into(),
        Some(what) => {
            let spin = SPINNER[(app.ticks % 4) as usize];
            let queued = if a.queued > 0 {
                format!(" (+{} queued)", a.queued)
            } else {
                String::new()
            };
            // A stage without counted steps shows no count ("0/0" says nothing).
            let steps = match a.total {
                0 => String::new(),
                n => format!(" {}/{n}", a.done),
            };
            format!("{spin} {what}: {}{steps}{queued} · Esc cancels", a.stage)
        }
    }
}

fn render_status(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    if let Some((prompt, text)) = &app.prompt {
        let line = Line::from(vec![
            Span::styled(prompt.label(), t.key),
            Span::styled(format!("{text}█"), t.text),
        ]);
        frame.render_widget(Paragraph::new(line).style(t.status), area);
        return;
    }
    let actor = actor_text(app);
    let busy = app.actor.busy.is_some() || app.image.pending || !app.explain.running.is_empty();
    let [left, right] = Layout::horizontal([
        Constraint::Min(1),
        Constraint::Length(actor.chars().count() as u16 + 1),
    ])
    .areas(area);
    let msg = match &app.message {
        Some((m, true)) => Span::styled(m.clone(), t.error),
        Some((m, false)) => Span::styled(m.clone(), t.text),
        None => Span::styled("? help · q quit · o open image · : jump", t.dim),
    };
    frame.render_widget(Paragraph::new(Line::from(msg)).style(t.status), left);
    let style = if busy { t.busy } else { t.dim };
    frame.render_widget(
        Paragraph::new(Span::styled(actor, style)).style(t.status),
        right,
    );
}

#[cfg(test)]
mod tests {
    use crate::engine::ActorStatus;
    use crate::tui::testing::app;

    #[test]
    fn a_stage_without_counted_steps_shows_no_count() {
        let mut a = app(&[1]);
        a.actor = ActorStatus {
            busy: Some("steering 1 feature".into()),
            stage: "preparing the prompt".into(),
            ..Default::default()
        };
        let text = super::actor_text(&a);
        assert!(
            text.contains("preparing the prompt ·") && !text.contains("0/0"),
            "{text}"
        );
        a.actor.total = 48;
        a.actor.done = 3;
        assert!(super::actor_text(&a).contains("preparing the prompt 3/48"));
    }
}
