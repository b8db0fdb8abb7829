//! `glint bench store`: synthetic SAE codes through the cache job's aggregation and commit path
//! ([`super::ingest`]), without a model, to measure the store alone.
//!
//! Codes are seeded: every token gets `k` distinct features with exponential activations. The
//! `uniform` profile draws features uniformly, like a random SAE (every feature fires on every
//! image of a few thousand tokens); `zipf` draws feature rank `r` with probability ∝
//! `r^-`[`ZIPF_EXPONENT`], like a trained one: a few features fire on nearly every token, tens
//! of thousands on an image, most rarely.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Result, bail};
use serde::Serialize;

use super::examples::{decode_counts, num_blocks};
use super::ingest::{Ingest, IngestStages, edge_rates};
use super::records::{KEY_COUNTS, PREFIX_EXAMPLES, PREFIX_IMAGE};
use super::state_log::Kind;
use super::{Aggregator, COMPACT_SLACK, ImageRecord, Manifest, Store};
use crate::util::rng::SeededRng;
use crate::util::scratch::ScratchDir;

/// Exponent of the `zipf` profile's feature frequencies.
pub const ZIPF_EXPONENT: f64 = 1.2;

/// How often each feature fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Every feature equally likely on every token.
    Uniform,
    /// Feature rank `r` drawn with probability ∝ `r^-ZIPF_EXPONENT`.
    Zipf,
}

impl FromStr for Profile {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "uniform" => Ok(Profile::Uniform),
            "zipf" => Ok(Profile::Zipf),
            _ => bail!("unknown density profile {s:?}: use \"uniform\" or \"zipf\""),
        }
    }
}

/// Settings of one store benchmark.
#[derive(Debug, Clone)]
pub struct StoreBenchOptions {
    /// SAE latents.
    pub latents: usize,
    /// Features per token.
    pub k: usize,
    /// Scored tokens per image (the first 576 form the base view).
    pub tokens: usize,
    /// Images fed.
    pub images: usize,
    /// Examples kept per feature.
    pub top_n: usize,
    /// Images each feature keeps as its range sample.
    pub range_sample: usize,
    /// Feature frequencies.
    pub profile: Profile,
    /// Seed of the codes.
    pub seed: u64,
    /// Images per commit.
    pub commit_every: usize,
    /// Store folder (new or empty); a temporary folder, deleted afterwards, when `None`.
    pub out: Option<PathBuf>,
}

/// Base-view tokens of a 672x672 LLaVA-NeXT image.
const BASE_TOKENS: usize = 576;

/// Rates over part of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Rates {
    /// Images per second.
    pub images_per_second: f64,
    /// SAE codes (token × k) per second.
    pub codes_per_second: f64,
}

/// What the store holds at the end, by record kind, and its bound.
#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    /// Bytes of the store folder on disk.
    pub store_bytes: u64,
    /// `store_bytes` over the images.
    pub store_bytes_per_image: f64,
    /// Key and value bytes of statistics records.
    pub stats_bytes: u64,
    /// Key and value bytes of top lists.
    pub list_bytes: u64,
    /// Key and value bytes of range samples.
    pub range_bytes: u64,
    /// Key and value bytes of example records (token maps).
    pub example_bytes: u64,
    /// Key and value bytes of image records (the only part that grows with the dataset).
    pub image_bytes: u64,
    /// Examples in top lists or range samples at the end (each (feature, image) once).
    pub listed_examples: u64,
    /// Examples stored at the end (listed plus evicted not yet compacted away).
    pub stored_examples: u64,
    /// Most examples stored at any commit (listed plus evicted not yet compacted away).
    pub most_stored_examples: u64,
    /// The bound on stored examples, while running and once complete: twice the listed ones
    /// plus the slack of every block.
    pub stored_examples_bound: u64,
    /// Store bytes on disk after each tenth of the images, as (images, bytes).
    pub growth: Vec<(usize, u64)>,
}

/// The result of `glint bench store`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreBenchReport {
    /// Density profile.
    pub profile: Profile,
    /// SAE latents.
    pub latents: usize,
    /// Features per token.
    pub k: usize,
    /// Tokens per image.
    pub tokens: usize,
    /// Images fed.
    pub images: usize,
    /// Examples per feature.
    pub top_n: usize,
    /// Range sample per feature.
    pub range_sample: usize,
    /// Images per commit.
    pub commit_every: usize,
    /// Wall seconds from the first code to the finished store.
    pub seconds: f64,
    /// Over the whole run, finishing included.
    pub overall: Rates,
    /// Over the first tenth of the images.
    pub first_10pct: Option<Rates>,
    /// Over the last tenth of the images.
    pub last_10pct: Option<Rates>,
    /// Key and value bytes written to the store.
    pub bytes_written: u64,
    /// `bytes_written` over the images.
    pub bytes_written_per_image: f64,
    /// The store at the end.
    pub disk: DiskReport,
    /// Peak resident memory of the process in bytes (Linux).
    pub peak_rss_bytes: Option<u64>,
    /// The aggregator's bound on its own memory.
    pub aggregator_memory_bound_bytes: u64,
    /// Seconds generating codes (its own thread, standing in for the device).
    pub generate_s: f64,
    /// Store stages.
    pub stages: IngestStages,
}

/// Draws features for one profile.
struct Sampler {
    latents: usize,
    /// Cumulative probabilities of ranks (zipf only).
    cdf: Vec<f64>,
    /// Feature of each rank, so frequent features spread over the id range.
    feature_of_rank: Vec<u32>,
}

impl Sampler {
    fn new(profile: Profile, latents: usize, seed: u64) -> Self {
        let mut cdf = Vec::new();
        if profile == Profile::Zipf {
            let mut acc = 0.0;
            cdf = (1..=latents)
                .map(|r| {
                    acc += (r as f64).powf(-ZIPF_EXPONENT);
                    acc
                })
                .collect();
            cdf.iter_mut().for_each(|c| *c /= acc);
        }
        let mut feature_of_rank: Vec<u32> = (0..latents as u32).collect();
        SeededRng::for_name(seed, "ranks").shuffle(&mut feature_of_rank);
        Self {
            latents,
            cdf,
            feature_of_rank,
        }
    }

    fn draw(&self, rng: &mut SeededRng) -> u32 {
        let rank = if self.cdf.is_empty() {
            rng.below(self.latents as u64) as usize
        } else {
            let u = rng.uniform();
            self.cdf.partition_point(|&c| c < u).min(self.latents - 1)
        };
        self.feature_of_rank[rank]
    }

    /// Image `index`'s codes as (token, feature, value), `k` distinct features per token.
    fn image(
        &self,
        seed: u64,
        index: usize,
        tokens: usize,
        k: usize,
        used: &mut [u32],
    ) -> Vec<(u16, u32, f32)> {
        let mut rng = SeededRng::for_name(seed, &format!("image{index}"));
        let mut acts = Vec::with_capacity(tokens * k);
        for t in 0..tokens {
            // `used[f] == t + 1` marks f as drawn for this token (the stamp saves clearing).
            let stamp = (index * tokens + t) as u32 + 1;
            let mut got = 0;
            while got < k {
                let f = self.draw(&mut rng);
                if used[f as usize] != stamp {
                    used[f as usize] = stamp;
                    let v = 0.01 - rng.uniform().max(f64::MIN_POSITIVE).ln();
                    acts.push((t as u16, f, v as f32));
                    got += 1;
                }
            }
        }
        acts
    }
}

/// A synthetic image record.
fn record(index: usize, tokens: usize) -> ImageRecord {
    ImageRecord {
        index: index as u32,
        id: format!("synthetic-{index:06}"),
        path: format!("synthetic/{index:06}.png"),
        width: 672,
        height: 672,
        layout: None,
        n_tokens: tokens as u32,
        top_features: Vec::new(),
    }
}

fn check(o: &StoreBenchOptions) -> Result<()> {
    if o.latents == 0 || o.latents > u32::MAX as usize {
        bail!("--latents must be between 1 and {}", u32::MAX);
    }
    if o.k == 0 || o.k > o.latents {
        bail!("--k must be between 1 and --latents ({})", o.latents);
    }
    if o.tokens == 0 || o.tokens > usize::from(u16::MAX) {
        bail!("--tokens must be between 1 and {}", u16::MAX);
    }
    if o.images == 0 || (o.images as u64) * (o.tokens as u64) >= u64::from(u32::MAX) {
        bail!("--images must be at least 1 and images × tokens below 2^32");
    }
    if o.top_n == 0 {
        bail!("--top-n must be at least 1");
    }
    Ok(())
}

/// Run the benchmark.
pub fn run_store_bench(o: &StoreBenchOptions) -> Result<StoreBenchReport> {
    check(o)?;
    // Deleted when the benchmark ends, however it ends.
    let scratch = ScratchDir::new("bench-store");
    let dir = o
        .out
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let sae_id = format!("synthetic:{:?}:{}:{}", o.profile, o.latents, o.k);
    let manifest = Manifest {
        dataset_fingerprint: format!("{}", o.seed),
        range_sample: o.range_sample,
        ..Manifest::synthetic(sae_id, o.latents, o.k, o.top_n)
    };
    let store = Store::create(&dir, &manifest)?;
    let agg = Aggregator::from_manifest(&manifest)?;
    let sampler = Sampler::new(o.profile, o.latents, o.seed);
    let started = Instant::now();
    let (generate_s, done, stages, growth, most_stored) =
        std::thread::scope(|scope| -> Result<_> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(u16, u32, f32)>>(2);
            let sampler = &sampler;
            let producer = scope.spawn(move || {
                let mut used = vec![0u32; o.latents];
                let mut busy = 0.0;
                for i in 0..o.images {
                    let t = Instant::now();
                    let acts = sampler.image(o.seed, i, o.tokens, o.k, &mut used);
                    busy += t.elapsed().as_secs_f64();
                    if tx.send(acts).is_err() {
                        break;
                    }
                }
                busy
            });
            let mut ingest = Ingest::start(scope, &store, agg, o.commit_every, o.images, false);
            let mut done = Vec::with_capacity(o.images);
            let mut growth = Vec::new();
            let mut most_stored = 0u64;
            for (i, acts) in rx.into_iter().enumerate() {
                ingest.add(record(i, o.tokens), &acts, BASE_TOKENS, o.tokens)?;
                done.push((i + 1, started.elapsed().as_secs_f64()));
                if (i + 1) % (o.images / 10).max(1) == 0 {
                    growth.push((i + 1, super::folder_bytes(&dir)));
                }
                if (i + 1) % o.commit_every.max(1) == 0 {
                    most_stored = most_stored.max(stored_examples(&store)?);
                }
            }
            let (stages, _) = ingest.finish()?;
            let generate_s = producer
                .join()
                .map_err(|_| anyhow::anyhow!("the code generator panicked"))?;
            Ok((generate_s, done, stages, growth, most_stored))
        })?;
    let seconds = started.elapsed().as_secs_f64();
    let codes = (o.tokens * o.k) as f64;
    let rates = |images_per_second: f64| Rates {
        images_per_second,
        codes_per_second: images_per_second * codes,
    };
    let edges = edge_rates(&done, 0);
    let disk = disk_report(&store, o, growth, most_stored)?;
    Ok(StoreBenchReport {
        profile: o.profile,
        latents: o.latents,
        k: o.k,
        tokens: o.tokens,
        images: o.images,
        top_n: o.top_n,
        range_sample: o.range_sample,
        commit_every: o.commit_every,
        seconds,
        overall: rates(o.images as f64 / seconds.max(1e-9)),
        first_10pct: edges.map(|e| rates(e.0)),
        last_10pct: edges.map(|e| rates(e.1)),
        bytes_written: stages.bytes_written,
        bytes_written_per_image: stages.bytes_written as f64 / o.images as f64,
        disk,
        peak_rss_bytes: crate::util::mem::peak_rss_bytes(),
        aggregator_memory_bound_bytes: Aggregator::memory_bound(o.latents, o.top_n, o.range_sample),
        generate_s,
        stages,
    })
}

/// Examples the store's `c` record counts.
fn stored_examples(store: &Store) -> Result<u64> {
    let blocks = num_blocks(store.manifest().num_latents);
    Ok(match store.raw(KEY_COUNTS)? {
        Some(b) => decode_counts(&b, blocks)?
            .iter()
            .map(|&c| u64::from(c))
            .sum(),
        None => 0,
    })
}

/// Examples in the top lists and range samples of a store, each (feature, image) once.
fn listed_examples(store: &Store) -> Result<u64> {
    let mut listed = 0;
    for f in 0..store.manifest().num_latents as u32 {
        let mut images: Vec<u32> = store.top_list(f)?.into_iter().map(|e| e.1).collect();
        images.extend(store.range_sample(f)?.into_iter().map(|e| e.1));
        images.sort_unstable();
        images.dedup();
        listed += images.len();
    }
    Ok(listed as u64)
}

/// Bytes of the live state-log records of `kind` (key as in the database, and value).
fn state_bytes(store: &Store, kind: Kind) -> Result<u64> {
    Ok(store
        .state()?
        .of(kind)
        .map(|(k, f, v)| (k.key(f).len() + v.len()) as u64)
        .sum())
}

/// Key and value bytes under `prefix`.
fn prefix_bytes(store: &Store, prefix: &[u8]) -> Result<u64> {
    store.scan_raw(prefix).try_fold(0, |sum, kv| {
        let (k, v) = kv?;
        Ok(sum + (k.len() + v.len()) as u64)
    })
}

fn disk_report(
    store: &Store,
    o: &StoreBenchOptions,
    growth: Vec<(usize, u64)>,
    most_stored: u64,
) -> Result<DiskReport> {
    let listed = listed_examples(store)?;
    let stored = stored_examples(store)?;
    let store_bytes = super::folder_bytes(store.dir());
    let blocks = num_blocks(o.latents) as u64;
    Ok(DiskReport {
        store_bytes,
        store_bytes_per_image: store_bytes as f64 / o.images as f64,
        stats_bytes: state_bytes(store, Kind::Stats)?,
        list_bytes: state_bytes(store, Kind::Top)?,
        range_bytes: state_bytes(store, Kind::Range)?,
        example_bytes: prefix_bytes(store, PREFIX_EXAMPLES)?,
        image_bytes: prefix_bytes(store, PREFIX_IMAGE)?,
        listed_examples: listed,
        stored_examples: stored,
        most_stored_examples: most_stored.max(stored),
        stored_examples_bound: 2 * listed + blocks * u64::from(COMPACT_SLACK),
        growth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(profile: Profile) -> StoreBenchOptions {
        StoreBenchOptions {
            latents: 512,
            k: 8,
            tokens: 40,
            images: 60,
            top_n: 3,
            range_sample: 2,
            profile,
            seed: 1,
            commit_every: 7,
            out: None,
        }
    }

    #[test]
    fn codes_are_seeded_distinct_per_token_and_skewed_for_zipf() {
        for profile in [Profile::Uniform, Profile::Zipf] {
            let s = Sampler::new(profile, 512, 3);
            let mut used = vec![0; 512];
            let a = s.image(3, 0, 40, 8, &mut used);
            assert_eq!(a, s.image(3, 0, 40, 8, &mut vec![0; 512]));
            assert_eq!(a.len(), 40 * 8);
            for t in 0..40u16 {
                let mut fs: Vec<u32> = a.iter().filter(|x| x.0 == t).map(|x| x.1).collect();
                fs.sort_unstable();
                fs.dedup();
                assert_eq!(fs.len(), 8);
            }
            assert!(a.iter().all(|x| x.2 > 0.01 && x.2.is_finite()));
            let mut distinct: Vec<u32> = a.iter().map(|x| x.1).collect();
            distinct.sort_unstable();
            distinct.dedup();
            // 320 draws over 512 features: uniform reaches most, zipf concentrates on few.
            match profile {
                Profile::Uniform => assert!(distinct.len() > 200, "{}", distinct.len()),
                Profile::Zipf => assert!(distinct.len() < 150, "{}", distinct.len()),
            }
        }
    }

    #[test]
    fn report_counts_the_store_and_its_bound() {
        let r = run_store_bench(&opts(Profile::Uniform)).unwrap();
        assert_eq!(r.images, 60);
        // Commits grow while a write is under way, so there may be far fewer than 60 / 7 of
        // them before the finish.
        assert!(r.bytes_written > 0 && (1..=9).contains(&r.stages.commits));
        let d = &r.disk;
        assert!(d.listed_examples > 0 && d.listed_examples <= 512 * (3 + 2));
        assert!(d.range_bytes > 0 && d.list_bytes > 0);
        assert!(d.stored_examples >= d.listed_examples);
        assert!(d.most_stored_examples >= d.stored_examples);
        assert!(d.most_stored_examples <= d.stored_examples_bound);
        assert_eq!(d.growth.len(), 10);
        assert!(d.example_bytes > 0 && d.image_bytes > 0);
        assert!(r.first_10pct.is_some() && r.last_10pct.is_some());
        let bad = StoreBenchOptions {
            k: 600,
            ..opts(Profile::Zipf)
        };
        assert!(
            run_store_bench(&bad)
                .unwrap_err()
                .to_string()
                .contains("--k")
        );
        assert!("pareto".parse::<Profile>().is_err());
    }
}
