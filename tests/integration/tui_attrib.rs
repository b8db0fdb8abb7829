//! The attribution screen: scripted keys driving `update` without threads, a TestBackend
//! snapshot of a hand-made result, and the model actor attributing a sample item on the tiny
//! sample model.

use std::path::PathBuf;

use crate::common::{app_of, code, draw, drive, feature_row, key, sample_image, sample_model};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use glint::attribute::{AttributionResult, LatentAttribution, TokenChoice};
use glint::engine::{AttribRequest, ModelError};
use glint::model::anyres::ImageLayout;
use glint::tui::app::{App, Effect, Event, Screen};
use glint::tui::screens::attrib::{AttribDone, AttribJob, AttribSort, MapSign};
use glint::tui::ui::{self, Graphics};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn app() -> App {
    let rows = vec![
        feature_row(3, 3.0, Some("red squares")),
        feature_row(7, 3.0, Some("circles near the top")),
        feature_row(12, 3.0, None),
    ];
    app_of(rows, "sample · 3 features", (100, 28))
}

/// Open a prompt with `k`, type `text` and press Enter.
fn typed(k: char, text: &str) -> Vec<Event> {
    let mut v = vec![key(k)];
    v.extend(text.chars().map(key));
    v.push(code(KeyCode::Enter));
    v
}

fn tok(text: &str, id: u32) -> TokenChoice {
    TokenChoice {
        text: text.into(),
        id,
        token: text.replace(' ', "Ġ"),
    }
}

/// A 56 x 56 image: one 2 x 2 base view, then a 4 x 4 high-res map (each row ends in a newline
/// token, so high-res token (r, c) is `4 + 5r + c`).
fn layout() -> ImageLayout {
    ImageLayout::new((56, 56), &[(56, 56)], 28, 14).unwrap()
}

fn hi(r: u32, c: u32) -> u32 {
    4 + 5 * r + c
}

fn latent(id: u32, image_map: Vec<(u32, f32)>, text: f64) -> LatentAttribution {
    let image: f64 = image_map.iter().map(|&(_, v)| f64::from(v)).sum();
    LatentAttribution {
        latent: id,
        total: image + text,
        image,
        text,
        activation_sum: 1.0,
        positions: image_map.len() as u32 + 1,
        image_map,
        text_map: vec![(30, text as f32)],
    }
}

/// Latent 7 pushes towards the answer from the top-left patches, 3 against it from the
/// bottom-right ones, 12 mostly through the text.
fn result() -> AttributionResult {
    let l7 = latent(
        7,
        vec![(hi(0, 0), 0.8), (hi(0, 1), 0.4), (hi(1, 0), 0.3)],
        0.1,
    );
    let l3 = latent(3, vec![(hi(3, 3), -0.9), (hi(2, 3), -0.2)], 0.05);
    let l12 = latent(12, vec![(hi(1, 1), 0.05)], 2.0);
    let mut latents = vec![l7, l3, l12];
    latents.sort_by(|a, b| b.total.total_cmp(&a.total));
    AttributionResult {
        answer: tok(" red", 10),
        baseline: tok(" blue", 11),
        plain_metric: Some(1.25),
        patched_metric: 1.25,
        positions: 40,
        image_positions: 24,
        active_pairs: 9,
        sae_rel_error: 0.1,
        layout: Some(layout()),
        latents,
        timing: Default::default(),
    }
}

fn picture() -> image::RgbImage {
    image::RgbImage::from_fn(56, 56, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 96])
    })
}

fn done(ticket: u64) -> Event {
    Event::Attributed(AttribDone {
        ticket,
        rgb: Some(Ok(picture())),
        result: Ok(result()),
    })
}

fn ranked_ids(app: &App) -> Vec<u32> {
    app.attrib.ranked.iter().map(|l| l.latent).collect()
}

#[test]
fn keys_fill_the_inputs_send_a_request_rank_and_jump_to_the_feature() {
    let mut a = app();
    assert!(drive(&mut a, vec![key('5')]).is_empty());
    assert_eq!(a.screen, Screen::Attrib);
    // Running before the inputs are typed says what is missing.
    assert!(drive(&mut a, vec![key('r')]).is_empty());
    assert!(a.message.as_ref().unwrap().0.contains("prompt"));
    let mut events = typed('i', "  What colour is the circle?  ");
    events.extend(typed('a', " red"));
    events.extend(typed('b', " blue"));
    events.extend(typed('I', "7"));
    assert!(drive(&mut a, events).is_empty());
    let effects = drive(&mut a, vec![key('r')]);
    let [Effect::Attrib(AttribJob { request, image })] = effects.as_slice() else {
        panic!("{effects:?}");
    };
    assert_eq!(
        request,
        &AttribRequest {
            ticket: 1,
            image: None,
            prompt: "What colour is the circle?".into(),
            answer: " red".into(),
            baseline: " blue".into(),
        }
    );
    assert_eq!(image.as_deref(), Some("7"));
    assert!(a.attrib.pending);
    // A second run supersedes the first: the first one's answer is dropped.
    drive(&mut a, vec![key('r')]);
    assert_eq!(a.attrib.ticket, 2);
    // Esc cancels a waiting request; running again sends a newer one.
    let effects = drive(&mut a, vec![code(KeyCode::Esc)]);
    assert_eq!(effects, [Effect::CancelModel]);
    assert!(!a.attrib.pending && a.screen == Screen::Attrib);
    drive(&mut a, vec![key('r')]);
    assert_eq!(a.attrib.ticket, 3);
    drive(&mut a, vec![done(2)]);
    assert!(a.attrib.result.is_none() && a.attrib.pending);
    drive(&mut a, vec![done(3)]);
    assert!(!a.attrib.pending);
    assert_eq!(ranked_ids(&a), [12, 7, 3], "by |total|");
    drive(&mut a, vec![key('j')]);
    assert_eq!(a.attrib.selected().unwrap().latent, 7);
    drive(&mut a, vec![key('s')]);
    assert_eq!(a.attrib.sort, AttribSort::AbsImage);
    assert_eq!(ranked_ids(&a), [7, 3, 12], "by |image|");
    assert_eq!(a.attrib.selected().unwrap().latent, 7, "selection kept");
    drive(&mut a, vec![key('m')]);
    assert_eq!(a.attrib.sign, MapSign::Positive);
    drive(&mut a, vec![key('G')]);
    assert_eq!(a.attrib.selected().unwrap().latent, 12);
    drive(&mut a, vec![key('k')]);
    let effects = drive(&mut a, vec![code(KeyCode::Enter)]);
    assert_eq!(a.screen, Screen::Feature);
    assert_eq!(a.feature.id, Some(3));
    assert!(effects.contains(&Effect::LoadFeature(3)), "{effects:?}");
    // Back on the screen, a failed run shows its error and keeps the last result.
    drive(&mut a, vec![key('5'), key('r')]);
    drive(
        &mut a,
        vec![Event::Attributed(AttribDone {
            ticket: 4,
            rgb: None,
            result: Err(ModelError::Failed("the answer \" red\" is 2 tokens".into())),
        })],
    );
    assert_eq!(a.message.as_ref().map(|m| m.1), Some(true));
    assert!(a.attrib.error.as_ref().unwrap().contains("2 tokens"));
    assert!(draw(&a).contains("5 attrib"));
}

#[test]
fn the_image_defaults_to_the_one_open_on_the_image_screen() {
    let mut a = app();
    a.image.analysis = Some(glint::engine::Analysis {
        image: PathBuf::from("shapes/shape-0003.png"),
        layout: layout(),
        acts: vec![],
    });
    drive(&mut a, vec![key('5')]);
    assert_eq!(a.attrib.image.as_deref(), Some("shapes/shape-0003.png"));
    // Clearing it runs the prompt alone.
    let clear = Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    drive(&mut a, vec![key('I'), clear, code(KeyCode::Enter)]);
    assert_eq!(a.attrib.image, None);
}

#[test]
fn attribution_screen_snapshot() {
    let mut a = app();
    drive(&mut a, vec![key('5')]);
    let mut events = typed('i', "What colour is the circle?");
    events.extend(typed('a', " red"));
    events.extend(typed('b', " blue"));
    events.extend(typed('I', "shape-0000.png"));
    drive(&mut a, events);
    drive(&mut a, vec![key('r')]);
    drive(&mut a, vec![done(1), key('j')]);
    a.message = None;
    insta::assert_snapshot!("attrib_screen", draw(&a));
    // The map of latent 7 is bright at the top-left and leaves the bottom-right as it was.
    let mut term = Terminal::new(TestBackend::new(a.size.0, a.size.1)).unwrap();
    term.draw(|f| ui::render(&a, f, &mut Graphics::HalfBlocks))
        .unwrap();
    let buf = term.backend().buffer();
    let cells: Vec<_> = buf
        .content()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.symbol() == "▀")
        .map(|(i, c)| (i as u16 % a.size.0, i as u16 / a.size.0, c.fg))
        .collect();
    assert!(!cells.is_empty());
    let (x0, x1) = (
        cells.iter().map(|c| c.0).min().unwrap(),
        cells.iter().map(|c| c.0).max().unwrap(),
    );
    let (y0, y1) = (
        cells.iter().map(|c| c.1).min().unwrap(),
        cells.iter().map(|c| c.1).max().unwrap(),
    );
    let at = |x: u16, y: u16| cells.iter().find(|c| c.0 == x && c.1 == y).unwrap().2;
    let plain = |x: u16, y: u16| {
        let p = picture();
        let px = ((u32::from(x - x0) * 2 + 1) * 56 / (2 * u32::from(x1 - x0 + 1))).min(55);
        let py = ((u32::from(y - y0) * 4 + 1) * 56 / (4 * u32::from(y1 - y0 + 1))).min(55);
        let q = p.get_pixel(px, py).0;
        ratatui::style::Color::Rgb(q[0], q[1], q[2])
    };
    assert_ne!(at(x0, y0), plain(x0, y0), "top-left is coloured");
    assert_eq!(at(x1, y1), plain(x1, y1), "bottom-right is untouched");
}

#[test]
fn the_actor_attributes_a_sample_item_and_reports_bad_tokens() {
    let model = sample_model();
    let image = sample_image("shape-0000.png");
    let req = AttribRequest {
        ticket: 1,
        image: Some(image.clone()),
        prompt: "What colour is the circle?".into(),
        answer: "Ġred".into(),
        baseline: " blue".into(),
    };
    let r = model
        .submit_attribute(req.clone())
        .blocking_recv()
        .unwrap()
        .unwrap();
    let layout = r.layout.clone().expect("an image layout");
    assert!(!r.latents.is_empty());
    assert!(r.image_positions > 0 && r.image_positions < r.positions);
    let n = layout.num_image_tokens() as u32;
    let mapped = r.latents.iter().filter(|l| !l.image_map.is_empty()).count();
    assert!(mapped > 0, "some latent has a patch map");
    for l in &r.latents {
        assert!((l.total - (l.image + l.text)).abs() < 1e-6 * (1.0 + l.total.abs()));
        assert!(l.image_map.iter().all(|&(t, _)| t < n));
    }
    // The result drives the screen: it draws with the real geometry.
    let mut a = app();
    drive(&mut a, vec![key('5')]);
    a.attrib.ticket = 1;
    drive(
        &mut a,
        vec![Event::Attributed(AttribDone {
            ticket: 1,
            rgb: Some(glint::tui::data::read_image(&image, 256).map_err(|e| e.to_string())),
            result: Ok(r.clone()),
        })],
    );
    assert_eq!(a.attrib.ranked.len(), r.latents.len());
    assert!(!a.attrib.map_acts().is_empty() || r.latents[0].image_map.is_empty());
    assert!(draw(&a).contains(&format!("{:>6}", a.attrib.ranked[0].latent)));
    // A bad request is an error reply, not a panic.
    let same = AttribRequest {
        baseline: "Ġred".into(),
        ..req
    };
    match model.submit_attribute(same).blocking_recv().unwrap() {
        Err(ModelError::Failed(m)) => assert!(m.contains("same token"), "{m}"),
        other => panic!("{other:?}"),
    }
}
