//! Examples across a feature's range: a uniform sample of the images where it fired, split
//! into activation bands when read.
//!
//! Each feature keeps the `n` firing images whose [`sample_key`] of (feature, image) is
//! smallest (bottom-`n` sampling by hash). The key is a fixed function of the pair, so the
//! sample does not depend on the order images arrive in: a resumed run and a merge of disjoint
//! shards (pool the shards' samples, keep the `n` smallest keys) keep exactly the sample of one
//! uninterrupted run, in bounded memory (8 B an entry). As the keys are independent of the
//! activations, the sample is uniform over the firing images, and the quantiles of its scores
//! estimate the feature's; [`bands`] splits it at them, so each band holds about `n / bands`
//! examples.

use std::cmp::Ordering;

use anyhow::{Result, bail};
use serde::Serialize;

use super::examples::decode_pairs;
use super::rank_order;

/// Images each feature keeps in its range sample unless the cache run says otherwise.
pub const DEFAULT_RANGE_SAMPLE: usize = 40;

/// Bands a range sample is split into when read (deciles).
pub const RANGE_BANDS: usize = 10;

/// The sampling key of feature `f` on `image`: a fixed 64-bit mix (splitmix64) of the pair.
pub fn sample_key(f: u32, image: u32) -> u64 {
    let mut z = (u64::from(f) << 32 | u64::from(image)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The order of a sample of feature `f`: by key, then image (keys of distinct images of one
/// feature differ, as the mix is a bijection; the image only makes the order total).
fn sample_order(f: u32, a: u32, b: u32) -> Ordering {
    sample_key(f, a).cmp(&sample_key(f, b)).then(a.cmp(&b))
}

/// Offer (score, image) to feature `f`'s sample of at most `n`: `None` if rejected, else
/// `Some(evicted image)`.
pub(crate) fn offer_sample(
    sample: &mut Vec<(f32, u32)>,
    n: usize,
    f: u32,
    score: f32,
    image: u32,
) -> Option<Option<u32>> {
    if n == 0 {
        return None;
    }
    if sample.capacity() == 0 {
        sample.reserve_exact(n + 1);
    }
    if sample.len() >= n
        && sample
            .last()
            .is_some_and(|&(_, last)| sample_order(f, image, last).is_ge())
    {
        return None;
    }
    let at = sample.partition_point(|&(_, i)| sample_order(f, i, image).is_lt());
    sample.insert(at, (score, image));
    Some(if sample.len() > n {
        sample.pop().map(|x| x.1)
    } else {
        None
    })
}

/// Pool samples of feature `f` from disjoint shards into the sample of their union; each
/// entry carries a tag (such as the shard it came from) along.
pub(crate) fn merge_samples<T>(
    f: u32,
    n: usize,
    parts: impl IntoIterator<Item = ((f32, u32), T)>,
) -> Vec<((f32, u32), T)> {
    let mut pool: Vec<((f32, u32), T)> = parts.into_iter().collect();
    pool.sort_by(|a, b| sample_order(f, a.0.1, b.0.1));
    pool.truncate(n);
    pool
}

/// Decode feature `f`'s range-sample record, checking it is in strict key order.
pub(crate) fn decode_sample(f: u32, bytes: &[u8]) -> Result<Vec<(f32, u32)>> {
    let sample = decode_pairs(bytes)?;
    check_sample(f, &sample)?;
    Ok(sample)
}

/// Check a sample of feature `f` is in strict key order.
fn check_sample(f: u32, sample: &[(f32, u32)]) -> Result<()> {
    if let Some(w) = sample
        .windows(2)
        .find(|w| !sample_order(f, w[0].1, w[1].1).is_lt())
    {
        bail!(
            "range sample has image {} after image {}, out of key order",
            w[1].1,
            w[0].1
        );
    }
    Ok(())
}

/// One activation band of a feature's range sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeBand {
    /// Band number from 0 (weakest); with [`RANGE_BANDS`] bands, the decile.
    pub band: usize,
    /// Lowest score in the band.
    pub low: f32,
    /// Highest score in the band.
    pub high: f32,
    /// The band's examples, strongest first.
    pub examples: Vec<BandExample>,
}

/// One example of a band: the image and its score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BandExample {
    /// Dataset image index.
    pub image: u32,
    /// The example's score (the store's ranking rule).
    pub score: f32,
}

/// Split a range sample into at most `count` bands of (nearly) equal size by score, weakest
/// band first; a sample smaller than `count` gives one band per example.
pub fn bands(sample: &[(f32, u32)], count: usize) -> Vec<RangeBand> {
    let mut ranked = sample.to_vec();
    ranked.sort_by(|a, b| rank_order(*b, *a));
    let count = count.min(ranked.len());
    (0..count)
        .map(|b| {
            let slice = &ranked[b * ranked.len() / count..(b + 1) * ranked.len() / count];
            let examples = slice
                .iter()
                .rev()
                .map(|&(score, image)| BandExample { image, score })
                .collect();
            RangeBand {
                band: b,
                low: slice[0].0,
                high: slice[slice.len() - 1].0,
                examples,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_of(f: u32, n: usize, images: impl IntoIterator<Item = u32>) -> Vec<(f32, u32)> {
        let mut s = Vec::new();
        for i in images {
            offer_sample(&mut s, n, f, i as f32 * 0.5, i);
        }
        s
    }

    #[test]
    fn the_sample_is_the_smallest_keys_whatever_the_order_and_merges_exactly() {
        let f = 7;
        let forward = sample_of(f, 12, 0..500);
        let backward = sample_of(f, 12, (0..500).rev());
        assert_eq!(forward, backward);
        let mut brute: Vec<u32> = (0..500).collect();
        brute.sort_by_key(|&i| sample_key(f, i));
        let want: Vec<u32> = brute[..12].to_vec();
        assert_eq!(forward.iter().map(|x| x.1).collect::<Vec<_>>(), want);
        check_sample(f, &forward).unwrap();
        let shards: Vec<Vec<(f32, u32)>> = (0..3)
            .map(|s| sample_of(f, 12, (0..500).filter(move |i| i % 3 == s)))
            .collect();
        let merged = merge_samples(f, 12, shards.into_iter().flatten().map(|e| (e, ())));
        assert_eq!(merged.into_iter().map(|e| e.0).collect::<Vec<_>>(), forward);
        // Another feature samples other images.
        assert_ne!(sample_of(8, 12, 0..500), forward);
        assert!(check_sample(f, &[forward[1], forward[0]]).is_err());
        assert_eq!(offer_sample(&mut Vec::new(), 0, f, 1.0, 3), None);
    }

    #[test]
    fn the_sample_is_spread_over_the_range() {
        // Scores rise with the image index, so a uniform sample covers every decile.
        let s = sample_of(3, 40, 0..10_000);
        let bands = bands(&s, RANGE_BANDS);
        assert_eq!(bands.len(), 10);
        assert!(bands.iter().all(|b| b.examples.len() == 4));
        for w in bands.windows(2) {
            assert!(w[0].high <= w[1].low);
        }
        let (low, high) = (bands[0].low, bands[9].high);
        assert!(low < 0.1 * 5000.0 && high > 0.9 * 5000.0, "{low} {high}");
        let b = &bands[4];
        assert!(b.examples.windows(2).all(|w| w[0].score >= w[1].score));
        assert_eq!(b.high, b.examples[0].score);
    }

    #[test]
    fn small_samples_give_one_band_per_example() {
        let s = vec![(2.0, 1), (1.0, 2), (3.0, 0)];
        let b = bands(&s, RANGE_BANDS);
        assert_eq!(b.len(), 3);
        let images: Vec<Vec<u32>> = b
            .iter()
            .map(|b| b.examples.iter().map(|e| e.image).collect())
            .collect();
        assert_eq!(images, vec![vec![2], vec![1], vec![0]]);
        assert!(bands(&[], RANGE_BANDS).is_empty());
    }
}
