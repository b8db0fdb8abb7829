//! The model thread and its handle.
//!
//! A dedicated OS thread (candle forwards block, so never a tokio worker) owns whatever implements
//! [`Engine`]. Requests arrive on a bounded channel, each with its own oneshot reply. On every turn
//! the loop drains the channel: of the interactive jobs only the newest survives (older ones are
//! answered `Superseded`), batch jobs keep their order. A shared generation counter cancels: a job
//! carries the generation it was sent under and stops at the next step boundary once the counter
//! has moved on. Nothing in the loop can panic on a job's input; engine errors become replies.
//!
//! Steering requests ([`ModelHandle::submit_steer`]) share the queue but stream events instead of
//! one reply. Latest-wins holds per kind (a steering edit never supersedes an image analysis), and
//! a newer steering request also stops the one running, within one decode step.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};
use tokio::sync::oneshot;

use super::messages::{
    ActorStatus, Analysis, AttribRequest, Job, Lane, ModelError, SteerEvent, SteerRequest,
};
use super::steer::SteerLatest;
use crate::attribute::AttributionResult;
use crate::dashboard::{FeaturePage, PageRequest};

/// Capacity of the request channel; a full channel is reported, never blocks the UI.
pub const QUEUE: usize = 64;

/// The model-side work, behind a trait so tests can drive the actor with a fake.
pub trait Engine {
    /// Run one job, calling `ctl.step` between stages (it returns `Err(Cancelled)` when cancelled).
    fn run(&mut self, job: &Job, ctl: &mut Control<'_>) -> Result<Analysis, ModelError>;

    /// Run a default-versus-steered generation, streaming through `emit` (engines without a
    /// language model refuse).
    fn steer(
        &mut self,
        req: &SteerRequest,
        ctl: &Control<'_>,
        emit: &mut dyn FnMut(SteerEvent),
    ) -> Result<(), ModelError> {
        let _ = (req, ctl, emit);
        Err(ModelError::Failed(
            "this engine cannot generate text".into(),
        ))
    }

    /// Compute a feature page (engines without a language model refuse).
    fn page(&mut self, req: &PageRequest, ctl: &Control<'_>) -> Result<FeaturePage, ModelError> {
        let _ = (req, ctl);
        Err(ModelError::Failed(
            "this engine cannot compute feature pages".into(),
        ))
    }

    /// Attribute an answer to the SAE latents (engines without a language model refuse).
    fn attribute(
        &mut self,
        req: &AttribRequest,
        ctl: &Control<'_>,
    ) -> Result<AttributionResult, ModelError> {
        let _ = (req, ctl);
        Err(ModelError::Failed(
            "this engine cannot attribute answers".into(),
        ))
    }
}

/// Progress reporting and cancellation for the running job.
pub struct Control<'a> {
    generation: &'a AtomicU64,
    sent_under: u64,
    status: &'a Mutex<ActorStatus>,
    /// Steering jobs: the newest request, this job's sequence number and prompt key.
    steer: Option<(&'a SteerLatest, u64, u64)>,
}

impl Control<'_> {
    /// Whether Esc (or a shutdown) was pressed since the job was sent.
    pub fn cancelled(&self) -> bool {
        self.generation.load(Ordering::SeqCst) != self.sent_under
    }

    /// Record that stage `stage` (step `done` of `total`) starts; fails when cancelled.
    pub fn step(&self, stage: &str, done: u32, total: u32) -> Result<(), ModelError> {
        if let Ok(mut s) = self.status.lock() {
            s.stage = stage.to_string();
            s.done = done;
            s.total = total;
        }
        if self.cancelled() {
            Err(ModelError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Whether a newer steering request has been sent since this one (false for other jobs).
    pub fn superseded(&self) -> bool {
        self.steer.is_some_and(|(l, seq, _)| !l.is_newest(seq))
    }

    /// Whether the newest steering request has this job's prompt (true for other jobs).
    pub fn same_prompt(&self) -> bool {
        self.steer.is_none_or(|(l, _, key)| l.prompt_is(key))
    }
}

/// The work of a request and where its answer goes.
enum Work {
    /// An image analysis, answered once.
    Analyze {
        job: Job,
        reply: oneshot::Sender<Result<Analysis, ModelError>>,
    },
    /// A steering generation, streamed; `seq` and `key` as recorded in [`SteerLatest`].
    Steer {
        req: SteerRequest,
        seq: u64,
        key: u64,
        emit: Box<dyn FnMut(SteerEvent) + Send>,
    },
    /// An attribution, answered once.
    Attribute {
        req: AttribRequest,
        reply: oneshot::Sender<Result<AttributionResult, ModelError>>,
    },
    /// A feature page, answered once.
    Page {
        req: PageRequest,
        reply: oneshot::Sender<Result<FeaturePage, ModelError>>,
    },
}

/// Kinds of work, each superseding its own kind only.
const KINDS: usize = 4;

/// A request with its reply channel.
struct Envelope {
    work: Work,
    lane: Lane,
    generation: u64,
}

impl Envelope {
    /// Requests of the same kind supersede each other.
    fn kind(&self) -> usize {
        match self.work {
            Work::Analyze { .. } => 0,
            Work::Steer { .. } => 1,
            Work::Attribute { .. } => 2,
            Work::Page { .. } => 3,
        }
    }

    fn describe(&self) -> String {
        match &self.work {
            Work::Analyze { job, .. } => job.describe(),
            Work::Steer { req, .. } => req.describe(),
            Work::Attribute { req, .. } => format!("attributing {:?}", req.answer),
            Work::Page { req, .. } => format!("feature {} page", req.feature),
        }
    }

    /// Whether nobody waits for the answer any more.
    fn abandoned(&self) -> bool {
        match &self.work {
            Work::Analyze { reply, .. } => reply.is_closed(),
            Work::Attribute { reply, .. } => reply.is_closed(),
            Work::Page { reply, .. } => reply.is_closed(),
            Work::Steer { .. } => false,
        }
    }

    /// Answer without running.
    fn answer(self, err: ModelError) {
        match self.work {
            Work::Analyze { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Work::Steer { req, mut emit, .. } => emit(SteerEvent::Ended {
                ticket: req.ticket,
                result: Err(err),
            }),
            Work::Attribute { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Work::Page { reply, .. } => {
                let _ = reply.send(Err(err));
            }
        }
    }
}

/// Cheap handle to the model thread; dropping the last one ends the thread.
#[derive(Clone)]
pub struct ModelHandle {
    tx: SyncSender<Envelope>,
    generation: Arc<AtomicU64>,
    status: Arc<Mutex<ActorStatus>>,
    latest: Arc<SteerLatest>,
    _join: Arc<JoinGuard>,
}

/// Joins the thread when the last handle goes; the sender is dropped first, so the loop ends.
struct JoinGuard(Mutex<Option<JoinHandle<()>>>);

impl Drop for JoinGuard {
    fn drop(&mut self) {
        // The thread only ends once every sender is gone; a handle's `tx` field is dropped
        // before this guard (field order), and the guard drops with the last handle.
        if let Ok(mut j) = self.0.lock()
            && let Some(j) = j.take()
        {
            let _ = j.join();
        }
    }
}

impl ModelHandle {
    /// Start the thread, build the engine on it, and wait until it is ready (or failed).
    pub fn spawn<E, F>(make: F) -> Result<ModelHandle>
    where
        E: Engine + 'static,
        F: FnOnce() -> Result<E> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel::<Envelope>(QUEUE);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let generation = Arc::new(AtomicU64::new(0));
        let status = Arc::new(Mutex::new(ActorStatus::default()));
        let latest = Arc::new(SteerLatest::default());
        let (g, s, l) = (generation.clone(), status.clone(), latest.clone());
        let join = std::thread::Builder::new()
            .name("model".into())
            .spawn(move || match make() {
                Ok(engine) => {
                    let _ = ready_tx.send(Ok(()));
                    actor_loop(engine, &rx, &g, &s, &l);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                }
            })
            .context("cannot start the model thread")?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => return Err(anyhow!("{msg}")),
            Err(_) => return Err(anyhow!("the model thread ended before it was ready")),
        }
        Ok(ModelHandle {
            tx,
            generation,
            status,
            latest,
            _join: Arc::new(JoinGuard(Mutex::new(Some(join)))),
        })
    }

    /// Queue a job; the receiver yields its result. Never blocks: a full queue is an error reply.
    pub fn submit(&self, job: Job, lane: Lane) -> oneshot::Receiver<Result<Analysis, ModelError>> {
        let (reply, rx) = oneshot::channel();
        let generation = self.generation.load(Ordering::SeqCst);
        self.send(Envelope {
            work: Work::Analyze { job, reply },
            lane,
            generation,
        });
        rx
    }

    /// Queue a steering generation (interactive: it supersedes older steering requests and stops
    /// the running one). Its events, ending with [`SteerEvent::Ended`], go to `emit` on the model
    /// thread, so `emit` should only forward them.
    pub fn submit_steer(&self, req: SteerRequest, emit: impl FnMut(SteerEvent) + Send + 'static) {
        let key = req.prompt_key();
        let seq = self.latest.bump(key);
        let generation = self.generation.load(Ordering::SeqCst);
        self.send(Envelope {
            work: Work::Steer {
                req,
                seq,
                key,
                emit: Box::new(emit),
            },
            lane: Lane::Interactive,
            generation,
        });
    }

    /// Queue an attribution (interactive: a newer one supersedes it while it waits).
    pub fn submit_attribute(
        &self,
        req: AttribRequest,
    ) -> oneshot::Receiver<Result<AttributionResult, ModelError>> {
        let (reply, rx) = oneshot::channel();
        let generation = self.generation.load(Ordering::SeqCst);
        self.send(Envelope {
            work: Work::Attribute { req, reply },
            lane: Lane::Interactive,
            generation,
        });
        rx
    }

    /// Queue a feature page (interactive: a newer page request supersedes a queued one).
    pub fn submit_page(
        &self,
        req: PageRequest,
    ) -> oneshot::Receiver<Result<FeaturePage, ModelError>> {
        let (reply, rx) = oneshot::channel();
        let generation = self.generation.load(Ordering::SeqCst);
        self.send(Envelope {
            work: Work::Page { req, reply },
            lane: Lane::Interactive,
            generation,
        });
        rx
    }

    /// Queue without blocking: a full queue or a stopped actor is an answer.
    fn send(&self, env: Envelope) {
        match self.tx.try_send(env) {
            Ok(()) => {}
            Err(TrySendError::Full(env)) => {
                env.answer(ModelError::Failed("the model queue is full".into()))
            }
            Err(TrySendError::Disconnected(env)) => env.answer(ModelError::Stopped),
        }
    }

    /// Run a job and wait for it (batch callers).
    pub async fn analyze(&self, job: Job, lane: Lane) -> Result<Analysis, ModelError> {
        self.submit(job, lane)
            .await
            .unwrap_or(Err(ModelError::Stopped))
    }

    /// Cancel everything sent so far: the running job stops at its next step, queued ones reply
    /// `Cancelled`.
    pub fn cancel(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// What the actor is doing now.
    pub fn status(&self) -> ActorStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Keep only the newest interactive job of each kind; answer the older ones `Superseded`.
fn coalesce(queue: &mut VecDeque<Envelope>) {
    let newest = |kind: usize| {
        queue
            .iter()
            .rposition(|e| e.lane == Lane::Interactive && e.kind() == kind)
    };
    let keep: [Option<usize>; KINDS] = std::array::from_fn(newest);
    let mut kept = VecDeque::with_capacity(queue.len());
    for (i, env) in queue.drain(..).enumerate() {
        if env.lane == Lane::Interactive && !keep.contains(&Some(i)) {
            env.answer(ModelError::Superseded);
        } else {
            kept.push_back(env);
        }
    }
    *queue = kept;
}

fn actor_loop<E: Engine>(
    mut engine: E,
    rx: &Receiver<Envelope>,
    generation: &AtomicU64,
    status: &Mutex<ActorStatus>,
    latest: &SteerLatest,
) {
    let mut queue: VecDeque<Envelope> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv() {
                Ok(env) => queue.push_back(env),
                Err(_) => return,
            }
        }
        while let Ok(env) = rx.try_recv() {
            queue.push_back(env);
        }
        coalesce(&mut queue);
        let Some(env) = queue.pop_front() else {
            continue;
        };
        if env.abandoned() {
            continue;
        }
        if generation.load(Ordering::SeqCst) != env.generation {
            env.answer(ModelError::Cancelled);
            continue;
        }
        if let Work::Steer { seq, .. } = &env.work
            && !latest.is_newest(*seq)
        {
            env.answer(ModelError::Superseded);
            continue;
        }
        let what = env.describe();
        if let Ok(mut s) = status.lock() {
            *s = ActorStatus {
                busy: Some(what.clone()),
                queued: queue.len(),
                ..Default::default()
            };
        }
        let mut ctl = Control {
            generation,
            sent_under: env.generation,
            status,
            steer: None,
        };
        // A panicking engine must not take the actor down: the UI would wait forever.
        let crashed = || ModelError::Failed(format!("{what} crashed"));
        match env.work {
            Work::Analyze { job, reply } => {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    engine.run(&job, &mut ctl)
                }))
                .unwrap_or_else(|_| Err(crashed()));
                idle(status, queue.len());
                let _ = reply.send(result);
            }
            Work::Steer {
                req,
                seq,
                key,
                mut emit,
            } => {
                ctl.steer = Some((latest, seq, key));
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    engine.steer(&req, &ctl, &mut *emit)
                }))
                .unwrap_or_else(|_| Err(crashed()));
                idle(status, queue.len());
                emit(SteerEvent::Ended {
                    ticket: req.ticket,
                    result,
                });
            }
            Work::Attribute { req, reply } => {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    engine.attribute(&req, &ctl)
                }))
                .unwrap_or_else(|_| Err(crashed()));
                idle(status, queue.len());
                let _ = reply.send(result);
            }
            Work::Page { req, reply } => {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    engine.page(&req, &ctl)
                }))
                .unwrap_or_else(|_| Err(crashed()));
                idle(status, queue.len());
                let _ = reply.send(result);
            }
        }
    }
}

/// Mark the actor idle.
fn idle(status: &Mutex<ActorStatus>, queued: usize) {
    if let Ok(mut s) = status.lock() {
        *s = ActorStatus {
            queued,
            ..Default::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::anyres::ImageLayout;
    use std::path::PathBuf;
    use std::sync::mpsc::Sender;

    /// Blocks on a gate before each job so tests can pile jobs up behind it.
    struct Fake {
        gate: Receiver<()>,
        started: Sender<PathBuf>,
    }

    impl Engine for Fake {
        fn run(&mut self, job: &Job, ctl: &mut Control<'_>) -> Result<Analysis, ModelError> {
            let Job::Analyze { image, .. } = job;
            let _ = self.started.send(image.clone());
            let _ = self.gate.recv();
            ctl.step("encode", 1, 2)?;
            if image.to_str() == Some("boom") {
                panic!("engine bug");
            }
            let layout = ImageLayout::new((28, 28), &[(28, 28)], 28, 14)
                .map_err(|e| ModelError::Failed(e.to_string()))?;
            Ok(Analysis {
                image: image.clone(),
                layout,
                acts: vec![(0, 7, 1.0)],
            })
        }
    }

    fn job(p: &str) -> Job {
        Job::Analyze {
            image: PathBuf::from(p),
            prompt: None,
        }
    }

    fn spawn() -> (ModelHandle, Sender<()>, Receiver<PathBuf>) {
        let (gate_tx, gate) = mpsc::channel();
        let (started, started_rx) = mpsc::channel();
        let h = ModelHandle::spawn(move || Ok(Fake { gate, started })).unwrap();
        (h, gate_tx, started_rx)
    }

    #[test]
    fn failed_load_is_an_error_before_use() {
        let r = ModelHandle::spawn(|| -> Result<Fake> { Err(anyhow!("no weights at x")) });
        assert!(format!("{:#}", r.err().unwrap()).contains("no weights at x"));
    }

    #[test]
    fn newest_interactive_job_wins_and_batch_keeps_order() {
        let (h, gate, started) = spawn();
        let first = h.submit(job("a"), Lane::Interactive);
        assert_eq!(started.recv().unwrap(), PathBuf::from("a"));
        let b = h.submit(job("b"), Lane::Interactive);
        let batch = h.submit(job("batch"), Lane::Batch);
        let c = h.submit(job("c"), Lane::Interactive);
        for _ in 0..3 {
            gate.send(()).unwrap();
        }
        assert!(first.blocking_recv().unwrap().is_ok());
        assert_eq!(b.blocking_recv().unwrap(), Err(ModelError::Superseded));
        assert_eq!(
            batch.blocking_recv().unwrap().unwrap().image,
            PathBuf::from("batch")
        );
        assert_eq!(
            c.blocking_recv().unwrap().unwrap().image,
            PathBuf::from("c")
        );
    }

    #[test]
    fn cancel_stops_running_and_queued_jobs_and_a_panic_is_a_reply() {
        let (h, gate, started) = spawn();
        let running = h.submit(job("a"), Lane::Interactive);
        started.recv().unwrap();
        let queued = h.submit(job("b"), Lane::Batch);
        h.cancel();
        gate.send(()).unwrap();
        assert_eq!(running.blocking_recv().unwrap(), Err(ModelError::Cancelled));
        assert_eq!(queued.blocking_recv().unwrap(), Err(ModelError::Cancelled));
        let boom = h.submit(job("boom"), Lane::Interactive);
        gate.send(()).unwrap();
        assert!(matches!(
            boom.blocking_recv().unwrap(),
            Err(ModelError::Failed(_))
        ));
        let after = h.submit(job("ok"), Lane::Interactive);
        gate.send(()).unwrap();
        assert!(after.blocking_recv().unwrap().is_ok());
        assert_eq!(h.status().busy, None);
    }

    #[test]
    fn an_engine_without_attribution_answers_with_an_error() {
        let (h, _gate, _started) = spawn();
        let req = AttribRequest {
            ticket: 1,
            image: None,
            prompt: "p".into(),
            answer: "a".into(),
            baseline: "b".into(),
        };
        let r = h.submit_attribute(req).blocking_recv().unwrap();
        assert!(
            matches!(&r, Err(ModelError::Failed(m)) if m.contains("cannot attribute")),
            "{r:?}"
        );
    }
}
