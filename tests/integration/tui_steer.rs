//! The steering panel: scripted keys driving `update` without threads, a TestBackend snapshot,
//! presets through the effects, and a steered generation streamed by the model actor on the
//! sample world with a newer edit cancelling the running one.

use std::sync::mpsc;
use std::time::Duration;

use crate::common::{app_of, code, draw, drive, feature_row, key, sample_model};
use crossterm::event::KeyCode;
use glint::engine::{ModelError, Side, SteerEvent, SteerRequest};
use glint::generate::{StopReason, StrengthUnit};
use glint::sae::intervene::{Mode, Phase, TokenScope};
use glint::tui::app::{App, Effect, Event, Screen};
use glint::tui::screens::steer::preset::Preset;
use glint::tui::screens::steer::{SteerEffect, SteerMsg};
use glint::tui::ui::{self, Graphics};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// Features 3, 7 and 12 with cached maxima 2, 10 and 4.
fn app() -> App {
    let rows = vec![
        feature_row(3, 2.0, Some("red squares")),
        feature_row(7, 10.0, Some("circles near the top")),
        feature_row(12, 4.0, None),
    ];
    app_of(rows, "sample · 3 features", (110, 30))
}

fn typed(text: &str) -> Vec<Event> {
    let mut v: Vec<Event> = text.chars().map(key).collect();
    v.push(code(KeyCode::Enter));
    v
}

fn seq(parts: Vec<Vec<Event>>) -> Vec<Event> {
    parts.into_iter().flatten().collect()
}

fn backspaces(n: usize) -> Vec<Event> {
    (0..n).map(|_| code(KeyCode::Backspace)).collect()
}

/// The requests among `effects`.
fn requests(effects: &[Effect]) -> Vec<SteerRequest> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Steer(SteerEffect::Generate { request, .. }) => Some(request.clone()),
            _ => None,
        })
        .collect()
}

fn ev(e: SteerEvent) -> Event {
    Event::Steer(SteerMsg::Gen(e))
}

fn tokens(ticket: u64, side: Side, words: &[(u32, &str)]) -> Vec<Event> {
    let mut v = vec![ev(SteerEvent::Started {
        ticket,
        side,
        cached: false,
    })];
    for &(id, text) in words {
        v.push(ev(SteerEvent::Token {
            ticket,
            side,
            id,
            text: text.into(),
        }));
    }
    v
}

fn finished(ticket: u64, side: Side, rate: f64, warnings: Vec<String>) -> Event {
    ev(SteerEvent::Finished {
        ticket,
        side,
        stop: StopReason::MaxTokens,
        tail: String::new(),
        tokens_per_second: rate,
        warnings,
    })
}

#[test]
fn keys_add_edit_and_delete_rows_and_every_edit_sends_a_newer_request() {
    let mut a = app();
    // S on the feature screen adds the feature shown.
    a.screen = Screen::Feature;
    a.feature.id = Some(7);
    let fx = drive(&mut a, vec![key('S')]);
    let r = requests(&fx);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].ticket, r[0].edits[0].feature), (1, 7));
    assert_eq!(
        (r[0].edits[0].mode, r[0].edits[0].value),
        (Mode::Replace, 50.0),
        "the default of `glint --batch steer`: replace at raw 50"
    );
    assert!(
        a.message.as_ref().unwrap().0.contains("(replace 50)"),
        "the default is shown: {:?}",
        a.message
    );
    assert_eq!(
        a.screen,
        Screen::Feature,
        "adding does not leave the feature screen"
    );
    drive(&mut a, vec![key('4')]);
    assert_eq!(a.screen, Screen::Steer);
    // Typed rows: a feature with a mode and a raw strength, then one with defaults.
    let fx = drive(&mut a, seq(vec![vec![key('a')], typed("12 add 40")]));
    assert_eq!(requests(&fx).last().unwrap().edits.len(), 2);
    drive(&mut a, seq(vec![vec![key('a')], typed("3")]));
    let rows: Vec<(u32, Mode, f32, StrengthUnit)> = a
        .steer
        .rows
        .iter()
        .map(|r| (r.feature, r.mode, r.strength, r.unit))
        .collect();
    assert_eq!(
        rows,
        vec![
            (7, Mode::Replace, 50.0, StrengthUnit::Raw),
            (12, Mode::Add, 40.0, StrengthUnit::Raw),
            (3, Mode::Replace, 50.0, StrengthUnit::Raw),
        ]
    );
    assert_eq!(a.steer.sel, 2);
    // Fine and coarse steps on the selected row (raw: 1 and 10).
    drive(&mut a, vec![key('+'), key('+'), key('>'), key('-')]);
    assert_eq!(a.steer.rows[2].strength, 61.0);
    // ×max steps are 0.1 and 1, and a unit round trip keeps the strength exactly.
    drive(&mut a, vec![key('u'), key('+'), key('u'), key('u')]);
    assert_eq!(
        (a.steer.rows[2].strength, a.steer.rows[2].unit),
        (30.6, StrengthUnit::Max),
        "61 raw is 30.5 × the max of 2, one step up, there and back"
    );
    // Up to the raw row: fine 1, coarse 10.
    drive(&mut a, vec![key('k'), key('<'), key('-')]);
    assert_eq!(a.steer.rows[1].strength, 29.0);
    // A typed strength sets the unit too.
    let fx = drive(
        &mut a,
        seq(vec![
            vec![code(KeyCode::Enter)],
            backspaces(8),
            typed("1.5x"),
        ]),
    );
    assert_eq!(
        (a.steer.rows[1].strength, a.steer.rows[1].unit),
        (1.5, StrengthUnit::Max)
    );
    assert_eq!(requests(&fx).last().unwrap().edits[1].value, 6.0, "1.5 × 4");
    // Mode, phase and token scope cycle; an impossible scope is skipped.
    drive(&mut a, vec![key('m')]);
    assert_eq!(a.steer.rows[1].mode, Mode::Replace);
    assert_eq!(a.steer.rows[1].scope.phase, Phase::Prefill);
    let said = &a.message.as_ref().unwrap().0;
    assert!(
        said.contains("phase both → prefill"),
        "the phase change is said: {said}"
    );
    drive(&mut a, vec![key('t'), key('p')]);
    assert_eq!(a.steer.rows[1].scope.tokens, TokenScope::Image);
    assert_eq!(
        a.steer.rows[1].scope.phase,
        Phase::Both,
        "decode × image skipped"
    );
    // A bad typed strength changes nothing and says why.
    let before = a.steer.clone();
    let fx = drive(
        &mut a,
        seq(vec![
            vec![code(KeyCode::Enter)],
            backspaces(8),
            typed("loud"),
        ]),
    );
    assert!(requests(&fx).is_empty());
    assert_eq!(a.steer, before);
    assert!(a.message.as_ref().unwrap().0.contains("not a strength"));
    // Delete the selected row.
    let fx = drive(&mut a, vec![key('x')]);
    assert_eq!(
        a.steer.rows.iter().map(|r| r.feature).collect::<Vec<_>>(),
        vec![7, 3]
    );
    assert_eq!(requests(&fx).last().unwrap().edits.len(), 2);
    // Every edit so far was its own request, numbered in order.
    assert_eq!(a.steer.ticket, 18);
}

#[test]
fn a_newer_edit_supersedes_the_older_request_on_screen() {
    let mut a = app();
    drive(
        &mut a,
        seq(vec![vec![key('4'), key('a')], typed("7 replace 5x")]),
    );
    let first = a.steer.ticket;
    drive(
        &mut a,
        tokens(first, Side::Default, &[(1, "A"), (2, " cat")]),
    );
    // The user nudges the strength before the first request ends.
    let fx = drive(&mut a, vec![key('+')]);
    let newer = requests(&fx)[0].ticket;
    assert_eq!(newer, first + 1);
    assert!(a.steer.pending);
    // The old request's late events change nothing on screen.
    drive(&mut a, tokens(first, Side::Steered, &[(9, "zzz")]));
    drive(
        &mut a,
        vec![ev(SteerEvent::Ended {
            ticket: first,
            result: Err(ModelError::Superseded),
        })],
    );
    assert!(a.steer.steered.tokens.is_empty());
    assert!(a.steer.pending, "still waiting for the newer request");
    assert_eq!(
        a.steer.default.ticket, first,
        "older text stays, dimmed, until replaced"
    );
    drive(
        &mut a,
        tokens(newer, Side::Default, &[(1, "A"), (2, " cat")]),
    );
    drive(
        &mut a,
        tokens(newer, Side::Steered, &[(1, "A"), (5, " dog")]),
    );
    drive(
        &mut a,
        vec![ev(SteerEvent::Ended {
            ticket: newer,
            result: Ok(()),
        })],
    );
    assert!(!a.steer.pending);
    assert_eq!(a.steer.steered.text(), "A dog");
    assert_eq!(a.steer.default.ticket, newer);
}

#[test]
fn steering_panel_snapshot() {
    let mut a = app();
    drive(
        &mut a,
        seq(vec![vec![key('4'), key('a')], typed("7 clamp 2.5x")]),
    );
    drive(&mut a, seq(vec![vec![key('a')], typed("12 add 40")]));
    let t = a.steer.ticket;
    drive(
        &mut a,
        tokens(
            t,
            Side::Default,
            &[
                (1, "A"),
                (2, " red"),
                (3, " square"),
                (4, " sits"),
                (5, " on"),
                (6, " the"),
                (7, " left"),
                (8, "."),
            ],
        ),
    );
    drive(&mut a, vec![finished(t, Side::Default, 31.5, vec![])]);
    drive(
        &mut a,
        tokens(
            t,
            Side::Steered,
            &[
                (1, "A"),
                (20, " blue"),
                (21, " circle"),
                (4, " sits"),
                (5, " on"),
                (6, " the"),
                (9, " top"),
            ],
        ),
    );
    drive(
        &mut a,
        vec![finished(
            t,
            Side::Steered,
            29.0,
            vec!["feature 12: the add to 40 changed nothing at any of 3 positions".into()],
        )],
    );
    insta::assert_snapshot!("steer_panel", draw(&a));
    // The differing tokens carry the theme's diff style.
    let mut term = Terminal::new(TestBackend::new(a.size.0, a.size.1)).unwrap();
    term.draw(|f| ui::render(&a, f, &mut Graphics::HalfBlocks))
        .unwrap();
    let diff = a.theme.diff;
    let buf = term.backend().buffer();
    let styled: String = buf
        .content()
        .iter()
        .filter(|c| Some(c.fg) == diff.fg && Some(c.bg) == diff.bg)
        .map(|c| c.symbol())
        .collect();
    assert!(
        styled.contains("blue") && styled.contains("circle") && styled.contains("top"),
        "{styled:?}"
    );
    assert!(!styled.contains("sits"), "{styled:?}");
}

#[test]
fn presets_save_and_load_through_effects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preset.toml");
    let mut a = app();
    drive(
        &mut a,
        seq(vec![vec![key('4'), key('a')], typed("7 replace 50")]),
    );
    drive(
        &mut a,
        seq(vec![
            vec![key('i')],
            backspaces(40),
            typed("Tell me a story."),
        ]),
    );
    drive(&mut a, vec![key('p')]);
    let save = drive(
        &mut a,
        seq(vec![
            vec![key('w')],
            backspaces(20),
            typed(&path.display().to_string()),
        ]),
    );
    let [Effect::Steer(SteerEffect::SavePreset { path: p, preset })] = save.as_slice() else {
        panic!("{save:?}");
    };
    preset.save(p).unwrap();
    let saved = a.steer.clone();
    let mut b = app();
    let load = drive(
        &mut b,
        seq(vec![
            vec![key('4'), key('r')],
            typed(&path.display().to_string()),
        ]),
    );
    let [Effect::Steer(SteerEffect::LoadPreset(p))] = load.as_slice() else {
        panic!("{load:?}");
    };
    let result = Preset::load(p).map_err(|e| format!("{e:#}"));
    let fx = drive(
        &mut b,
        vec![Event::Steer(SteerMsg::PresetLoaded {
            path: p.clone(),
            result,
        })],
    );
    assert_eq!(b.steer.rows, saved.rows);
    assert_eq!(b.steer.prompt, "Tell me a story.");
    assert_eq!(b.steer.rows[0].scope.phase, Phase::Decode);
    let req = &requests(&fx)[0];
    assert_eq!((req.edits[0].feature, req.edits[0].value), (7, 50.0));
    // A bad file is reported with its name.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{ \"prompt\": 3 }").unwrap();
    let result = Preset::load(&bad).map_err(|e| format!("{e:#}"));
    drive(
        &mut b,
        vec![Event::Steer(SteerMsg::PresetLoaded { path: bad, result })],
    );
    let (msg, error) = b.message.clone().unwrap();
    assert!(error && msg.contains("bad.json"), "{msg}");
}

/// Receive events of any ticket until `ticket` ends.
fn collect(
    rx: &mpsc::Receiver<SteerEvent>,
    ticket: u64,
    into: &mut Vec<SteerEvent>,
) -> Result<(), ModelError> {
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the actor answers");
        into.push(e.clone());
        if let SteerEvent::Ended { ticket: t, result } = e
            && t == ticket
        {
            return result;
        }
    }
}

fn side_tokens(events: &[SteerEvent], ticket: u64, side: Side) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            SteerEvent::Token {
                ticket: t,
                side: s,
                id,
                ..
            } if *t == ticket && *s == side => Some(*id),
            _ => None,
        })
        .collect()
}

fn rate(events: &[SteerEvent], ticket: u64, side: Side) -> f64 {
    events
        .iter()
        .find_map(|e| match e {
            SteerEvent::Finished {
                ticket: t,
                side: s,
                tokens_per_second,
                ..
            } if *t == ticket && *s == side => Some(*tokens_per_second),
            _ => None,
        })
        .unwrap_or(0.0)
}

#[test]
fn the_actor_streams_default_and_steered_and_a_newer_edit_cancels_within_a_step() {
    let n: usize = std::env::var("GLINT_STEER_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let model = sample_model();
    let mut a = app();
    drive(
        &mut a,
        seq(vec![
            vec![key('4'), key('n')],
            backspaces(4),
            typed(&n.to_string()),
        ]),
    );
    drive(
        &mut a,
        seq(vec![
            vec![key('i')],
            backspaces(40),
            typed("Tell me a story about Alice and Bob."),
        ]),
    );
    let fx = drive(&mut a, seq(vec![vec![key('a')], typed("7 replace 50")]));
    let first = requests(&fx).pop().unwrap();
    let (tx, rx) = mpsc::channel();
    let send = |req: SteerRequest| {
        let tx = tx.clone();
        model.submit_steer(req, move |e| {
            let _ = tx.send(e);
        });
    };
    // The first request's first steered token holds the model thread until the edit is sent,
    // so exactly one step separates the edit from the check that must stop the run.
    let (gate_tx, gate) = mpsc::channel::<()>();
    let first_tx = tx.clone();
    let mut held = false;
    model.submit_steer(first.clone(), move |e| {
        let hold = !held
            && matches!(
                e,
                SteerEvent::Token {
                    side: Side::Steered,
                    ..
                }
            );
        let _ = first_tx.send(e);
        if hold {
            held = true;
            let _ = gate.recv();
        }
    });
    // Wait for the first steered token, then edit: the running steered side must stop.
    let mut events = Vec::new();
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("tokens stream");
        events.push(e.clone());
        if let SteerEvent::Token {
            side: Side::Steered,
            ..
        } = e
        {
            break;
        }
    }
    let fx = drive(&mut a, vec![key('-'), key('+')]);
    let reqs = requests(&fx);
    assert_eq!(reqs.len(), 2);
    for r in reqs.clone() {
        send(r);
    }
    gate_tx.send(()).unwrap();
    assert_eq!(
        collect(&rx, first.ticket, &mut events),
        Err(ModelError::Superseded)
    );
    let newest = reqs[1].ticket;
    assert_eq!(
        collect(&rx, reqs[0].ticket, &mut events),
        Err(ModelError::Superseded)
    );
    assert_eq!(collect(&rx, newest, &mut events), Ok(()));
    let cut = side_tokens(&events, first.ticket, Side::Steered);
    assert_eq!(cut.len(), 1, "no step after the edit: {cut:?}");
    assert!(events.iter().any(|e| matches!(e,
        SteerEvent::Finished { ticket, side: Side::Steered, stop: StopReason::Cancelled, .. } if *ticket == first.ticket)));
    // The newest request replays the default and streams the steered side in full.
    assert!(events.iter().any(|e| matches!(e,
        SteerEvent::Started { ticket, side: Side::Default, cached: true } if *ticket == newest)));
    let default = side_tokens(&events, newest, Side::Default);
    let steered = side_tokens(&events, newest, Side::Steered);
    assert_eq!(default, side_tokens(&events, first.ticket, Side::Default));
    assert_eq!((default.len(), steered.len()), (n, n));
    assert_ne!(
        default, steered,
        "replace 50 on feature 7 moves the sample model"
    );
    eprintln!(
        "actor decode tokens/s over {n} tokens: default {:.1}, steered (replace f7=50, prefill) {:.1}",
        rate(&events, first.ticket, Side::Default),
        rate(&events, newest, Side::Steered)
    );
    // Cycling the mode to clamp (phase both: every decode step is edited) runs through the
    // actor too; the default is replayed, not generated again.
    let clamp = requests(&drive(&mut a, vec![key('m')])).pop().unwrap();
    assert_eq!(clamp.edits[0].mode, Mode::Clamp);
    send(clamp.clone());
    let mut more = Vec::new();
    assert_eq!(collect(&rx, clamp.ticket, &mut more), Ok(()));
    assert_eq!(side_tokens(&more, clamp.ticket, Side::Default), default);
    eprintln!(
        "actor decode tokens/s, clamp f7=50 at every position: {:.1}",
        rate(&more, clamp.ticket, Side::Steered)
    );
    // The same events drive the panel: only the newest request shows, with its differences.
    for e in events.into_iter().chain(more) {
        a.update(ev(e));
    }
    assert!(!a.steer.pending);
    assert_eq!(a.steer.steered.ticket, clamp.ticket);
    let shown: Vec<u32> = a.steer.default.tokens.iter().map(|t| t.0).collect();
    assert_eq!(shown, default);
    assert!(a.steer.error.is_none(), "{:?}", a.steer.error);
}

#[test]
fn esc_during_a_generation_cancels_it_and_keeps_both_texts() {
    let mut a = app();
    drive(
        &mut a,
        seq(vec![vec![key('4'), key('a')], typed("7 add 5")]),
    );
    let t = a.steer.ticket;
    drive(&mut a, tokens(t, Side::Default, &[(1, "A"), (2, " cat")]));
    drive(&mut a, vec![finished(t, Side::Default, 9.0, vec![])]);
    drive(&mut a, tokens(t, Side::Steered, &[(1, "A"), (3, " dog")]));
    // The actor's status may lag the request: a pending generation is still what Esc stops.
    let fx = drive(&mut a, vec![code(KeyCode::Esc)]);
    assert!(fx.contains(&Effect::CancelModel), "{fx:?}");
    assert_eq!(a.screen, Screen::Steer);
    drive(
        &mut a,
        vec![ev(SteerEvent::Ended {
            ticket: t,
            result: Err(ModelError::Cancelled),
        })],
    );
    assert_eq!(a.steer.default.text(), "A cat");
    assert_eq!(a.steer.steered.text(), "A dog");
    assert!(!a.steer.pending);
    assert_eq!(a.message.as_ref().unwrap().0, "steering cancelled");
    // Scrolling the panes: PgDn moves both, PgUp back to the top, never above it.
    drive(&mut a, vec![code(KeyCode::PageDown)]);
    assert!(a.steer.scroll > 0);
    drive(&mut a, vec![code(KeyCode::PageUp), code(KeyCode::PageUp)]);
    assert_eq!(a.steer.scroll, 0);
    // A loaded preset of one row says "1 row".
    let one = Preset::of(&a.steer);
    drive(
        &mut a,
        vec![Event::Steer(SteerMsg::PresetLoaded {
            path: "p.toml".into(),
            result: Ok(one),
        })],
    );
    assert_eq!(a.message.as_ref().unwrap().0, "preset p.toml loaded: 1 row");
    // Out of range features are refused when typed, naming the SAE's width.
    a.latents = Some(256);
    let fx = drive(&mut a, seq(vec![vec![key('a')], typed("999")]));
    assert!(requests(&fx).is_empty());
    let said = &a.message.as_ref().unwrap().0;
    assert!(
        said.contains("feature 999 is out of range") && said.contains("256"),
        "{said}"
    );
    // A preset named by Enter alone is saved as steer.toml (nothing appended to a default).
    let fx = drive(&mut a, vec![key('w'), code(KeyCode::Enter)]);
    assert!(
        fx.iter().any(|e| matches!(e,
            Effect::Steer(SteerEffect::SavePreset { path, .. }) if path.as_os_str() == "steer.toml")),
        "{fx:?}"
    );
    let fx = drive(&mut a, seq(vec![vec![key('w')], typed("mine.json")]));
    assert!(
        fx.iter().any(|e| matches!(e,
            Effect::Steer(SteerEffect::SavePreset { path, .. }) if path.as_os_str() == "mine.json")),
        "{fx:?}"
    );
}
