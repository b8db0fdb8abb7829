//! `glint --batch cache`: run a dataset to the tap, encode with the SAE, aggregate into a store.
//!
//! The forward stops after the tapped layer; SAE codes stay sparse (k per token); only the
//! aggregator's per-feature top-N lists and statistics are held in memory (see
//! [`crate::store::Aggregator`] for the bound). Progress is committed at least every
//! `commit_every` images in one atomic batch (written on its own thread while the next images
//! aggregate and, while a write lasts, join the next batch: see [`crate::store::ingest`]), so a
//! killed run resumes where its last commit left it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::dataset::{Dataset, DatasetItem, Shard};
use crate::model::preprocess::PreprocessedImage;
use crate::session::Session;
use crate::session::encode::{ImageCodes, TokenSelection, encode_tokens};
use crate::store::ingest::{CommitPoint, Ingest, edge_rates};
use crate::store::{
    Aggregator, FeatureFilter, GLINT_VERSION, ImageRecord, Manifest, RankRule, SCHEMA_VERSION,
    SkippedImage, Store,
};

/// Images each preparation worker decodes ahead of the device.
const PREFETCH: usize = 2;

/// Threads decoding and preprocessing images: all cores but the one driving the model, at most 4.
fn prep_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).clamp(1, 4)
}

/// Settings of one cache run.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Store folder (created, or resumed when it exists).
    pub out: PathBuf,
    /// Examples kept per feature.
    pub top_n: usize,
    /// Ranking rule of the examples.
    pub rank: RankRule,
    /// Features to store (all are computed).
    pub features: FeatureFilter,
    /// This process's part of the dataset.
    pub shard: Option<Shard>,
    /// Images per atomic commit.
    pub commit_every: usize,
    /// Show a progress bar (otherwise log lines).
    pub progress_bar: bool,
    /// Which positions are scored and stored.
    pub tokens: TokenSelection,
    /// Firing images each feature keeps as a sample across its range (0: none).
    pub range_sample: usize,
}

/// What a cache run did (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct CacheSummary {
    /// Store folder.
    pub store: String,
    /// Images aggregated by this run.
    pub images_done: usize,
    /// Images already in the store from an earlier run.
    pub images_resumed: u64,
    /// Images the store skipped, with reasons: this run's and those of the runs it resumed.
    pub skipped: Vec<SkippedImage>,
    /// Paths under the dataset folder left out of the listing (links to folders already
    /// listed), with reasons.
    pub unlisted: Vec<crate::dataset::Unlisted>,
    /// Image tokens scored by this run.
    pub tokens: u64,
    /// Seconds opening (or resuming) the store before caching began; model loading is before
    /// that and in neither figure.
    pub store_open_s: f64,
    /// Wall time of the caching itself in seconds (set-up excluded).
    pub seconds: f64,
    /// Images per second.
    pub images_per_second: f64,
    /// Tokens per second.
    pub tokens_per_second: f64,
    /// Peak resident memory of the process, in bytes (Linux).
    pub peak_rss_bytes: Option<u64>,
    /// Size of the store folder on disk at the end, in bytes.
    pub store_bytes: u64,
    /// `store_bytes` over every image the store holds (this run's and resumed ones).
    pub store_bytes_per_image: f64,
    /// Bytes of keys and values this run wrote to the store.
    pub bytes_written: u64,
    /// `bytes_written` over this run's images.
    pub bytes_written_per_image: f64,
    /// Images per second over the first and the last tenth of this run's images after the
    /// first `top_n` (when every top-N list can be full), from the commit timeline.
    pub rates_after_fill: Option<EdgeRates>,
    /// Where the time went, per stage (each stage runs on its own thread).
    pub stages: CacheStages,
    /// Every durable commit of this run.
    pub commits: Vec<CommitPoint>,
}

/// Images per second at the start and the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeRates {
    /// Over the first tenth of the images counted.
    pub first_10pct: f64,
    /// Over the last tenth.
    pub last_10pct: f64,
}

/// Seconds each stage of `glint --batch cache` was busy; the largest bounds the throughput.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheStages {
    /// The device thread waiting for decoded, preprocessed images.
    pub wait_for_images_s: f64,
    /// Model forward to the tap, SAE encode and the copy of the codes to the host.
    pub device_s: f64,
    /// Folding codes into the top-example lists and statistics.
    pub aggregate_s: f64,
    /// Building commit batches (on the aggregation thread).
    pub commit_prepare_s: f64,
    /// Writing and flushing commit batches to the store (on the writer thread).
    pub commit_write_s: f64,
}

/// The manifest a run of `session` over `dataset` writes.
pub fn manifest_for(session: &Session, dataset: &Dataset, opts: &CacheOptions) -> Result<Manifest> {
    let prompt = session.prompt_ids(None, true)?;
    let preprocessing = serde_json::json!({
        "processor": serde_json::to_value(&session.model.processor)?,
        "pinpoints": session.model.config.image_grid_pinpoints,
        "prompt_ids": prompt,
        "dtype": format!("{:?}", session.model.model.dtype()),
        "sae_dtype": format!("{:?}", session.sae.dtype()),
    });
    Ok(Manifest {
        schema_version: SCHEMA_VERSION,
        glint_version: GLINT_VERSION.to_string(),
        model_id: session.model.id.clone(),
        model_fingerprint: session.model.fingerprint.clone(),
        sae_id: session.sae_id.clone(),
        sae_fingerprint: session.sae_fingerprint.clone(),
        hookpoint: session.sae.hookpoint().to_string(),
        layer: session.layer,
        num_latents: session.sae.num_latents(),
        k: session.sae.k(),
        dataset: dataset.source.clone(),
        dataset_fingerprint: dataset.fingerprint(),
        preprocessing,
        rank: opts.rank,
        top_n: opts.top_n,
        shard: opts.shard.map(|s| (s.index, s.count)),
        features: opts.features.clone(),
        tokens: opts.tokens,
        range_sample: opts.range_sample,
    })
}

/// One image's sparse activations at its scored positions.
pub struct ImageActs {
    /// The record to store.
    pub record: ImageRecord,
    /// `(token index, feature, value)`, indexed as [`crate::session::encode::kind_of`] reads.
    pub acts: Vec<(u16, u32, f32)>,
    /// Base-view tokens (they come first).
    pub base_tokens: usize,
    /// Positions scored.
    pub scored_tokens: usize,
}

/// Run one dataset image through the model and SAE, scoring the positions `tokens` selects.
pub fn image_activations(
    session: &Session,
    dataset: &Dataset,
    item: &DatasetItem,
    tokens: TokenSelection,
) -> Result<ImageActs> {
    let prepared = session.image_prep().prepare(&dataset.path(item))?;
    activations_of(session, item, prepared, tokens)
}

/// [`image_activations`] of an image already decoded and preprocessed.
fn activations_of(
    session: &Session,
    item: &DatasetItem,
    prepared: PreprocessedImage,
    tokens: TokenSelection,
) -> Result<ImageActs> {
    let ids = session.prompt_ids(None, true)?;
    let run = session.run_prepared(ids, Some(prepared))?;
    let ImageCodes {
        layout,
        acts,
        scored_tokens,
    } = encode_tokens(&session.sae, &run, tokens)?;
    let base_tokens = layout.base_tokens();
    let record = ImageRecord::new(item.index, item.id.clone(), item.rel.clone(), layout);
    Ok(ImageActs {
        record,
        acts,
        base_tokens,
        scored_tokens,
    })
}

/// Cache `dataset` into `opts.out`, resuming an earlier run of the same manifest.
pub fn run_cache(
    session: &Session,
    dataset: &Dataset,
    opts: &CacheOptions,
) -> Result<CacheSummary> {
    opts.features.check(session.sae.num_latents())?;
    let manifest = manifest_for(session, dataset, opts)?;
    let opening = Instant::now();
    let store = Store::open_or_create(&opts.out, &manifest)?;
    let agg = Aggregator::resume(&store)?;
    let store_open_s = opening.elapsed().as_secs_f64();
    let resumed = agg.progress().images;
    let start_at = agg.progress().next_image;
    let todo: Vec<&DatasetItem> = dataset
        .items
        .iter()
        .filter(|it| opts.shard.is_none_or(|s| s.owns(it.index)) && it.index >= start_at)
        .collect();
    let bar = crate::util::progress::bar(opts.progress_bar, todo.len(), "cache", "images", true);
    let started = Instant::now();
    let paths: Vec<PathBuf> = todo.iter().map(|it| dataset.path(it)).collect();
    let prep = session.image_prep();
    let workers = prep_workers();
    // Three stages so the device never waits on the host: workers decode and preprocess images
    // ahead (in dataset order, `PREFETCH` each), this thread runs the model and SAE, and one
    // thread aggregates and commits.
    let (done, tokens, stages, commits) = std::thread::scope(|scope| -> Result<_> {
        let mut prepared = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = std::sync::mpsc::sync_channel(PREFETCH);
            prepared.push(rx);
            let (prep, paths) = (prep.clone(), &paths);
            scope.spawn(move || {
                for path in paths.iter().skip(w).step_by(workers) {
                    if tx.send(prep.prepare(path)).is_err() {
                        break;
                    }
                }
            });
        }
        let (to_agg, from_device) = std::sync::mpsc::sync_channel::<(usize, Result<ImageActs>)>(2);
        let todo_ref = &todo;
        let mut ingest = Ingest::start(
            scope,
            &store,
            agg,
            opts.commit_every,
            todo.len(),
            bar.is_none(),
        );
        let aggregation = scope.spawn(move || -> Result<_> {
            let (mut done, mut tokens) = (0usize, 0u64);
            for (n, result) in from_device {
                let item = todo_ref[n];
                match result {
                    Ok(a) => {
                        tokens += a.scored_tokens as u64;
                        ingest.add(a.record, &a.acts, a.base_tokens, a.scored_tokens)?;
                        done += 1;
                    }
                    Err(e) => ingest.skip(SkippedImage {
                        index: item.index,
                        path: item.rel.clone(),
                        reason: format!("{e:#}"),
                    })?,
                }
                match &bar {
                    Some(b) => b.inc(1),
                    None if n + 1 == todo_ref.len() => {
                        let rate = (n + 1) as f64 / started.elapsed().as_secs_f64().max(1e-9);
                        eprintln!(
                            "cache: {}/{} images, {rate:.2} images/s",
                            n + 1,
                            todo_ref.len()
                        );
                    }
                    None => {}
                }
            }
            let (ingested, commits) = ingest.finish()?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let stages = CacheStages {
                aggregate_s: ingested.aggregate_s,
                commit_prepare_s: ingested.commit_prepare_s,
                commit_write_s: ingested.commit_write_s,
                ..CacheStages::default()
            };
            Ok((done, tokens, stages, (ingested.bytes_written, commits)))
        });
        let (mut wait_s, mut device_s) = (0.0, 0.0);
        for (n, item) in todo.iter().enumerate() {
            let t = Instant::now();
            let image = prepared[n % workers]
                .recv()
                .context("an image-preparation worker stopped early")?;
            wait_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let result = image.and_then(|p| activations_of(session, item, p, opts.tokens));
            device_s += t.elapsed().as_secs_f64();
            if to_agg.send((n, result)).is_err() {
                break; // the aggregation failed; its error comes back from join
            }
        }
        drop(to_agg);
        // Unblock workers still waiting to hand over images nobody will take.
        drop(prepared);
        let (done, tokens, mut stages, commits) = aggregation
            .join()
            .map_err(|_| anyhow::anyhow!("the aggregation thread panicked"))??;
        stages.wait_for_images_s = wait_s;
        stages.device_s = device_s;
        Ok((done, tokens, stages, commits))
    })?;
    let skipped = store.skipped().collect::<Result<Vec<_>>>()?;
    let (bytes_written, commits) = commits;
    let points: Vec<(usize, f64)> = commits.iter().map(|c| (c.images, c.seconds)).collect();
    let rates_after_fill = edge_rates(&points, opts.top_n).map(|(first, last)| EdgeRates {
        first_10pct: first,
        last_10pct: last,
    });
    let seconds = started.elapsed().as_secs_f64();
    let store_bytes = crate::store::folder_bytes(&opts.out);
    Ok(CacheSummary {
        store: opts.out.display().to_string(),
        images_done: done,
        images_resumed: resumed,
        skipped,
        unlisted: dataset.unlisted.clone(),
        tokens,
        store_open_s,
        seconds,
        images_per_second: done as f64 / seconds.max(1e-9),
        tokens_per_second: tokens as f64 / seconds.max(1e-9),
        peak_rss_bytes: peak_rss_bytes(),
        store_bytes,
        store_bytes_per_image: store_bytes as f64 / (done as f64 + resumed as f64).max(1.0),
        bytes_written,
        bytes_written_per_image: bytes_written as f64 / (done as f64).max(1.0),
        rates_after_fill,
        stages,
        commits,
    })
}

pub use crate::util::mem::peak_rss_bytes;
