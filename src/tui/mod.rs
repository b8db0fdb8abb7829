//! The interactive workbench: app state, pure update, panes, keymaps and themes.
//!
//! [`run`] owns the terminal. One UI loop waits for an event, drains the rest, applies them with
//! [`App::update`] and draws once if anything changed; the effects `update` returns are carried out
//! by [`Runner`], the only place that spawns work (store loads on blocking threads, model jobs on
//! the actor), and every result comes back as an [`Event`].

pub mod app;
pub mod data;
pub mod keymap;
pub mod launch;
pub mod show;
pub mod theme;
pub mod ui;
mod update;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

pub use app::{App, Effect, Event, Screen};
pub use ui::GraphicsMode;
pub use update::parse_range;

use crate::engine::{Job, Lane, ModelHandle};
use crate::store::Store;
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

/// Carries out effects; results come back on `tx`.
pub struct Runner {
    store: Store,
    model: ModelHandle,
    tx: UnboundedSender<Event>,
}

impl Runner {
    /// A runner over the store and model, posting results to `tx`.
    pub fn new(store: Store, model: ModelHandle, tx: UnboundedSender<Event>) -> Runner {
        Runner { store, model, tx }
    }

    /// Start one effect; returns `false` on [`Effect::Quit`].
    pub fn run(&self, effect: Effect) -> bool {
        match effect {
            Effect::Quit => return false,
            Effect::CancelModel => self.model.cancel(),
            Effect::LoadFeature(id) => {
                let (store, tx) = (self.store.clone(), self.tx.clone());
                tokio::task::spawn_blocking(move || {
                    let result = data::load_feature(&store, id, data::THUMB_SIDE)
                        .map_err(|e| format!("{e:#}"));
                    let _ = tx.send(Event::FeatureLoaded { id, result });
                });
            }
            Effect::Analyze { ticket, source } => {
                let path = match source {
                    app::ImageSource::Path(p) => Ok(p),
                    app::ImageSource::Dataset(i) => {
                        data::dataset_image(&self.store, i).map(|(p, _)| p)
                    }
                };
                let path: PathBuf = match path {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = self.tx.send(Event::ImageLoaded {
                            ticket,
                            result: Err(format!("{e:#}")),
                        });
                        let result = Err(crate::engine::ModelError::Failed(format!("{e:#}")));
                        let _ = self.tx.send(Event::Analyzed { ticket, result });
                        return true;
                    }
                };
                let (tx, p) = (self.tx.clone(), path.clone());
                tokio::task::spawn_blocking(move || {
                    let result =
                        data::read_image(&p, data::LARGE_SIDE).map_err(|e| format!("{e:#}"));
                    let _ = tx.send(Event::ImageLoaded { ticket, result });
                });
                let reply = self.model.submit(
                    Job::Analyze {
                        image: path,
                        prompt: None,
                    },
                    Lane::Interactive,
                );
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = reply
                        .await
                        .unwrap_or(Err(crate::engine::ModelError::Stopped));
                    let _ = tx.send(Event::Analyzed { ticket, result });
                });
            }
        }
        true
    }
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

/// Open the workbench on `store` with `model`; returns when the user quits.
pub fn run(
    store: Store,
    model: ModelHandle,
    graphics: GraphicsMode,
    theme_name: &str,
) -> Result<FrameStats> {
    let start = Instant::now();
    let (keymap, theme) = load_config(theme_name)?;
    let rows = data::feature_rows(&store)?;
    let mut app = App::new(rows, keymap, theme, store_title(&store));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut terminal = ratatui::init();
    crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture)?;
    let gfx = Graphics::detect(graphics);
    let result = rt.block_on(ui_loop(&mut app, &mut terminal, gfx, store, model, start));
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    ratatui::restore();
    result
}

async fn ui_loop(
    app: &mut App,
    terminal: &mut ratatui::DefaultTerminal,
    mut gfx: Graphics,
    store: Store,
    model: ModelHandle,
    start: Instant,
) -> Result<FrameStats> {
    let (tx, mut rx): (UnboundedSender<Event>, UnboundedReceiver<Event>) = unbounded_channel();
    let size = terminal.size()?;
    app.size = (size.width, size.height);
    app.message = Some((format!("graphics: {}", gfx.name()), false));
    spawn_input(tx.clone());
    let ticker = tx.clone();
    let status_model = model.clone();
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(Duration::from_millis(120));
        loop {
            iv.tick().await;
            if ticker.send(Event::Tick(status_model.status())).is_err() {
                return;
            }
        }
    });
    let runner = Runner::new(store, model, tx);
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
