//! One image's activations grouped by feature with a counting sort, and the per-feature fold
//! over disjoint feature ranges, run on several threads for large images.

use std::ops::Range;

use anyhow::{Result, bail};
use half::f16;

use super::super::range_sample::offer_sample;
use super::super::{Example, FeatureFilter, FeatureStats, RankRule};
use super::{ACTIVE_MIN, offer};

/// Below this many kept activations per thread, spawning costs more than it saves.
const MIN_PER_THREAD: usize = 32_768;

/// At most this many threads fold one image.
const MAX_THREADS: usize = 16;

/// An image's kept activations as (token, value) grouped by feature, each group by token.
///
/// The buffers live across images, so a steady stream of images allocates nothing here.
pub(super) struct Buckets {
    /// Feature `f`'s group is `items[bounds[f]..bounds[f + 1]]`.
    bounds: Vec<u32>,
    items: Vec<(u16, f32)>,
    /// Most threads one fold may use.
    pub(super) threads: usize,
    /// Fewest kept activations per thread.
    pub(super) min_per_thread: usize,
}

/// What folding one image did to one feature, applied to the shared state afterwards.
pub(super) struct Folded {
    pub f: u32,
    pub max: f32,
    /// The image's example, when it entered the top-N list or the range sample.
    pub example: Option<Example>,
    /// The top-N list took the image, evicting the image given, if any.
    pub top: Option<Option<u32>>,
    /// The range sample took the image, evicting the image given, if any.
    pub sample: Option<Option<u32>>,
}

/// A feature's two example lists, side by side.
pub(super) struct Lists<'a> {
    pub top: &'a mut [Vec<(f32, u32)>],
    pub sample: &'a mut [Vec<(f32, u32)>],
}

/// The image-wide inputs of a fold.
pub(super) struct FoldParams<'a> {
    pub index: u32,
    pub base_tokens: usize,
    pub rank: RankRule,
    pub top_n: usize,
    pub range_sample: usize,
    /// The position slot of each image token (later tokens are text); empty for an image
    /// without geometry, whose tokens are the base view and then high-resolution tokens.
    pub slots: &'a [u8],
    /// Whether new statistics count positions by kind.
    pub by_position: bool,
}

impl FoldParams<'_> {
    /// The position slot of token `t` (see `store::positions`).
    fn slot(&self, t: u16) -> usize {
        match self.slots.get(usize::from(t)) {
            Some(&s) => usize::from(s),
            None if self.slots.is_empty() => usize::from(usize::from(t) >= self.base_tokens),
            None => 3,
        }
    }
}

impl Buckets {
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            bounds: Vec::new(),
            items: Vec::new(),
            threads: threads.min(MAX_THREADS),
            min_per_thread: MIN_PER_THREAD,
        }
    }

    /// Check `acts` of image `index` and group those above the activity threshold that pass
    /// `filter`; errors name the first bad activation in input order, or the lowest duplicated
    /// (feature, token).
    pub fn fill(
        &mut self,
        acts: &[(u16, u32, f32)],
        num_latents: usize,
        filter: &FeatureFilter,
        index: u32,
    ) -> Result<()> {
        if acts.len() > u32::MAX as usize {
            bail!("image {index}: {} activations are too many", acts.len());
        }
        let keep = |f: u32, v: f32| v > ACTIVE_MIN && filter.contains(f);
        let bounds = &mut self.bounds;
        bounds.clear();
        bounds.resize(num_latents + 1, 0);
        for &(token, f, v) in acts {
            if f as usize >= num_latents {
                bail!("image {index}: feature {f} is past the SAE's {num_latents} latents");
            }
            if !v.is_finite() {
                bail!("image {index}: feature {f} at token {token} has activation {v}");
            }
            if keep(f, v) {
                bounds[f as usize + 1] += 1;
            }
        }
        // bounds[f + 1] becomes f's start, and the scatter below advances it to f's end.
        let mut total = 0;
        for b in &mut bounds[1..] {
            let count = *b;
            *b = total;
            total += count;
        }
        self.items.clear();
        self.items.resize(total as usize, (0, 0.0));
        for &(token, f, v) in acts {
            if keep(f, v) {
                let slot = &mut bounds[f as usize + 1];
                self.items[*slot as usize] = (token, v);
                *slot += 1;
            }
        }
        // The scatter keeps input order, so token-ordered input needs no sorting here.
        for f in 0..num_latents {
            let group = &mut self.items[bounds[f] as usize..bounds[f + 1] as usize];
            if group.windows(2).all(|w| w[0].0 < w[1].0) {
                continue;
            }
            group.sort_unstable_by_key(|&(t, _)| t);
            if let Some(w) = group.windows(2).find(|w| w[0].0 == w[1].0) {
                bail!(
                    "image {index}: feature {f} appears twice at token {}",
                    w[0].0
                );
            }
        }
        Ok(())
    }

    /// Fold the grouped image into `lists` and `stats` (indexed by feature), returning what
    /// happened to each feature that fired, by feature.
    pub fn fold(
        &self,
        lists: Lists<'_>,
        stats: &mut [Option<FeatureStats>],
        p: &FoldParams<'_>,
    ) -> Vec<Folded> {
        let ranges = self.split();
        if ranges.len() <= 1 {
            return self.fold_range(0, lists, stats, p);
        }
        std::thread::scope(|scope| {
            let (mut tops, mut samples, mut stats) = (lists.top, lists.sample, stats);
            let mut jobs = Vec::with_capacity(ranges.len());
            for r in ranges {
                let (t, t_rest) = std::mem::take(&mut tops).split_at_mut(r.len());
                let (q, q_rest) = std::mem::take(&mut samples).split_at_mut(r.len());
                let (s, s_rest) = std::mem::take(&mut stats).split_at_mut(r.len());
                (tops, samples, stats) = (t_rest, q_rest, s_rest);
                let part = Lists { top: t, sample: q };
                jobs.push(scope.spawn(move || self.fold_range(r.start, part, s, p)));
            }
            let mut out = Vec::new();
            for job in jobs {
                match job.join() {
                    Ok(part) => out.extend(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            out
        })
    }

    /// Consecutive feature ranges covering every feature, with about equal activation counts.
    fn split(&self) -> Vec<Range<usize>> {
        let num_latents = self.bounds.len() - 1;
        let n = self
            .threads
            .min(self.items.len() / self.min_per_thread.max(1))
            .max(1);
        let mut cuts = vec![0];
        for i in 1..n {
            let target = (self.items.len() * i / n) as u32;
            cuts.push(
                self.bounds
                    .partition_point(|&b| b < target)
                    .min(num_latents),
            );
        }
        cuts.push(num_latents);
        cuts.windows(2).map(|w| w[0]..w[1]).collect()
    }

    /// Fold features `first..first + stats.len()`; `lists` and `stats` start at `first`.
    fn fold_range(
        &self,
        first: usize,
        lists: Lists<'_>,
        stats: &mut [Option<FeatureStats>],
        p: &FoldParams<'_>,
    ) -> Vec<Folded> {
        let mut out = Vec::new();
        let per_feature = lists.top.iter_mut().zip(lists.sample.iter_mut()).zip(stats);
        for (i, ((heap, sample), stat)) in per_feature.enumerate() {
            let f = first + i;
            let group = &self.items[self.bounds[f] as usize..self.bounds[f + 1] as usize];
            if group.is_empty() {
                continue;
            }
            let max = group.iter().fold(0f32, |m, &(_, v)| m.max(v));
            // Summed in token order so the score depends only on the image, not the input order.
            let base_sum: f64 = group
                .iter()
                .filter(|&&(t, _)| usize::from(t) < p.base_tokens)
                .map(|&(_, v)| f64::from(v))
                .sum();
            let mean_base = if p.base_tokens == 0 {
                0.0
            } else {
                (base_sum / p.base_tokens as f64) as f32
            };
            let score = match p.rank {
                RankRule::Max => max,
                RankRule::MeanBase => mean_base,
            };
            stat.get_or_insert_with(|| FeatureStats::new(p.by_position))
                .add_image(group.iter().map(|&(t, v)| (p.slot(t), v)));
            let top = offer(heap, p.top_n, score, p.index);
            let sample = offer_sample(sample, p.range_sample, f as u32, score, p.index);
            let example = (top.is_some() || sample.is_some()).then(|| Example {
                image: p.index,
                score,
                max,
                mean_base,
                tokens: group.iter().map(|&(t, v)| (t, f16::from_f32(v))).collect(),
            });
            out.push(Folded {
                f: f as u32,
                max,
                example,
                top,
                sample,
            });
        }
        out
    }
}
