//! Steering on the model thread: a default and a steered generation for the TUI's panel.
//!
//! The two sides run one after the other (default first), each streaming its tokens. The default
//! depends only on the prompt, image, limit and sampling, so it is kept and replayed while only
//! the steering changes; the prepared prompt (image embedding and plain prefill) is kept with it.
//! A newer steering request cancels the steered side within one decode step; the default side is
//! cancelled only when the newer request changes the prompt, so holding a strength key still lets
//! the default finish once.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::Tensor;

use super::actor::Control;
use super::messages::{ModelError, Side, SteerEvent, SteerRequest, SteerSpec};
use crate::generate::{
    GenerateOptions, PreparedPrompt, StopReason, TokenEvent, generate, generate_with_edit,
};
use crate::model::tap::{TapEdit, TapSite};
use crate::sae::intervene::{Intervention, SteerEdit};
use crate::session::Session;

/// The newest steering request sent: its sequence number and prompt key.
#[derive(Debug, Default)]
pub struct SteerLatest {
    seq: AtomicU64,
    prompt: AtomicU64,
}

impl SteerLatest {
    /// Record a new request with prompt key `key`; returns its sequence number.
    pub fn bump(&self, key: u64) -> u64 {
        // The prompt key is stored first so a job that sees the new number also sees its key.
        self.prompt.store(key, Ordering::SeqCst);
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Whether `seq` is still the newest request.
    pub fn is_newest(&self, seq: u64) -> bool {
        self.seq.load(Ordering::SeqCst) == seq
    }

    /// Whether the newest request has prompt key `key`.
    pub fn prompt_is(&self, key: u64) -> bool {
        self.prompt.load(Ordering::SeqCst) == key
    }
}

/// A finished default generation, kept for replay.
#[derive(Debug, Clone)]
struct Replay {
    tokens: Vec<(u32, String)>,
    tail: String,
    stop: StopReason,
    tokens_per_second: f64,
}

/// What the model thread keeps between steering requests.
#[derive(Default)]
pub struct SteerCache {
    key: Option<u64>,
    prompt: Option<PreparedPrompt>,
    default: Option<Replay>,
}

/// Several interventions applied one after the other at the tap.
struct Chain<'a>(Vec<SteerEdit<'a>>);

impl TapEdit for Chain<'_> {
    fn edit(&mut self, residual: &Tensor, site: &TapSite) -> candle_core::Result<Option<Tensor>> {
        let mut current: Option<Tensor> = None;
        for e in &mut self.0 {
            let input = current.as_ref().unwrap_or(residual);
            if let Some(out) = e.edit(input, site)? {
                current = Some(out);
            }
        }
        Ok(current)
    }
}

/// Group rows into interventions: rows sharing mode, direction and scope act together (a
/// `replace` reconstructs once for all its features), groups apply in order of first appearance.
pub fn interventions(edits: &[SteerSpec]) -> Vec<Intervention> {
    let mut out: Vec<Intervention> = Vec::new();
    for e in edits {
        let same = |iv: &&mut Intervention| {
            iv.mode == e.mode && iv.direction == e.direction && iv.scope == e.scope
        };
        match out.iter_mut().find(same) {
            Some(iv) => iv.edits.push((e.feature, e.value)),
            None => out.push(Intervention {
                mode: e.mode,
                edits: vec![(e.feature, e.value)],
                direction: e.direction,
                scope: e.scope,
            }),
        }
    }
    out
}

/// Why a side stopped early: Esc cancels, anything else was a newer request.
fn stopped_because(ctl: &Control<'_>) -> ModelError {
    if ctl.cancelled() {
        ModelError::Cancelled
    } else {
        ModelError::Superseded
    }
}

/// Run `req`: the default side (replayed when the prompt is unchanged), then the steered side.
pub fn run_steer(
    session: &Session,
    cache: &mut SteerCache,
    req: &SteerRequest,
    ctl: &Control<'_>,
    emit: &mut dyn FnMut(SteerEvent),
) -> Result<(), ModelError> {
    let ticket = req.ticket;
    let key = req.prompt_key();
    if cache.key != Some(key) {
        ctl.step("preparing the prompt", 0, 1)?;
        *cache = SteerCache::default();
        let prompt = PreparedPrompt::new(session, &req.prompt, req.image.as_deref()).map_err(
            |e| match &req.image {
                Some(i) => ModelError::Failed(format!("{}: {e:#}", i.display())),
                None => ModelError::Failed(format!("preparing the prompt: {e:#}")),
            },
        )?;
        cache.prompt = Some(prompt);
        cache.key = Some(key);
    }
    let Some(prompt) = cache.prompt.as_ref() else {
        return Err(ModelError::Failed(
            "the prepared prompt was not kept".into(),
        ));
    };
    let opts = GenerateOptions {
        max_new_tokens: req.max_new_tokens,
        sampling: req.sampling,
        stop_ids: None,
    };
    let total = req.max_new_tokens as u32;
    match &cache.default {
        Some(r) => {
            emit(SteerEvent::Started {
                ticket,
                side: Side::Default,
                cached: true,
            });
            for (id, text) in &r.tokens {
                emit(SteerEvent::Token {
                    ticket,
                    side: Side::Default,
                    id: *id,
                    text: text.clone(),
                });
            }
            emit(SteerEvent::Finished {
                ticket,
                side: Side::Default,
                stop: r.stop,
                tail: r.tail.clone(),
                tokens_per_second: r.tokens_per_second,
                warnings: Vec::new(),
            });
        }
        None => {
            emit(SteerEvent::Started {
                ticket,
                side: Side::Default,
                cached: false,
            });
            let mut replay = Replay {
                tokens: Vec::new(),
                tail: String::new(),
                stop: StopReason::Cancelled,
                tokens_per_second: 0.0,
            };
            let cancel = || ctl.cancelled() || !ctl.same_prompt();
            let g = generate(session, prompt, None, &opts, &cancel, &mut |e| {
                stream(ctl, ticket, Side::Default, total, e, &mut replay, emit)
            })
            .map_err(|e| ModelError::Failed(format!("default generation: {e:#}")))?;
            replay.stop = g.stop;
            replay.tokens_per_second = g.tokens_per_second();
            emit(SteerEvent::Finished {
                ticket,
                side: Side::Default,
                stop: g.stop,
                tail: replay.tail.clone(),
                tokens_per_second: replay.tokens_per_second,
                warnings: g.warnings.clone(),
            });
            if g.stop == StopReason::Cancelled {
                return Err(stopped_because(ctl));
            }
            cache.default = Some(replay);
        }
    }
    if req.edits.is_empty() {
        return Ok(());
    }
    if ctl.superseded() || ctl.cancelled() {
        return Err(stopped_because(ctl));
    }
    let ivs = interventions(&req.edits);
    let edits = ivs
        .iter()
        .map(|iv| SteerEdit::new(&session.sae, iv, &prompt.map))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|e| ModelError::Failed(format!("steering: {e:#}")))?;
    let rewrites = ivs.iter().any(Intervention::rewrites_prompt);
    let mut chain = Chain(edits);
    emit(SteerEvent::Started {
        ticket,
        side: Side::Steered,
        cached: false,
    });
    let mut seen = Replay {
        tokens: Vec::new(),
        tail: String::new(),
        stop: StopReason::Cancelled,
        tokens_per_second: 0.0,
    };
    let cancel = || ctl.cancelled() || ctl.superseded();
    let g = generate_with_edit(
        session,
        prompt,
        Some(&mut chain),
        rewrites,
        &opts,
        &cancel,
        &mut |e| stream(ctl, ticket, Side::Steered, total, e, &mut seen, emit),
    )
    .map_err(|e| ModelError::Failed(format!("steered generation: {e:#}")))?;
    let mut warnings = Vec::new();
    for e in chain.0.iter_mut() {
        let stats = e
            .stats()
            .map_err(|err| ModelError::Failed(format!("steering statistics: {err:#}")))?;
        warnings.extend(stats.warnings());
    }
    emit(SteerEvent::Finished {
        ticket,
        side: Side::Steered,
        stop: g.stop,
        tail: seen.tail,
        tokens_per_second: g.tokens_per_second(),
        warnings,
    });
    if g.stop == StopReason::Cancelled {
        return Err(stopped_because(ctl));
    }
    Ok(())
}

/// Forward one generation event, recording it and the progress.
fn stream(
    ctl: &Control<'_>,
    ticket: u64,
    side: Side,
    total: u32,
    e: TokenEvent,
    record: &mut Replay,
    emit: &mut dyn FnMut(SteerEvent),
) -> std::ops::ControlFlow<()> {
    let stage = match side {
        Side::Default => "default",
        Side::Steered => "steered",
    };
    match e {
        TokenEvent::Prefilled { .. } => {
            // Only progress: cancellation is the generation's own check.
            let _ = ctl.step(stage, 0, total);
        }
        TokenEvent::Token { index, id, text } => {
            let _ = ctl.step(stage, index as u32 + 1, total);
            record.tokens.push((id, text.clone()));
            emit(SteerEvent::Token {
                ticket,
                side,
                id,
                text,
            });
        }
        TokenEvent::Finished { tail, .. } => record.tail = tail,
    }
    std::ops::ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::mpsc::{self, Receiver, Sender};

    use super::*;
    use crate::engine::{Analysis, Engine, Job, Lane, ModelHandle};
    use crate::generate::Sampling;
    use crate::sae::intervene::{Direction, Mode, Phase, Scope, TokenScope};

    /// Streams one token per gate opening, checking for newer requests like the real engine.
    struct Fake {
        gate: Receiver<()>,
        started: Sender<u64>,
    }

    impl Engine for Fake {
        fn run(&mut self, job: &Job, _: &mut Control<'_>) -> Result<Analysis, ModelError> {
            Err(ModelError::Failed(job.describe()))
        }

        fn steer(
            &mut self,
            req: &SteerRequest,
            ctl: &Control<'_>,
            emit: &mut dyn FnMut(SteerEvent),
        ) -> Result<(), ModelError> {
            let _ = self.started.send(req.ticket);
            for id in 0..3 {
                let _ = self.gate.recv();
                if ctl.cancelled() || ctl.superseded() {
                    return Err(stopped_because(ctl));
                }
                if req.prompt == "boom" {
                    panic!("engine bug");
                }
                emit(SteerEvent::Token {
                    ticket: req.ticket,
                    side: Side::Steered,
                    id,
                    text: id.to_string(),
                });
            }
            Ok(())
        }
    }

    fn request(ticket: u64, prompt: &str) -> SteerRequest {
        SteerRequest {
            ticket,
            prompt: prompt.into(),
            image: None,
            edits: vec![],
            max_new_tokens: 3,
            sampling: Sampling::Greedy,
        }
    }

    type Events = Receiver<SteerEvent>;

    fn spawn() -> (
        ModelHandle,
        Sender<()>,
        Receiver<u64>,
        Sender<SteerEvent>,
        Events,
    ) {
        let (gate_tx, gate) = mpsc::channel();
        let (started, started_rx) = mpsc::channel();
        let h = ModelHandle::spawn(move || Ok(Fake { gate, started })).unwrap();
        let (tx, rx) = mpsc::channel();
        (h, gate_tx, started_rx, tx, rx)
    }

    fn submit(h: &ModelHandle, tx: &Sender<SteerEvent>, req: SteerRequest) {
        let tx = tx.clone();
        h.submit_steer(req, move |e| {
            let _ = tx.send(e);
        });
    }

    /// Events until ticket `t` ends, and how it ended.
    fn until_end(rx: &Events, t: u64) -> (Vec<SteerEvent>, Result<(), ModelError>) {
        let mut seen = Vec::new();
        loop {
            match rx.recv().unwrap() {
                SteerEvent::Ended { ticket, result } if ticket == t => return (seen, result),
                e => seen.push(e),
            }
        }
    }

    #[test]
    fn a_newer_request_stops_the_running_one_and_supersedes_the_queued_one() {
        let (h, gate, started, tx, rx) = spawn();
        submit(&h, &tx, request(1, "a"));
        assert_eq!(started.recv().unwrap(), 1);
        gate.send(()).unwrap();
        assert!(matches!(
            rx.recv().unwrap(),
            SteerEvent::Token { ticket: 1, .. }
        ));
        submit(&h, &tx, request(2, "b"));
        submit(&h, &tx, request(3, "c"));
        // An image job between them is another kind: it is not superseded.
        let analysis = h.submit(
            Job::Analyze {
                image: PathBuf::from("x.png"),
                prompt: None,
            },
            Lane::Interactive,
        );
        gate.send(()).unwrap();
        let (seen, result) = until_end(&rx, 1);
        assert_eq!(result, Err(ModelError::Superseded));
        assert!(
            seen.is_empty(),
            "no token after the newer request: {seen:?}"
        );
        let (_, result) = until_end(&rx, 2);
        assert_eq!(result, Err(ModelError::Superseded));
        assert_eq!(started.recv().unwrap(), 3);
        for _ in 0..3 {
            gate.send(()).unwrap();
        }
        let (seen, result) = until_end(&rx, 3);
        assert_eq!((seen.len(), result), (3, Ok(())));
        assert!(matches!(
            analysis.blocking_recv().unwrap(),
            Err(ModelError::Failed(m)) if m.contains("x.png")
        ));
        assert!(started.try_recv().is_err(), "request 2 never ran");
    }

    #[test]
    fn cancel_and_a_panic_end_the_request_and_the_actor_goes_on() {
        let (h, gate, started, tx, rx) = spawn();
        submit(&h, &tx, request(1, "a"));
        started.recv().unwrap();
        h.cancel();
        gate.send(()).unwrap();
        assert_eq!(until_end(&rx, 1).1, Err(ModelError::Cancelled));
        submit(&h, &tx, request(2, "boom"));
        started.recv().unwrap();
        gate.send(()).unwrap();
        let end = until_end(&rx, 2).1;
        assert!(
            matches!(&end, Err(ModelError::Failed(m)) if m.contains("crashed")),
            "{end:?}"
        );
        submit(&h, &tx, request(3, "ok"));
        started.recv().unwrap();
        for _ in 0..3 {
            gate.send(()).unwrap();
        }
        assert_eq!(until_end(&rx, 3).1, Ok(()));
        assert_eq!(h.status().busy, None);
    }

    fn spec(feature: u32, mode: Mode, phase: Phase) -> SteerSpec {
        SteerSpec {
            feature,
            mode,
            value: feature as f32,
            direction: Direction::Raw,
            scope: Scope {
                phase,
                tokens: TokenScope::All,
            },
        }
    }

    #[test]
    fn rows_group_by_mode_direction_and_scope_in_first_seen_order() {
        let ivs = interventions(&[
            spec(1, Mode::Clamp, Phase::Both),
            spec(2, Mode::Replace, Phase::Prefill),
            spec(3, Mode::Clamp, Phase::Both),
            spec(4, Mode::Clamp, Phase::Decode),
        ]);
        let got: Vec<(Mode, Vec<(u32, f32)>)> =
            ivs.iter().map(|iv| (iv.mode, iv.edits.clone())).collect();
        assert_eq!(
            got,
            vec![
                (Mode::Clamp, vec![(1, 1.0), (3, 3.0)]),
                (Mode::Replace, vec![(2, 2.0)]),
                (Mode::Clamp, vec![(4, 4.0)]),
            ]
        );
        assert_eq!(ivs[2].scope.phase, Phase::Decode);
    }

    #[test]
    fn the_latest_counter_tracks_sequence_and_prompt() {
        let l = SteerLatest::default();
        let a = l.bump(7);
        assert!(l.is_newest(a) && l.prompt_is(7));
        let b = l.bump(9);
        assert!(!l.is_newest(a) && l.is_newest(b));
        assert!(!l.prompt_is(7) && l.prompt_is(9));
    }
}
