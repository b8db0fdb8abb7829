//! Cancelling a running generation between steps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Something a generation asks, between steps, whether to stop.
pub trait Cancellation {
    /// Whether the run should stop before its next forward.
    fn is_cancelled(&self) -> bool;
}

impl<F: Fn() -> bool> Cancellation for F {
    fn is_cancelled(&self) -> bool {
        self()
    }
}

/// A shared counter that cancels every generation started before it was bumped.
///
/// A generation checks it between decode steps, so a cancel takes effect after at most the step
/// in flight. The model thread's own generation counter fits: build the token with
/// [`CancelToken::sent_under`] and the value the job was sent under.
#[derive(Debug, Clone)]
pub struct CancelToken {
    counter: Arc<AtomicU64>,
    seen: u64,
}

impl CancelToken {
    /// A token bound to `counter` at its current value.
    pub fn new(counter: Arc<AtomicU64>) -> Self {
        let seen = counter.load(Ordering::SeqCst);
        Self { counter, seen }
    }

    /// A token for a job sent when `counter` read `generation` (cancelled if it has moved since).
    pub fn sent_under(counter: Arc<AtomicU64>, generation: u64) -> Self {
        Self {
            counter,
            seen: generation,
        }
    }

    /// A token nobody else holds (never cancelled unless [`CancelToken::cancel`] is called).
    pub fn never() -> Self {
        Self::new(Arc::new(AtomicU64::new(0)))
    }

    /// Cancel every token made from this counter so far.
    pub fn cancel(&self) {
        self.counter.fetch_add(1, Ordering::SeqCst);
    }
}

impl Cancellation for CancelToken {
    fn is_cancelled(&self) -> bool {
        self.counter.load(Ordering::SeqCst) != self.seen
    }
}
