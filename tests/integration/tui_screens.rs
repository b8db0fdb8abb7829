//! Workbench screens on a small sample-world store: TestBackend snapshots (half-block heatmaps),
//! scripted key and mouse sequences driving `update` without a terminal, the explain key against
//! an in-process OpenAI-compatible server, and (ignored, run by hand) the speed benchmark.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{app_of, code, draw, key, root, sample_model, sample_model_spec};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use glint::dataset::{Dataset, DatasetOptions};
use glint::engine::{Job, Lane};
use glint::jobs::cache::{CacheOptions, run_cache};
use glint::session::Session;
use glint::store::{FeatureFilter, RankRule, Store};
use glint::tui::app::{App, Effect, Event, Hit, ImageFocus, ImageSource, PageState, Screen};
use glint::tui::data::{self, ExampleSet, THUMB_SIDE};
use glint::tui::explainer::{config_from_toml, unconfigured_hint};
use glint::tui::runner::Runner;

/// A store of the first `images` sample images in `dir`.
fn build_store(dir: &Path, images: usize) -> Store {
    let session = Session::open(&sample_model_spec(), None).unwrap();
    let spec = root().join("sample-data/shapes/manifest.jsonl");
    let dataset = Dataset::open(
        &spec,
        &DatasetOptions {
            limit: Some(images),
            shuffle_seed: None,
            split: None,
        },
    )
    .unwrap();
    let out = dir.join("store");
    let opts = CacheOptions {
        out: out.clone(),
        top_n: 6,
        rank: RankRule::Max,
        features: FeatureFilter::All,
        shard: None,
        commit_every: 6,
        progress_bar: false,
        tokens: Default::default(),
        range_sample: glint::store::DEFAULT_RANGE_SAMPLE,
    };
    run_cache(&session, &dataset, &opts).unwrap();
    Store::open(&out).unwrap()
}

/// One store of 6 sample images per test binary (never written to by the tests that share it).
fn store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = build_store(dir.path(), 6);
            (dir, store)
        })
        .1
}

fn app() -> App {
    app_on(store())
}

fn app_on(store: &Store) -> App {
    app_of(
        data::feature_rows(store).unwrap(),
        "sample · 6 images",
        (100, 30),
    )
}

fn click(x: u16, y: u16) -> Event {
    Event::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: x,
        row: y,
        modifiers: KeyModifiers::NONE,
    })
}

fn wheel(down: bool, x: u16, y: u16) -> Event {
    let kind = if down {
        MouseEventKind::ScrollDown
    } else {
        MouseEventKind::ScrollUp
    };
    Event::Mouse(MouseEvent {
        kind,
        column: x,
        row: y,
        modifiers: KeyModifiers::NONE,
    })
}

/// Feed events; run the store loads the effects ask for synchronously, as the runner would.
fn drive(app: &mut App, events: Vec<Event>) -> Vec<Effect> {
    let mut out = Vec::new();
    for e in events {
        for eff in app.update(e) {
            match eff {
                Effect::LoadFeature(id) => {
                    let result =
                        data::load_feature(store(), id, THUMB_SIDE).map_err(|e| e.to_string());
                    app.update(Event::FeatureLoaded { id, result });
                }
                Effect::LoadFull { id, set, index } => {
                    let result = data::load_example(store(), id, set, index, data::FULL_SIDE)
                        .map_err(|e| e.to_string());
                    app.update(Event::FullLoaded {
                        id,
                        set,
                        index,
                        result,
                    });
                }
                _ => {}
            }
            out.push(eff);
        }
    }
    out
}

/// The centre of the first region of the last frame that `pick` accepts.
fn spot(app: &App, pick: impl Fn(Hit) -> bool) -> (u16, u16) {
    let hits = app.hits.borrow();
    let (r, _) = hits.iter().find(|(_, h)| pick(*h)).expect("region drawn");
    (r.x + r.width / 2, r.y + r.height / 2)
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
    assert_eq!(effects[0], Effect::LoadFeature(id));
    assert!(
        matches!(&effects[1..], [Effect::LoadPage { id: p, compute: false }, Effect::Prefetch(n)]
            if *p == id && !n.is_empty() && !n.contains(&id)),
        "{effects:?}"
    );
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
    // Move in the grid, open full size (the full-resolution picture is read for it), close
    // with Esc, next feature with n.
    let effects = drive(&mut a, vec![key('l'), code(KeyCode::Enter)]);
    assert!(a.feature.full && a.feature.sel == 1.min(d_len(&a) - 1));
    assert_eq!(
        effects,
        vec![Effect::LoadFull {
            id,
            set: ExampleSet::Top,
            index: a.feature.sel
        }]
    );
    let (_, full) = a.feature.full_picture.as_ref().unwrap();
    let thumb = &a.feature.detail.as_ref().unwrap().examples[a.feature.sel].picture;
    assert!(full.rgb.width() > thumb.rgb.width() && full.missing.is_none());
    insta::assert_snapshot!("feature_full", draw(&a));
    drive(&mut a, vec![code(KeyCode::Esc)]);
    assert!(!a.feature.full && a.screen == Screen::Feature);
    let effects = drive(&mut a, vec![key('n')]);
    assert!(matches!(effects.as_slice(), [Effect::LoadFeature(f), ..] if *f != id));
    let next = a.feature.id.unwrap();
    drive(&mut a, vec![key('p')]);
    assert_eq!(a.feature.id, Some(id), "p goes back to {id} from {next}");
}

#[test]
fn the_range_view_shows_examples_by_decile_and_opens_them_full_size() {
    let mut a = app();
    // The feature that fired on the most images has the widest range.
    let id = most_firing(&a);
    drive(&mut a, jump_keys(id));
    let d = a.feature.detail.clone().unwrap();
    let sampled = store().range_sample(id).unwrap();
    assert_eq!(d.range.len(), sampled.len());
    assert!(
        d.range.len() > 1,
        "feature {id} samples {} images",
        d.range.len()
    );
    // Strongest band first, each band strongest first.
    assert!(d.range.windows(2).all(|w| w[0].band >= w[1].band));
    assert!(
        d.range
            .windows(2)
            .all(|w| w[0].view.score >= w[1].view.score)
    );
    assert!(d.range.iter().all(|b| b.view.picture.missing.is_none()));
    drive(&mut a, vec![key('r')]);
    assert_eq!((a.feature.set, a.feature.sel), (ExampleSet::Range, 0));
    let screen = draw(&a);
    assert!(screen.contains("across its range"), "{screen}");
    insta::assert_snapshot!("feature_range", screen);
    let last = d.range.len() - 1;
    let effects = drive(&mut a, vec![key('G'), code(KeyCode::Enter)]);
    assert_eq!(
        effects,
        vec![Effect::LoadFull {
            id,
            set: ExampleSet::Range,
            index: last
        }]
    );
    let (at, full) = a.feature.full_picture.as_ref().unwrap();
    assert_eq!(*at, (ExampleSet::Range, last));
    assert!(full.rgb.width() > d.range[last].view.picture.rgb.width());
    // Back to the top examples.
    drive(&mut a, vec![code(KeyCode::Esc), key('r')]);
    assert_eq!(a.feature.set, ExampleSet::Top);
    assert!(draw(&a).contains("top "));
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
    let handle = sample_model();
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
    // Tab to the grid, move the cursor over the high-resolution map; the per-token lists
    // follow: the tile token under the cursor and the base-view token at the same spot.
    drive(
        &mut a,
        vec![code(KeyCode::Tab), key('j'), key('l'), key('l')],
    );
    assert_eq!(a.image.cursor, (1, 2));
    let an = a.image.analysis.clone().unwrap();
    let (_, w) = an.layout.unpadded();
    let hi_index = an.layout.base_tokens() + (w as usize + 1) + 2;
    let here = a.features_at_cursor();
    assert_eq!(here.len(), 2, "{here:?}");
    assert_eq!(here[1].index as usize, hi_index);
    assert_eq!(here[1].features, an.at_token(hi_index as u16));
    assert_eq!(here[0].token.kind, glint::model::anyres::TokenKind::Base);
    // The cursor reaches every tile: the last cell of the map is in the last tile.
    drive(&mut a, vec![key('G')]);
    let here = a.features_at_cursor();
    let tiles = an.layout.tiles.0 * an.layout.tiles.1;
    assert_eq!(u32::from(here[1].token.tile), tiles, "{here:?}");
    // A click on the picture moves the cursor there: the top-left cell of the terminal holds
    // the first one or two map rows (a cell is two half-block pixels tall).
    let screen = draw(&a);
    assert!(screen.contains("tile 1") || screen.contains(&format!("tile {tiles}")));
    let (x, y) = {
        let hits = a.hits.borrow();
        let (r, _) = hits.iter().find(|(_, h)| *h == Hit::Picture).unwrap();
        (r.x, r.y)
    };
    drive(&mut a, vec![code(KeyCode::Tab), click(x, y)]);
    assert_eq!(a.image.focus, ImageFocus::Grid);
    let (r, c) = a.image.cursor;
    assert!(r <= 1 && c == 0, "click at {x},{y} gave {r},{c}");
    // Back to the list, pick the second feature, Enter opens its feature screen.
    drive(&mut a, vec![code(KeyCode::Tab), key('j')]);
    let f = a.image.features[1].0;
    let effects = drive(&mut a, vec![code(KeyCode::Enter)]);
    assert_eq!(effects[0], Effect::LoadFeature(f));
}

#[test]
fn mouse_clicks_select_open_switch_screens_and_scroll() {
    let mut a = app();
    draw(&a);
    // A click selects a row; a click on the selected row opens it.
    let (x, y) = spot(&a, |h| h == Hit::FeatureRow(2));
    drive(&mut a, vec![click(x, y)]);
    assert_eq!((a.features.sel, a.screen), (2, Screen::Features));
    let id = a.selected_row().unwrap().id;
    let effects = drive(&mut a, vec![click(x, y)]);
    assert_eq!(effects[0], Effect::LoadFeature(id));
    assert_eq!(a.screen, Screen::Feature);
    // Examples: a click selects, a second opens it full size, a click on the view closes it.
    draw(&a);
    let (x, y) = spot(&a, |h| h == Hit::Example(1));
    drive(&mut a, vec![click(x, y)]);
    assert_eq!((a.feature.sel, a.feature.full), (1, false));
    let effects = drive(&mut a, vec![click(x, y)]);
    assert!(a.feature.full);
    assert_eq!(
        effects,
        vec![Effect::LoadFull {
            id,
            set: ExampleSet::Top,
            index: 1
        }]
    );
    draw(&a);
    drive(&mut a, vec![click(x, y)]);
    assert!(!a.feature.full);
    // The wheel moves through the examples.
    drive(&mut a, vec![wheel(true, x, y)]);
    assert_ne!(a.feature.sel, 1);
    // Tabs in the title bar switch screens; the image tab says how to open one first.
    draw(&a);
    let (x, y) = spot(&a, |h| h == Hit::Tab(Screen::Image));
    drive(&mut a, vec![click(x, y)]);
    assert_eq!(a.screen, Screen::Feature);
    assert!(a.message.as_ref().unwrap().0.contains("no image yet"));
    let (x, y) = spot(&a, |h| h == Hit::Tab(Screen::Features));
    drive(&mut a, vec![click(x, y)]);
    assert_eq!(a.screen, Screen::Features);
    // Headers sort (again: reverse); the wheel scrolls the table.
    draw(&a);
    let (x, y) = spot(&a, |h| h == Hit::Header(2));
    drive(&mut a, vec![click(x, y)]);
    assert_eq!(a.features.sort, (2, true));
    drive(&mut a, vec![click(x, y)]);
    assert_eq!(a.features.sort, (2, false));
    let sel = a.features.sel;
    drive(&mut a, vec![wheel(true, 5, 10), wheel(true, 5, 10)]);
    assert_eq!(a.features.sel, sel + 2);
    // Motion alone asks for no redraw.
    a.dirty = false;
    a.update(Event::Mouse(MouseEvent {
        kind: MouseEventKind::Moved,
        column: 3,
        row: 3,
        modifiers: KeyModifiers::NONE,
    }));
    assert!(!a.dirty);
    // A press and its release in one batch (usual over SSH and tmux) still redraw, and so does
    // a result followed by an idle tick.
    let (x, y) = spot(&a, |h| h == Hit::FeatureRow(1));
    let release = Event::Mouse(MouseEvent {
        kind: MouseEventKind::Up(MouseButton::Left),
        column: x,
        row: y,
        modifiers: KeyModifiers::NONE,
    });
    drive(&mut a, vec![click(x, y), release]);
    assert!(a.dirty, "the release cleared the click's redraw");
    a.dirty = true;
    a.update(Event::Tick(a.actor.clone()));
    assert!(a.dirty, "an idle tick cleared a pending redraw");
}

/// Run effects on `runner` until `want` results have come back; feed them to `app`.
/// The keys that jump to feature `id` (`:`, its digits, Enter).
/// The feature that fired on the most images (the lowest id among equals).
fn most_firing(a: &App) -> u32 {
    let rows = a.features.rows.iter();
    rows.max_by_key(|r| (r.images, std::cmp::Reverse(r.id)))
        .unwrap()
        .id
}

fn jump_keys(id: u32) -> Vec<Event> {
    let mut keys = vec![key(':')];
    keys.extend(id.to_string().chars().map(key));
    keys.push(code(KeyCode::Enter));
    keys
}

/// A two-thread runtime for the runner, as the workbench has.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn settle(
    rt: &tokio::runtime::Runtime,
    runner: &Runner,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    app: &mut App,
    effects: Vec<Effect>,
    want: usize,
) {
    rt.block_on(async {
        for e in effects {
            runner.run(e);
        }
        for _ in 0..want {
            let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("an answer within a minute")
                .expect("runner alive");
            app.update(ev);
        }
    });
}

#[test]
fn explain_key_asks_the_explainer_in_the_background_and_labels_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = build_store(tmp.path(), 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(glint_mock_llm::MockServer::start(|_| {
        glint_mock_llm::Reply::ok("[EXPLANATION]: red circles on white")
            .after(Duration::from_millis(200))
    }));
    let cfg = config_from_toml(
        "explainer.toml",
        &format!(
            "base-url = \"{}\"\nexplainer-model = \"mock-vlm\"\ntimeout = 10\n",
            server.url
        ),
        &sample_model_spec(),
    )
    .unwrap();
    let handle = sample_model();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runner = Runner::new(store.clone(), handle, tx).with_explainer(cfg);
    let mut a = app_on(&store);
    let id = a.features.rows[0].id;
    // Open the feature, press e: one Explain effect, and the status line says it is running.
    let mut evs = vec![key(':')];
    evs.extend(id.to_string().chars().map(key));
    evs.push(code(KeyCode::Enter));
    let mut effects = Vec::new();
    for e in evs {
        effects.extend(a.update(e));
    }
    // The feature's detail and its (not yet kept) page.
    settle(&rt, &runner, &mut rx, &mut a, effects, 2);
    assert!(a.feature.detail.is_some());
    let effects = a.update(key('e'));
    assert_eq!(effects, vec![Effect::Explain(id)]);
    assert!(a.update(key('e')).is_empty(), "never asked twice at once");
    let screen = draw(&a);
    assert!(
        screen.contains(&format!("explaining feature {id}")),
        "{screen}"
    );
    // The UI stays live while the request runs: keys still answer.
    settle(&rt, &runner, &mut rx, &mut a, effects, 1);
    assert!(a.explain.running.is_empty());
    assert_eq!(
        a.row(id).unwrap().explanation.as_deref(),
        Some("red circles on white")
    );
    let stored = store.explanations_of(id).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].explainer_model, "mock-vlm");
    assert_eq!(server.seen().len(), 1);
    let screen = draw(&a);
    assert!(screen.contains("red circles on white") && screen.contains("mock-vlm"));
    // Explained already: the first e only asks for a second press.
    assert!(a.update(key('e')).is_empty());
    assert!(a.message.as_ref().unwrap().0.contains("press e again"));
    assert_eq!(a.update(key('e')), vec![Effect::Explain(id)]);
    a.explain.running.clear();
    // L opens the label prompt holding the explanation to edit; C-u clears it.
    a.update(key('L'));
    assert_eq!(
        a.prompt.as_ref().map(|p| p.1.as_str()),
        Some("red circles on white")
    );
    a.update(Event::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    let mut effects = Vec::new();
    for c in "circles, checked".chars() {
        effects.extend(a.update(key(c)));
    }
    effects.extend(a.update(code(KeyCode::Enter)));
    assert_eq!(
        effects,
        vec![Effect::SaveLabel {
            id,
            text: Some("circles, checked".into())
        }]
    );
    settle(&rt, &runner, &mut rx, &mut a, effects, 1);
    assert!(a.message.as_ref().unwrap().0.contains("label saved"));
    assert_eq!(
        store.label(id).unwrap().as_deref(),
        Some("circles, checked")
    );
    // Reopened, the table shows the human label, marked, and search finds it.
    let mut b = app_on(&store);
    let row = b.row(id).unwrap().clone();
    assert_eq!(row.label.as_deref(), Some("circles, checked"));
    assert_eq!(row.explanation.as_deref(), Some("red circles on white"));
    let screen = draw(&b);
    assert!(screen.contains("✎ circles, checked"), "{screen}");
    let mut evs = vec![key('/')];
    evs.extend("checked".chars().map(key));
    evs.push(code(KeyCode::Enter));
    for e in evs {
        b.update(e);
    }
    assert_eq!(b.features.view.len(), 1);
    // An unreachable explainer is reported with the feature, and nothing is stored.
    drop(server);
    let bad = config_from_toml(
        "explainer.toml",
        "base-url = \"http://127.0.0.1:9\"\ntimeout = 1\nretries = 0\n",
        &sample_model_spec(),
    )
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = sample_model();
    // Nobody configured a server: the refusal says at once how to name one.
    let hint = unconfigured_hint("http://127.0.0.1:9", Path::new("glint/explainer.toml"));
    let runner = Runner::new(store.clone(), handle, tx)
        .with_explainer(bad)
        .with_explainer_hint(Some(hint));
    let other = a.features.rows[1].id;
    a.explain.running.insert(other, 0);
    settle(
        &rt,
        &runner,
        &mut rx,
        &mut a,
        vec![Effect::Explain(other)],
        1,
    );
    let (msg, is_err) = a.message.clone().unwrap();
    assert!(is_err && msg.contains(&format!("feature {other}")), "{msg}");
    assert!(
        msg.contains("GLINT_EXPLAIN_URL") && msg.contains("glint/explainer.toml"),
        "{msg}"
    );
    assert!(store.explanations_of(other).unwrap().is_empty());
}

/// The speed benchmark (not a timed test): `cargo test --test tui_screens -- --ignored
/// --nocapture bench`. Prints feature switching from the store (cold, first visit with images
/// shared between features, read ahead), the first frame, and frame times while the model
/// actor is busy.
#[test]
#[ignore]
fn bench_feature_switching_and_frames() {
    let s = store();
    let ids: Vec<u32> = a_few_features(s, 32);
    let stats = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let max = v.iter().copied().fold(0.0, f64::max);
        (mean, max)
    };
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e3
    };
    let cold: Vec<f64> = ids
        .iter()
        .map(|&f| time(&mut || drop(data::load_feature(s, f, THUMB_SIDE).unwrap())))
        .collect();
    let cache = data::ImageCache::default();
    let first: Vec<f64> = ids
        .iter()
        .map(|&f| time(&mut || drop(data::load_feature_cached(s, f, THUMB_SIDE, &cache).unwrap())))
        .collect();
    let again: Vec<f64> = ids
        .iter()
        .map(|&f| time(&mut || drop(data::load_feature_cached(s, f, THUMB_SIDE, &cache).unwrap())))
        .collect();
    let (c, f, g) = (stats(&cold), stats(&first), stats(&again));
    println!(
        "feature switch, {} features (ms, mean / slowest):",
        ids.len()
    );
    println!(
        "  no image cache (before)          {:7.2} / {:7.2}",
        c.0, c.1
    );
    println!(
        "  first visit, images shared       {:7.2} / {:7.2}",
        f.0, f.1
    );
    println!(
        "  images cached                    {:7.2} / {:7.2}",
        g.0, g.1
    );
    println!(
        "  speed-up, mean (before / cached) {:7.1}x",
        c.0 / g.0.max(1e-9)
    );
    // First frame: read the rows, build the app, draw.
    let t = Instant::now();
    let a = app();
    draw(&a);
    println!(
        "first frame (rows + draw)          {:7.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    // Frames while the model actor analyses images back to back.
    let handle = sample_model();
    let replies: Vec<_> = (0..6)
        .map(|i| {
            let (path, _) = data::dataset_image(s, i % 6).unwrap();
            handle.submit(
                Job::Analyze {
                    image: path,
                    prompt: None,
                },
                Lane::Batch,
            )
        })
        .collect();
    let mut a = app();
    let mut evs = vec![key(':')];
    evs.extend(ids[0].to_string().chars().map(key));
    evs.push(code(KeyCode::Enter));
    drive(&mut a, evs);
    let mut frames = Vec::new();
    let mut busy_frames = 0;
    let t_all = Instant::now();
    while t_all.elapsed() < Duration::from_secs(20) {
        let busy = handle.status().busy.is_some();
        let t = Instant::now();
        let k = if frames.len() % 2 == 0 { 'n' } else { 'l' };
        for e in a.update(key(k)) {
            if let Effect::LoadFeature(id) = e {
                let result =
                    data::load_feature_cached(s, id, THUMB_SIDE, &cache).map_err(|e| e.to_string());
                a.update(Event::FeatureLoaded { id, result });
            }
        }
        draw(&a);
        frames.push(t.elapsed().as_secs_f64() * 1e3);
        busy_frames += usize::from(busy);
        if !busy && frames.len() > 50 {
            break;
        }
    }
    let fr = stats(&frames);
    println!(
        "frames (key + feature switch + draw), {} frames, {busy_frames} while the actor was busy: mean {:.2} ms · slowest {:.2} ms",
        frames.len(),
        fr.0,
        fr.1
    );
    drop(replies);
}

fn a_few_features(s: &Store, n: usize) -> Vec<u32> {
    s.features().take(n).map(|r| r.unwrap().0).collect()
}

#[test]
fn a_feature_number_past_the_sae_is_out_of_range_not_unfired() {
    let mut a = app();
    a.latents = Some(256);
    let unfired = (0..256u32).find(|&f| a.row(f).is_none()).unwrap();
    let mut jump = |text: &str| {
        let mut events = vec![key(':')];
        events.extend(text.chars().map(key));
        events.push(code(KeyCode::Enter));
        drive(&mut a, events);
        a.message.clone().unwrap().0
    };
    let msg = jump("9999");
    assert!(
        msg.contains("out of range") && msg.contains("256 latents"),
        "{msg}"
    );
    let msg = jump(&unfired.to_string());
    assert!(msg.contains("never fired"), "{msg}");
}

#[test]
fn the_feature_page_is_computed_on_the_model_once_and_kept_in_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = build_store(tmp.path(), 3);
    let rt = runtime();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runner = Runner::new(store.clone(), sample_model(), tx);
    let mut a = app_on(&store);
    let id = most_firing(&a);
    let fx: Vec<Effect> = jump_keys(id)
        .into_iter()
        .flat_map(|e| a.update(e))
        .collect();
    assert!(
        fx.contains(&Effect::LoadPage { id, compute: false }),
        "{fx:?}"
    );
    // Opening reads the store only: nothing kept yet, nothing computed.
    settle(&rt, &runner, &mut rx, &mut a, fx, 2);
    assert_eq!(a.feature.page, PageState::None);
    let fx = a.update(key('w'));
    assert_eq!(fx, vec![Effect::LoadPage { id, compute: true }]);
    assert_eq!(a.feature.page, PageState::Loading);
    settle(&rt, &runner, &mut rx, &mut a, fx, 1);
    let PageState::Ready(page) = a.feature.page.clone() else {
        panic!("no page: {:?}", a.feature.page);
    };
    assert_eq!((page.feature, page.cofiring_images), (id, 3));
    assert_eq!(page.logit_lens.raises.len(), 10);
    insta::assert_snapshot!("feature_page", draw(&a));
    // Kept: a fresh workbench opening the feature reads it from the store without computing.
    let kept: Option<glint::dashboard::FeaturePage> =
        store.page(id, &store.manifest().sae_fingerprint).unwrap();
    assert_eq!(kept.as_ref(), Some(page.as_ref()));
    let mut b = app_on(&store);
    let fx: Vec<Effect> = jump_keys(id)
        .into_iter()
        .flat_map(|e| b.update(e))
        .collect();
    settle(&rt, &runner, &mut rx, &mut b, fx, 2);
    assert_eq!(b.feature.page, PageState::Ready(page));
    // The JSON export carries the kept page with the feature.
    let (json, rows) =
        glint::score::export::render_table(&store, glint::score::export::TableFormat::Json)
            .unwrap();
    assert_eq!(
        rows, 1,
        "the paged feature is exported though it has no explanation"
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["feature"], id);
    assert_eq!(
        v[0]["page"]["logit_lens"]["raises"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    assert!(v[0]["page"]["cofiring"].is_array());
    // w again shows the examples, without asking for anything.
    assert!(a.update(key('w')).is_empty());
    assert!(!a.feature.show_page);
}

/// The feature-page benchmark (not a timed test): `cargo test --test integration -- --ignored
/// --nocapture bench_feature_page`. Opening a page not yet computed (logit lens, both neighbour
/// lists and co-firing over the top images, on the model actor) against one kept in the store,
/// through the workbench's runner, over the sample world on this machine.
#[test]
#[ignore]
fn bench_feature_page() {
    let tmp = tempfile::tempdir().unwrap();
    let store = build_store(tmp.path(), 6);
    let rt = runtime();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runner = Runner::new(store.clone(), sample_model(), tx);
    let ids = a_few_features(&store, 8);
    let mut a = app_on(&store);
    let mut open = |compute: bool| -> Vec<f64> {
        ids.iter()
            .map(|&id| {
                let t = Instant::now();
                settle(
                    &rt,
                    &runner,
                    &mut rx,
                    &mut a,
                    vec![Effect::LoadPage { id, compute }],
                    1,
                );
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    };
    // The logit lens and both neighbour lists alone (no image re-encoded).
    let handle = sample_model();
    let direct: Vec<f64> = ids
        .iter()
        .map(|&feature| {
            let t = Instant::now();
            let req = glint::dashboard::PageRequest {
                feature,
                images: vec![],
            };
            rt.block_on(handle.submit_page(req)).unwrap().unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cold = open(true);
    let kept = open(false);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let worst = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "feature page, {} features, sample world (ms, mean / slowest):",
        ids.len()
    );
    println!(
        "  lens + neighbours only    {:8.2} / {:8.2}",
        mean(&direct),
        worst(&direct)
    );
    println!(
        "  computed (6 top images)   {:8.2} / {:8.2}",
        mean(&cold),
        worst(&cold)
    );
    println!(
        "  kept in the store         {:8.2} / {:8.2}",
        mean(&kept),
        worst(&kept)
    );
    println!(
        "  ratio computed / kept     {:8.1}x",
        mean(&cold) / mean(&kept).max(1e-9)
    );
    let bytes: usize = ids
        .iter()
        .map(|&f| {
            let p: glint::dashboard::FeaturePage = store
                .page(f, &store.manifest().sae_fingerprint)
                .unwrap()
                .unwrap();
            serde_json::to_vec(&p).unwrap().len()
        })
        .sum();
    println!("  stored page, mean bytes   {:8}", bytes / ids.len().max(1));
}

#[test]
fn two_features_compare_side_by_side() {
    let mut a = app();
    let first = a.features.rows[3].id;
    let mut evs = jump_keys(first);
    evs.push(key('c'));
    drive(&mut a, evs);
    assert!(
        a.message.as_ref().unwrap().0.contains("marked"),
        "{:?}",
        a.message
    );
    drive(&mut a, vec![key('n'), key('c')]);
    let second = a.feature.id.unwrap();
    assert_ne!(second, first);
    assert!(a.feature.comparing);
    let screen = draw(&a);
    assert!(
        screen.contains(&format!("feature {first} (marked)")),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("feature {second} (shown)")),
        "{screen}"
    );
    insta::assert_snapshot!("feature_compare", screen);
    drive(&mut a, vec![key('c')]);
    assert!(!a.feature.comparing);
}
