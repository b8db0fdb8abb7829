//! The interactive workbench: app state, pure update, panes, keymaps and themes.
//!
//! [`run`] owns the terminal. One UI loop waits for an event, drains the rest, applies them with
//! [`App::update`] and draws once if anything changed; the effects `update` returns are carried out
//! by [`Runner`], the only place that spawns work (store loads on blocking threads, model jobs on
//! the actor, explainer requests on the runtime), and every result comes back as an [`Event`].

pub mod app;
pub mod data;
pub mod explainer;
pub mod keymap;
pub mod launch;
pub mod runner;
pub mod screens;
pub mod show;
#[cfg(test)]
mod testing;
pub mod theme;
pub mod ui;
mod update;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

pub use app::{App, Effect, Event, Screen};
pub use runner::Runner;
pub use ui::GraphicsMode;
pub use update::parse_range;

use crate::engine::ModelHandle;
use crate::store::Store;
use explainer::ExplainerSetup;
use keymap::Keymap;
use theme::Theme;
use ui::Graphics;

/// Keymap and theme: the shipped defaults with the user's files from the XDG config dir merged over.
pub fn load_config(theme_name: &str) -> Result<(Keymap, Theme)> {
    let dir = dirs::config_dir().map(|d| d.join("glint"));
    let read = |name: &str| -> Result<Vec<(String, String)>> {
        let Some(path) = dir.as_ref().map(|d| d.join(name)).filter(|p| p.is_file()) else {
            return Ok(vec![]);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(vec![(path.display().to_string(), text)])
    };
    Ok((
        Keymap::load(&read("keymap.toml")?)?,
        Theme::load(theme_name, &read("theme.toml")?)?,
    ))
}

/// A title for the store: its folder name and size, never an absolute path.
pub fn store_title(store: &Store) -> String {
    let name = store
        .dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let p = store.progress().map(|p| p.images).unwrap_or(0);
    format!(
        "{name} · {p} images · {} latents · {}",
        store.manifest().num_latents,
        store.manifest().hookpoint
    )
}

/// Read terminal events on a plain thread (crossterm's reader blocks) and forward them.
fn spawn_input(tx: UnboundedSender<Event>) {
    std::thread::spawn(move || {
        while let Ok(ev) = crossterm::event::read() {
            let ev = match ev {
                crossterm::event::Event::Key(k) => Event::Key(k),
                crossterm::event::Event::Mouse(m) => Event::Mouse(m),
                crossterm::event::Event::Resize(w, h) => Event::Resize(w, h),
                _ => continue,
            };
            if tx.send(ev).is_err() {
                return;
            }
        }
    });
}

/// Frame timings measured by a run (for the benchmark report).
#[derive(Debug, Default, Clone)]
pub struct FrameStats {
    /// Time from start to the first frame drawn.
    pub first_frame: Duration,
    /// Slowest frame (update + draw).
    pub slowest: Duration,
    /// Frames drawn.
    pub frames: u64,
}

/// Open the workbench on `store` with `model`; returns when the user quits. `theme_name` may be
/// `auto` (the terminal's background picks); `explain` holds the explainer settings for the
/// explain key.
pub fn run(
    store: Store,
    model: ModelHandle,
    graphics: GraphicsMode,
    theme_name: &str,
    explain: Option<ExplainerSetup>,
) -> Result<FrameStats> {
    let start = Instant::now();
    let rows = data::feature_rows(&store)?;
    let lists = store.lists()?;
    let mut pages = std::collections::BTreeMap::new();
    let sae = store.manifest().sae_fingerprint.clone();
    for f in store.paged_features()? {
        if let Some(p) = store.page::<crate::dashboard::FeaturePage>(f, &sae)? {
            pages.insert(f, p);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // ratatui::init installs a panic hook that restores the screen; chain one that also ends
    // mouse capture, so a panic leaves a usable terminal.
    let mut terminal = ratatui::init();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
        hook(info);
    }));
    crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture)?;
    // Ask the terminal before the event reader starts: its answers pick the graphics, and its
    // background the theme.
    let facts = if graphics == GraphicsMode::Halfblocks && theme_name != theme::AUTO {
        ui::graphics::Facts::default()
    } else {
        ui::graphics::probe()
    };
    let (gfx, gfx_status) = Graphics::from_facts(graphics, &facts);
    let theme_name = theme::resolve(theme_name, facts.replies.background);
    let (keymap, theme) = match load_config(theme_name) {
        Ok(config) => config,
        Err(e) => {
            let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
            ratatui::restore();
            return Err(e);
        }
    };
    let mut app = App::new(rows, keymap, theme, store_title(&store));
    app.latents = Some(store.manifest().num_latents);
    app.lists = lists;
    app.pages = pages;
    app.message = Some((gfx_status, false));
    let (tx, rx) = unbounded_channel();
    let mut runner = Runner::new(store, model, tx);
    if let Some(setup) = explain {
        runner = runner
            .with_explainer(setup.config)
            .with_explainer_hint(setup.unconfigured);
    }
    let result = rt.block_on(ui_loop(&mut app, &mut terminal, gfx, runner, rx, start));
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    ratatui::restore();
    result
}

async fn ui_loop(
    app: &mut App,
    terminal: &mut ratatui::DefaultTerminal,
    mut gfx: Graphics,
    runner: Runner,
    mut rx: UnboundedReceiver<Event>,
    start: Instant,
) -> Result<FrameStats> {
    let tx = runner.sender();
    let size = terminal.size()?;
    app.size = (size.width, size.height);
    spawn_input(tx.clone());
    runner.watch_store();
    let ticker = tx.clone();
    let status_model = runner.model().clone();
    tokio::spawn(async move {
        let period = 1000 / screens::feature::TICKS_PER_SECOND;
        let mut iv = tokio::time::interval(Duration::from_millis(period));
        loop {
            iv.tick().await;
            if ticker.send(Event::Tick(status_model.status())).is_err() {
                return;
            }
        }
    });
    let mut stats = FrameStats::default();
    loop {
        let t0 = Instant::now();
        if app.dirty {
            terminal.draw(|f| ui::render(app, f, &mut gfx))?;
            app.dirty = false;
            stats.frames += 1;
            if stats.frames == 1 {
                stats.first_frame = start.elapsed();
            }
            stats.slowest = stats.slowest.max(t0.elapsed());
        }
        let Some(first) = rx.recv().await else {
            return Ok(stats);
        };
        let mut events = vec![first];
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        for e in events {
            for effect in app.update(e) {
                if !runner.run(effect) {
                    return Ok(stats);
                }
            }
        }
    }
}
