//! The model thread and its handle.
//!
//! A dedicated OS thread (candle forwards block, so never a tokio worker) owns whatever implements
//! [`Engine`]. Requests arrive on a bounded channel, each with its own oneshot reply. On every turn
//! the loop drains the channel: of the interactive jobs only the newest survives (older ones are
//! answered `Superseded`), batch jobs keep their order. A shared generation counter cancels: a job
//! carries the generation it was sent under and stops at the next step boundary once the counter
//! has moved on. Nothing in the loop can panic on a job's input; engine errors become replies.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};
use tokio::sync::oneshot;

use super::messages::{ActorStatus, Analysis, Job, Lane, ModelError};

/// Capacity of the request channel; a full channel is reported, never blocks the UI.
pub const QUEUE: usize = 64;

/// The model-side work, behind a trait so tests can drive the actor with a fake.
pub trait Engine {
    /// Run one job, calling `ctl.step` between stages (it returns `Err(Cancelled)` when cancelled).
    fn run(&mut self, job: &Job, ctl: &mut Control<'_>) -> Result<Analysis, ModelError>;
}

/// Progress reporting and cancellation for the running job.
pub struct Control<'a> {
    generation: &'a AtomicU64,
    sent_under: u64,
    status: &'a Mutex<ActorStatus>,
}

impl Control<'_> {
    /// Whether Esc (or a shutdown) was pressed since the job was sent.
    pub fn cancelled(&self) -> bool {
        self.generation.load(Ordering::SeqCst) != self.sent_under
    }

    /// Record that stage `stage` (step `done` of `total`) starts; fails when cancelled.
    pub fn step(&mut self, stage: &str, done: u32, total: u32) -> Result<(), ModelError> {
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
}

/// A request with its reply channel.
struct Envelope {
    job: Job,
    lane: Lane,
    generation: u64,
    reply: oneshot::Sender<Result<Analysis, ModelError>>,
}

/// Cheap handle to the model thread; dropping the last one ends the thread.
#[derive(Clone)]
pub struct ModelHandle {
    tx: SyncSender<Envelope>,
    generation: Arc<AtomicU64>,
    status: Arc<Mutex<ActorStatus>>,
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
        let (g, s) = (generation.clone(), status.clone());
        let join = std::thread::Builder::new()
            .name("model".into())
            .spawn(move || match make() {
                Ok(engine) => {
                    let _ = ready_tx.send(Ok(()));
                    actor_loop(engine, &rx, &g, &s);
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
            _join: Arc::new(JoinGuard(Mutex::new(Some(join)))),
        })
    }

    /// Queue a job; the receiver yields its result. Never blocks: a full queue is an error reply.
    pub fn submit(&self, job: Job, lane: Lane) -> oneshot::Receiver<Result<Analysis, ModelError>> {
        let (reply, rx) = oneshot::channel();
        let generation = self.generation.load(Ordering::SeqCst);
        match self.tx.try_send(Envelope {
            job,
            lane,
            generation,
            reply,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(env)) => {
                let _ = env
                    .reply
                    .send(Err(ModelError::Failed("the model queue is full".into())));
            }
            Err(TrySendError::Disconnected(env)) => {
                let _ = env.reply.send(Err(ModelError::Stopped));
            }
        }
        rx
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

/// Keep only the newest interactive job; answer the older ones `Superseded`.
fn coalesce(queue: &mut VecDeque<Envelope>) {
    let Some(newest) = queue.iter().rposition(|e| e.lane == Lane::Interactive) else {
        return;
    };
    let mut kept = VecDeque::with_capacity(queue.len());
    for (i, env) in queue.drain(..).enumerate() {
        if env.lane == Lane::Interactive && i != newest {
            let _ = env.reply.send(Err(ModelError::Superseded));
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
        if env.reply.is_closed() {
            continue;
        }
        if generation.load(Ordering::SeqCst) != env.generation {
            let _ = env.reply.send(Err(ModelError::Cancelled));
            continue;
        }
        if let Ok(mut s) = status.lock() {
            *s = ActorStatus {
                busy: Some(env.job.describe()),
                queued: queue.len(),
                ..Default::default()
            };
        }
        let mut ctl = Control {
            generation,
            sent_under: env.generation,
            status,
        };
        // A panicking engine must not take the actor down: the UI would wait forever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.run(&env.job, &mut ctl)
        }))
        .unwrap_or_else(|_| {
            Err(ModelError::Failed(format!(
                "{} crashed",
                env.job.describe()
            )))
        });
        if let Ok(mut s) = status.lock() {
            *s = ActorStatus {
                queued: queue.len(),
                ..Default::default()
            };
        }
        let _ = env.reply.send(result);
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
}
