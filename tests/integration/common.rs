//! Helpers shared by the integration tests: the sample world's paths, the `glint` binary in a
//! clean environment, the tiny sample model, and the workbench's scripted events and frames.

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use glint::engine::{ModelHandle, SessionEngine};
use glint::session::{ModelSpec, Session};
use glint::tui::app::{App, Effect, Event};
use glint::tui::data::FeatureRow;
use glint::tui::keymap::Keymap;
use glint::tui::theme::Theme;
use glint::tui::ui::{self, Graphics};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// The crate root, where `sample-data/` lives.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the sample shapes dataset's images.
pub fn sample_image(name: &str) -> PathBuf {
    root().join("sample-data/shapes/images").join(name)
}

/// The `glint` binary run from the crate root, with the environment that would redirect it
/// (model, SAE, servers, launcher ranks) removed so the defaults pick the sample world.
pub fn glint() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glint"));
    cmd.current_dir(root());
    for var in [
        "GLINT_MODEL",
        "GLINT_SAE",
        "GLINT_SCORE_URL",
        "RANK",
        "WORLD_SIZE",
        "SLURM_PROCID",
        "SLURM_NTASKS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Run `cmd`, failing the test with its stderr unless it succeeds.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run `cmd` as [`ok`] does and return its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&ok(cmd).stdout).into_owned()
}

/// The tiny sample model and SAE on the CPU in f32.
pub fn sample_model_spec() -> ModelSpec {
    let data = root().join("sample-data");
    ModelSpec {
        model: Some(data.join("llava-next-tiny").display().to_string()),
        sae: Some(data.join("sae-tiny").display().to_string()),
        ..ModelSpec::default()
    }
}

/// The model actor on the tiny sample model.
pub fn sample_model() -> ModelHandle {
    let args = sample_model_spec();
    ModelHandle::spawn(move || Ok(SessionEngine::new(Session::open(&args, None)?))).unwrap()
}

/// A feature-table row with fixed density and image count.
pub fn feature_row(id: u32, max: f32, explanation: Option<&str>) -> FeatureRow {
    FeatureRow {
        id,
        density: 0.01,
        max,
        images: 3,
        explanation: explanation.map(String::from),
        label: None,
        score: None,
    }
}

/// A workbench over `rows` with the default keys and dark theme, on a `size` terminal.
pub fn app_of(rows: Vec<FeatureRow>, title: &str, size: (u16, u16)) -> App {
    let mut app = App::new(
        rows,
        Keymap::load(&[]).unwrap(),
        Theme::load("dark", &[]).unwrap(),
        title.into(),
    );
    app.size = size;
    app
}

/// A plain key press.
pub fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

/// A special key press.
pub fn code(c: KeyCode) -> Event {
    Event::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

/// Feed `events` to `app` and collect the effects it asks for (none are run).
pub fn drive(app: &mut App, events: Vec<Event>) -> Vec<Effect> {
    events.into_iter().flat_map(|e| app.update(e)).collect()
}

/// One frame of `app` as text, images drawn as half blocks.
pub fn draw(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(app.size.0, app.size.1)).unwrap();
    t.draw(|f| ui::render(app, f, &mut Graphics::HalfBlocks))
        .unwrap();
    format!("{}", t.backend())
}
