//! Rendering: split the screen and hand each pane its rect. Reads the app state, changes nothing.

pub mod feature;
pub mod features;
pub mod graphics;
pub mod heatmap;
pub mod help;
pub mod image;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Screen};
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
    render_title(app, frame, title);
    match app.screen {
        Screen::Features => features::render(app, frame, body),
        Screen::Feature => feature::render(app, frame, body, gfx),
        Screen::Image => image::render(app, frame, body, gfx),
    }
    render_status(app, frame, status);
    if app.help {
        help::render(app, frame, body);
    }
}

fn render_title(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    let tab = |s: Screen, name: &str| {
        let style = if app.screen == s {
            t.style("selected")
        } else {
            t.style("dim")
        };
        Span::styled(format!(" {name} "), style)
    };
    let line = Line::from(vec![
        Span::styled(" glint ", t.style("title")),
        tab(Screen::Features, "1 features"),
        tab(Screen::Feature, "2 feature"),
        tab(Screen::Image, "3 image"),
        Span::styled(format!("  {}", app.title), t.style("dim")),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

/// The actor's state in words.
pub fn actor_text(app: &App) -> String {
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
            format!(
                "{spin} {what}: {} {}/{}{queued} · Esc cancels",
                a.stage, a.done, a.total
            )
        }
    }
}

fn render_status(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let t = &app.theme;
    if let Some((prompt, text)) = &app.prompt {
        let line = Line::from(vec![
            Span::styled(prompt.label(), t.style("key")),
            Span::styled(format!("{text}█"), t.style("text")),
        ]);
        frame.render_widget(Paragraph::new(line).style(t.style("status")), area);
        return;
    }
    let actor = actor_text(app);
    let busy = app.actor.busy.is_some() || app.image.pending;
    let [left, right] = Layout::horizontal([
        Constraint::Min(1),
        Constraint::Length(actor.chars().count() as u16 + 1),
    ])
    .areas(area);
    let msg = match &app.message {
        Some((m, true)) => Span::styled(m.clone(), t.style("error")),
        Some((m, false)) => Span::styled(m.clone(), t.style("text")),
        None => Span::styled("? help · q quit · o open image · : jump", t.style("dim")),
    };
    frame.render_widget(
        Paragraph::new(Line::from(msg)).style(t.style("status")),
        left,
    );
    let style = if busy {
        t.style("busy")
    } else {
        t.style("dim")
    };
    frame.render_widget(
        Paragraph::new(Span::styled(actor, style)).style(t.style("status")),
        right,
    );
}
