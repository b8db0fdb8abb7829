//! The cache's store writer: commits built on the aggregation thread are written and flushed on
//! their own thread while the next images aggregate, one in flight at a time (each is built
//! against the store the previous one left), and each is logged once it is durable.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};

use crate::store::{PendingCommit, Store};

/// The aggregation thread's end of the writer.
pub(super) struct CommitPipe {
    to_writer: Option<SyncSender<PendingCommit>>,
    written: Receiver<Result<f64>>,
    /// Images processed (in this run) that the in-flight commit covers.
    in_flight: Option<usize>,
    /// Seconds the writer spent writing and flushing.
    pub(super) write_s: f64,
    total: usize,
    started: Instant,
    log: bool,
}

impl CommitPipe {
    /// Start the writer thread in `scope`; with `log`, print one line per durable commit of
    /// this run's `total` images (logs then show what a rerun resumes from).
    pub(super) fn spawn<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        store: &'scope Store,
        total: usize,
        started: Instant,
        log: bool,
    ) -> Self {
        let (to_writer, commits) = std::sync::mpsc::sync_channel::<PendingCommit>(0);
        let (done, written) = std::sync::mpsc::channel::<Result<f64>>();
        scope.spawn(move || {
            for commit in commits {
                let t = Instant::now();
                let result = commit.write(store).map(|()| t.elapsed().as_secs_f64());
                let failed = result.is_err();
                if done.send(result).is_err() || failed {
                    break;
                }
            }
        });
        Self {
            to_writer: Some(to_writer),
            written,
            in_flight: None,
            write_s: 0.0,
            total,
            started,
            log,
        }
    }

    /// Hand over a commit covering the first `count` processed images, once the previous one
    /// is durable.
    pub(super) fn send(&mut self, commit: PendingCommit, count: usize) -> Result<()> {
        self.wait()?;
        self.to_writer
            .as_ref()
            .context("the store writer was already closed")?
            .send(commit)
            .map_err(|_| anyhow!("the store writer stopped"))?;
        self.in_flight = Some(count);
        Ok(())
    }

    /// Note a finished write, if any, without blocking.
    pub(super) fn poll(&mut self) -> Result<()> {
        if self.in_flight.is_none() {
            return Ok(());
        }
        match self.written.try_recv() {
            Ok(result) => self.finished(result),
            Err(TryRecvError::Empty) => Ok(()),
            Err(TryRecvError::Disconnected) => Err(anyhow!("the store writer stopped")),
        }
    }

    /// Block until the in-flight commit, if any, is durable.
    pub(super) fn wait(&mut self) -> Result<()> {
        if self.in_flight.is_none() {
            return Ok(());
        }
        let result = self
            .written
            .recv()
            .context("the store writer stopped before finishing a commit")?;
        self.finished(result)
    }

    /// Wait for the last write and stop the writer thread.
    pub(super) fn close(&mut self) -> Result<()> {
        self.wait()?;
        self.to_writer = None;
        Ok(())
    }

    fn finished(&mut self, result: Result<f64>) -> Result<()> {
        self.write_s += result.context("writing a commit to the store")?;
        let count = self.in_flight.take().unwrap_or(0);
        if self.log {
            let rate = count as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "cache: {count}/{} images, {rate:.2} images/s, committed",
                self.total
            );
        }
        Ok(())
    }
}
