//! Feeding images into a store as a cache job does: one thread aggregates and builds commits,
//! a writer thread writes and flushes them while the next images aggregate (one in flight at a
//! time, each built against the store the previous one left), and every durable commit is noted
//! on a timeline. `glint --batch cache` and `glint bench store` share this path.
//!
//! A commit holds at least `commit_every` images. While the previous one is still being written,
//! images keep aggregating and join the next commit, up to [`MAX_PENDING_COMMITS`] ×
//! `commit_every` images or [`MAX_PENDING_EXAMPLES`] new examples: a commit rewrites every
//! changed list whatever its image count, so a slow write makes the next commit larger instead of
//! stalling the device.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::thread::Scope;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use serde::Serialize;

use super::{Aggregator, ImageRecord, PendingCommit, SkippedImage, Store};

/// Seconds each store stage was busy, and what it wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestStages {
    /// Folding codes into the top-example lists and statistics.
    pub aggregate_s: f64,
    /// Building commit batches (on the aggregation thread).
    pub commit_prepare_s: f64,
    /// Writing and flushing commit batches to the store (on the writer thread).
    pub commit_write_s: f64,
    /// Bytes of keys and values written to the store.
    pub bytes_written: u64,
    /// Commits written.
    pub commits: usize,
}

/// One durable commit: how far the run was and when.
#[derive(Debug, Clone, Serialize)]
pub struct CommitPoint {
    /// Images of this run the store holds after the commit.
    pub images: usize,
    /// Seconds since the ingest started.
    pub seconds: f64,
    /// Bytes this commit wrote.
    pub bytes: u64,
}

/// Images pending beyond which aggregation waits for the writer, in units of `commit_every`.
pub const MAX_PENDING_COMMITS: usize = 16;

/// New examples pending beyond which aggregation waits for the writer (about 100 B each).
pub const MAX_PENDING_EXAMPLES: usize = 1 << 22;

/// A commit handed to the writer, and what the writer sends back.
type Job = (PendingCommit, usize);
type Written = Result<(f64, u64, usize)>;

/// The aggregation thread's end of a store ingest.
pub struct Ingest<'s> {
    agg: Aggregator,
    store: &'s Store,
    commit_every: usize,
    to_writer: Option<SyncSender<Job>>,
    written: Receiver<Written>,
    in_flight: bool,
    /// Images added by this run.
    added: usize,
    total: usize,
    started: Instant,
    log: bool,
    stages: IngestStages,
    timeline: Vec<CommitPoint>,
}

impl<'s> Ingest<'s> {
    /// Start the writer thread in `scope` for `agg` (resumed from `store`), committing every
    /// `commit_every` images; with `log`, print one line per durable commit of this run's
    /// `total` images (logs then show what a rerun resumes from).
    pub fn start<'scope>(
        scope: &'scope Scope<'scope, '_>,
        store: &'s Store,
        agg: Aggregator,
        commit_every: usize,
        total: usize,
        log: bool,
    ) -> Self
    where
        's: 'scope,
    {
        let (to_writer, commits) = std::sync::mpsc::sync_channel::<Job>(0);
        let (done, written) = std::sync::mpsc::channel::<Written>();
        scope.spawn(move || {
            for (commit, images) in commits {
                let t = Instant::now();
                let result = commit
                    .write(store)
                    .map(|bytes| (t.elapsed().as_secs_f64(), bytes, images));
                let failed = result.is_err();
                if done.send(result).is_err() || failed {
                    break;
                }
            }
        });
        Self {
            agg,
            store,
            commit_every: commit_every.max(1),
            to_writer: Some(to_writer),
            written,
            in_flight: false,
            added: 0,
            total,
            started: Instant::now(),
            log,
            stages: IngestStages::default(),
            timeline: Vec::new(),
        }
    }

    /// Fold in one image (see [`Aggregator::add_image`]) and commit when `commit_every` images
    /// are pending.
    pub fn add(
        &mut self,
        image: ImageRecord,
        acts: &[(u16, u32, f32)],
        base_tokens: usize,
        scored_tokens: usize,
    ) -> Result<()> {
        let t = Instant::now();
        self.agg
            .add_image(image, acts, base_tokens, scored_tokens)?;
        self.stages.aggregate_s += t.elapsed().as_secs_f64();
        self.added += 1;
        self.poll()?;
        let pending = self.agg.pending_images();
        if pending >= self.commit_every {
            let room = pending < MAX_PENDING_COMMITS * self.commit_every
                && self.agg.pending_examples() < MAX_PENDING_EXAMPLES;
            if self.in_flight && room {
                // The writer is busy: these images join the next commit.
                return Ok(());
            }
            self.wait()?;
            let t = Instant::now();
            let commit = self.agg.prepare_commit(self.store)?;
            self.stages.commit_prepare_s += t.elapsed().as_secs_f64();
            self.to_writer
                .as_ref()
                .context("the store writer was already closed")?
                .send((commit, self.added))
                .map_err(|_| anyhow!("the store writer stopped"))?;
            self.in_flight = true;
        }
        Ok(())
    }

    /// Record an image that could not be aggregated (committed with the next commit).
    pub fn skip(&mut self, skipped: SkippedImage) -> Result<()> {
        self.agg.skip_image(skipped)?;
        self.poll()
    }

    /// The aggregator (its progress includes images not yet committed).
    pub fn aggregator(&self) -> &Aggregator {
        &self.agg
    }

    /// Wait for the last write, stop the writer, and finish the store (complete).
    pub fn finish(mut self) -> Result<(IngestStages, Vec<CommitPoint>)> {
        self.wait()?;
        self.to_writer = None;
        let t = Instant::now();
        self.agg.finish(self.store)?;
        self.stages.commit_write_s += t.elapsed().as_secs_f64();
        Ok((self.stages, self.timeline))
    }

    /// Note a finished write, if any, without blocking.
    fn poll(&mut self) -> Result<()> {
        if !self.in_flight {
            return Ok(());
        }
        match self.written.try_recv() {
            Ok(result) => self.finished(result),
            Err(TryRecvError::Empty) => Ok(()),
            Err(TryRecvError::Disconnected) => Err(anyhow!("the store writer stopped")),
        }
    }

    /// Block until the in-flight commit, if any, is durable.
    fn wait(&mut self) -> Result<()> {
        if !self.in_flight {
            return Ok(());
        }
        let result = self
            .written
            .recv()
            .context("the store writer stopped before finishing a commit")?;
        self.finished(result)
    }

    fn finished(&mut self, result: Written) -> Result<()> {
        self.in_flight = false;
        let (seconds, bytes, images) = result.context("writing a commit to the store")?;
        self.stages.commit_write_s += seconds;
        self.stages.bytes_written += bytes;
        self.stages.commits += 1;
        let elapsed = self.started.elapsed().as_secs_f64();
        self.timeline.push(CommitPoint {
            images,
            seconds: elapsed,
            bytes,
        });
        if self.log {
            let rate = images as f64 / elapsed.max(1e-9);
            eprintln!(
                "cache: {images}/{} images, {rate:.2} images/s, committed",
                self.total
            );
        }
        Ok(())
    }
}

/// Images per second over the first and the last tenth of a run's images from image `from` on
/// (e.g. once the top-N lists are full), from `(images done, seconds)` points in order (one per
/// image or one per commit); `None` with fewer than 20 images past `from`. A window runs from
/// the last point at or before its start to the first point at or past its end.
pub fn edge_rates(points: &[(usize, f64)], from: usize) -> Option<(f64, f64)> {
    let &(end, _) = points.last()?;
    let tenth = end.checked_sub(from).filter(|&n| n >= 20)? / 10;
    let at_or_before = |n: usize| {
        points
            .iter()
            .rev()
            .find(|p| p.0 <= n)
            .copied()
            .unwrap_or((0, 0.0))
    };
    let at_or_past = |n: usize| points.iter().find(|p| p.0 >= n).copied();
    let rate = |a: (usize, f64), b: (usize, f64)| (b.0 - a.0) as f64 / (b.1 - a.1).max(1e-9);
    let first = rate(at_or_before(from), at_or_past(from + tenth)?);
    let last = rate(at_or_before(end - tenth), *points.last()?);
    Some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_rates_use_the_first_and_last_tenth() {
        let each = |n: usize| (1..=n).map(|i| (i, i as f64)).collect::<Vec<_>>();
        assert!(edge_rates(&each(19), 0).is_none());
        assert!(edge_rates(&each(25), 6).is_none());
        assert!(edge_rates(&each(26), 6).is_some());
        // 100 images, 1 s each for the first 50, then 0.5 s each.
        let mut t = 0.0;
        let done: Vec<(usize, f64)> = (0..100)
            .map(|i| {
                t += if i < 50 { 1.0 } else { 0.5 };
                (i + 1, t)
            })
            .collect();
        let (first, last) = edge_rates(&done, 0).unwrap();
        assert!(
            (first - 1.0).abs() < 1e-9 && (last - 2.0).abs() < 1e-9,
            "{first} {last}"
        );
        // From image 50 on, both windows run at 2 images/s.
        let (first, last) = edge_rates(&done, 50).unwrap();
        assert!(
            (first - 2.0).abs() < 1e-9 && (last - 2.0).abs() < 1e-9,
            "{first} {last}"
        );
        // Commit points every 8 images: windows widen to the commits around them.
        let commits: Vec<(usize, f64)> = done.iter().copied().filter(|p| p.0 % 8 == 0).collect();
        let (first, last) = edge_rates(&commits, 0).unwrap();
        assert!(
            (first - 1.0).abs() < 1e-9 && (last - 2.0).abs() < 1e-9,
            "{first} {last}"
        );
    }
}
