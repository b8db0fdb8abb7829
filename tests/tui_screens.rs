//! Workbench screens on a small sample-world store: TestBackend snapshots (half-block heatmaps)
//! and scripted key sequences driving `update` without threads or a terminal.

use std::path::PathBuf;
use std::sync::OnceLock;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use glint::cli::ModelArgs;
use glint::engine::{Job, Lane, ModelHandle, SessionEngine};
use glint::pipeline::cache::{CacheOptions, run_cache};
use glint::pipeline::dataset::{Dataset, DatasetOptions};
use glint::pipeline::session::Session;
use glint::store::{FeatureFilter, RankRule, Store};
use glint::tui::app::{App, Effect, Event, ImageSource, Screen};
use glint::tui::data::{self, THUMB_SIDE};
use glint::tui::keymap::Keymap;
use glint::tui::theme::Theme;
use glint::tui::ui::{self, Graphics};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn model_args() -> ModelArgs {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample-data");
    ModelArgs {
        model: Some(root.join("llava-next-tiny").display().to_string()),
        sae: Some(root.join("sae-tiny").display().to_string()),
        hookpoint: None,
        device: "cpu".into(),
        dtype: "f32".into(),
        random_weights: None,
        max_pixels: 40_000_000,
    }
}

/// One store of 6 sample images per test binary.
fn store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let session = Session::open(&model_args(), None).unwrap();
            let spec =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample-data/shapes/manifest.jsonl");
            let dataset = Dataset::open(
                &spec,
                &DatasetOptions {
                    limit: Some(6),
                    shuffle_seed: None,
                },
            )
            .unwrap();
            let out = dir.path().join("store");
            let opts = CacheOptions {
                out: out.clone(),
                top_n: 6,
                rank: RankRule::Max,
                features: FeatureFilter::All,
                shard: None,
                commit_every: 6,
                progress_bar: false,
            };
            run_cache(&session, &dataset, &opts).unwrap();
            let store = Store::open(&out).unwrap();
            (dir, store)
        })
        .1
}

fn app() -> App {
    let rows = data::feature_rows(store()).unwrap();
    let mut app = App::new(
        rows,
        Keymap::load(&[]).unwrap(),
        Theme::load("dark", &[]).unwrap(),
        "sample · 6 images".into(),
    );
    app.size = (100, 30);
    app
}

fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(c: KeyCode) -> Event {
    Event::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

/// Feed events; run the store loads the effects ask for synchronously, as the runner would.
fn drive(app: &mut App, events: Vec<Event>) -> Vec<Effect> {
    let mut out = Vec::new();
    for e in events {
        for eff in app.update(e) {
            if let Effect::LoadFeature(id) = eff {
                let result = data::load_feature(store(), id, THUMB_SIDE).map_err(|e| e.to_string());
                app.update(Event::FeatureLoaded { id, result });
            }
            out.push(eff);
        }
    }
    out
}

fn draw(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(app.size.0, app.size.1)).unwrap();
    t.draw(|f| ui::render(app, f, &mut Graphics::HalfBlocks))
        .unwrap();
    format!("{}", t.backend())
}

#[test]
fn features_screen_sorts_filters_and_searches() {
    let mut a = app();
    assert!(
        a.features.view.len() > 10,
        "the sample store has many live features"
    );
    insta::assert_snapshot!("features_by_id", draw(&a));
    // Sort by density, largest first.
    drive(&mut a, vec![key('s')]);
    let d: Vec<f64> = a
        .features
        .view
        .iter()
        .map(|&i| a.features.rows[i].density)
        .collect();
    assert!(d.windows(2).all(|w| w[0] >= w[1]));
    insta::assert_snapshot!("features_by_density", draw(&a));
    // Density filter.
    let mut evs = vec![key('d')];
    evs.extend("0.05..".chars().map(key));
    evs.push(code(KeyCode::Enter));
    drive(&mut a, evs);
    assert!(
        a.features
            .view
            .iter()
            .all(|&i| a.features.rows[i].density >= 0.05)
    );
    assert!(a.features.view.len() < a.features.rows.len());
    // Search by explanation text and by id.
    a.features.rows[0].explanation = Some("red circles".into());
    let id0 = a.features.rows[0].id;
    drive(&mut a, vec![code(KeyCode::Esc)]);
    let mut evs = vec![key('/')];
    evs.extend("circles".chars().map(key));
    evs.push(code(KeyCode::Enter));
    drive(&mut a, evs);
    assert_eq!(a.features.view.len(), 1);
    assert_eq!(a.selected_row().unwrap().id, id0);
}

#[test]
fn feature_screen_shows_heatmap_grid_histogram_and_mask_toggle() {
    let mut a = app();
    let id = a.features.rows[3].id;
    let mut evs = vec![key(':')];
    evs.extend(id.to_string().chars().map(key));
    evs.push(code(KeyCode::Enter));
    let effects = drive(&mut a, evs);
    assert_eq!(effects, vec![Effect::LoadFeature(id)]);
    assert_eq!(a.screen, Screen::Feature);
    let d = a.feature.detail.as_ref().unwrap();
    assert!(!d.examples.is_empty() && d.examples.iter().all(|e| e.picture.missing.is_none()));
    assert!(
        d.examples[0].picture.field.max() > 0.0,
        "the top example's heatmap is not empty"
    );
    let intensity = draw(&a);
    insta::assert_snapshot!("feature_intensity", intensity);
    drive(&mut a, vec![key('m')]);
    assert!(a.mask_style());
    insta::assert_snapshot!("feature_mask", draw(&a));
    // Move in the grid, open full size, close with Esc, next feature with n.
    drive(&mut a, vec![key('l'), code(KeyCode::Enter)]);
    assert!(a.feature.full && a.feature.sel == 1.min(d_len(&a) - 1));
    insta::assert_snapshot!("feature_full", draw(&a));
    drive(&mut a, vec![code(KeyCode::Esc)]);
    assert!(!a.feature.full && a.screen == Screen::Feature);
    let effects = drive(&mut a, vec![key('n')]);
    assert!(matches!(effects.as_slice(), [Effect::LoadFeature(f)] if *f != id));
}

fn d_len(a: &App) -> usize {
    a.feature.detail.as_ref().map_or(0, |d| d.examples.len())
}

#[test]
fn help_is_generated_from_the_keymap_and_chords_work() {
    let mut a = app();
    drive(&mut a, vec![key('?')]);
    let screen = draw(&a);
    assert!(
        screen.contains("Sort by the next column") && screen.contains("g g"),
        "{screen}"
    );
    insta::assert_snapshot!("help", screen);
    drive(&mut a, vec![key('x')]);
    assert!(!a.help);
    drive(&mut a, vec![key('G')]);
    assert_eq!(a.features.sel, a.features.view.len() - 1);
    drive(&mut a, vec![key('g'), key('g')]);
    assert_eq!(a.features.sel, 0);
    drive(&mut a, vec![code(KeyCode::Down), key('j')]);
    assert_eq!(a.features.sel, 2);
    assert_eq!(drive(&mut a, vec![key('q')]), vec![Effect::Quit]);
}

#[test]
fn image_screen_runs_the_model_actor_and_lists_features() {
    let mut a = app();
    let mut evs = vec![key('o'), key('2'), code(KeyCode::Enter)];
    let effects = drive(&mut a, std::mem::take(&mut evs));
    assert_eq!(
        effects,
        vec![Effect::Analyze {
            ticket: 1,
            source: ImageSource::Dataset(2)
        }]
    );
    assert!(a.image.pending && a.screen == Screen::Image);
    // Esc while the model works cancels.
    assert_eq!(
        drive(&mut a, vec![code(KeyCode::Esc)]),
        vec![Effect::CancelModel]
    );
    let (path, _) = data::dataset_image(store(), 2).unwrap();
    let args = model_args();
    let handle =
        ModelHandle::spawn(move || Ok(SessionEngine::new(Session::open(&args, None)?))).unwrap();
    let result = handle
        .submit(
            Job::Analyze {
                image: path.clone(),
                prompt: None,
            },
            Lane::Interactive,
        )
        .blocking_recv()
        .unwrap();
    // An answer for an older ticket is ignored.
    a.update(Event::Analyzed {
        ticket: 0,
        result: result.clone(),
    });
    assert!(a.image.analysis.is_none());
    a.update(Event::ImageLoaded {
        ticket: 1,
        result: data::read_image(&path, data::LARGE_SIDE).map_err(|e| e.to_string()),
    });
    a.update(Event::Analyzed { ticket: 1, result });
    assert!(!a.image.features.is_empty() && a.image.picture.is_some());
    a.message = None;
    insta::assert_snapshot!("image_screen", draw(&a));
    // Tab to the grid, move the cursor; the per-patch list follows.
    drive(
        &mut a,
        vec![code(KeyCode::Tab), key('j'), key('l'), key('l')],
    );
    assert_eq!(a.image.cursor, (1, 2));
    let an = a.image.analysis.as_ref().unwrap();
    assert_eq!(
        a.features_at_cursor(),
        an.at_token(an.layout.grid_side as u16 + 2)
    );
    // Back to the list, pick the second feature, Enter opens its feature screen.
    drive(&mut a, vec![code(KeyCode::Tab), key('j')]);
    let f = a.image.features[1].0;
    let effects = drive(&mut a, vec![code(KeyCode::Enter)]);
    assert_eq!(effects, vec![Effect::LoadFeature(f)]);
}
