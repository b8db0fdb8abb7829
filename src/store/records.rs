//! Records kept in the store, their keys and their compact little-endian encodings.

use crate::model::anyres::ImageLayout;
use std::cmp::Ordering;

use anyhow::{Result, bail};
use half::f16;
use serde::{Deserialize, Serialize};

use super::positions::PositionTallies;

/// Log-spaced histogram bins between [`HIST_MIN`] and [`HIST_MAX`] (8 a decade).
pub const HIST_BINS: usize = 48;
/// Lower edge of the first log-spaced bin.
pub const HIST_MIN: f64 = 1e-3;
/// Upper edge (exclusive) of the last log-spaced bin.
pub const HIST_MAX: f64 = 1e3;
/// Histogram length: an underflow bin, [`HIST_BINS`] log-spaced bins, an overflow bin.
pub const HIST_LEN: usize = HIST_BINS + 2;

/// Sums are kept exactly as integers in units of 2^-40: every f32 above 1e-5 (> 2^-17) is an
/// integer multiple of 2^-40, so sums are exact and independent of the order of addition, which
/// is what lets resumed and merged runs equal an uninterrupted one bit for bit.
const SUM_SCALE: f64 = (1u64 << 40) as f64;

/// Activation `v` (above 1e-5 and finite) in the exact fixed point of the sums.
pub(crate) fn units_of(v: f32) -> u128 {
    (f64::from(v) * SUM_SCALE) as u128
}

/// A fixed-point sum as a number.
pub(crate) fn sum_of_units(units: u128) -> f64 {
    units as f64 / SUM_SCALE
}

/// Histogram bin of activation `v`: 0 below [`HIST_MIN`], `HIST_LEN - 1` at or above [`HIST_MAX`].
pub fn hist_bin(v: f32) -> usize {
    let v = f64::from(v);
    if v.is_nan() || v < HIST_MIN {
        return 0;
    }
    if v >= HIST_MAX {
        return HIST_LEN - 1;
    }
    let per_decade = HIST_BINS as f64 / (HIST_MAX / HIST_MIN).log10();
    let b = ((v / HIST_MIN).log10() * per_decade).floor() as usize;
    1 + b.min(HIST_BINS - 1)
}

/// The `HIST_BINS + 1` edges of the log-spaced bins, from [`HIST_MIN`] to [`HIST_MAX`].
pub fn hist_edges() -> Vec<f64> {
    let decades = (HIST_MAX / HIST_MIN).log10();
    (0..=HIST_BINS)
        .map(|i| HIST_MIN * 10f64.powf(decades * i as f64 / HIST_BINS as f64))
        .collect()
}

/// Order of a top-N list: higher score first, then lower image index. `Less` ranks higher.
pub fn rank_order(a: (f32, u32), b: (f32, u32)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Per-feature statistics over every token the store has seen; shards merge by addition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    /// Tokens on which the feature was active (> 1e-5 after top-k).
    pub fired_tokens: u64,
    /// Images with at least one such token.
    pub fired_images: u64,
    /// Sum of the activations (derived from `sum_units`).
    pub sum: f64,
    /// The exact sum in units of 2^-40.
    pub sum_units: u128,
    /// Largest activation.
    pub max: f32,
    /// Counts per bin, [`HIST_LEN`] long (see [`hist_bin`]).
    pub hist: Vec<u32>,
    /// Its firing per kind of position; `None` in stores made before it was counted.
    pub by_position: Option<PositionTallies>,
}

impl Default for FeatureStats {
    fn default() -> Self {
        Self {
            fired_tokens: 0,
            fired_images: 0,
            sum: 0.0,
            sum_units: 0,
            max: 0.0,
            hist: vec![0; HIST_LEN],
            by_position: Some(PositionTallies::default()),
        }
    }
}

impl FeatureStats {
    /// Empty statistics that count positions by kind only with `by_position`.
    pub fn new(by_position: bool) -> Self {
        Self {
            by_position: by_position.then(PositionTallies::default),
            ..Self::default()
        }
    }

    /// Count one image's activations of this feature as (position slot, value), the slot as
    /// [`super::positions::position_slot`] gives it (values all > 1e-5 and finite).
    pub fn add_image(&mut self, values: impl IntoIterator<Item = (usize, f32)>) {
        let mut any = false;
        for (slot, v) in values {
            any = true;
            self.fired_tokens += 1;
            // Exact: v is a multiple of 2^-40 (see SUM_SCALE); saturate rather than wrap.
            self.sum_units = self.sum_units.saturating_add(units_of(v));
            self.max = self.max.max(v);
            self.hist[hist_bin(v)] += 1;
            if let Some(p) = &mut self.by_position {
                p.add(slot, v);
            }
        }
        if any {
            self.fired_images += 1;
            self.sum = sum_of_units(self.sum_units);
        }
    }

    /// Add another shard's statistics of the same feature (position tallies only where both
    /// have them).
    pub fn merge(&mut self, other: &FeatureStats) {
        self.fired_tokens += other.fired_tokens;
        self.fired_images += other.fired_images;
        self.sum_units = self.sum_units.saturating_add(other.sum_units);
        self.sum = sum_of_units(self.sum_units);
        self.max = self.max.max(other.max);
        for (a, b) in self.hist.iter_mut().zip(&other.hist) {
            *a += b;
        }
        self.by_position = match (self.by_position, &other.by_position) {
            (Some(mut a), Some(b)) => {
                a.merge(b);
                Some(a)
            }
            _ => None,
        };
    }

    /// Fraction of all scored tokens on which the feature fired.
    pub fn density(&self, total_tokens: u64) -> f64 {
        if total_tokens == 0 {
            0.0
        } else {
            self.fired_tokens as f64 / total_tokens as f64
        }
    }

    /// Mean activation over the tokens where the feature fired.
    pub fn mean_when_fired(&self) -> f64 {
        if self.fired_tokens == 0 {
            0.0
        } else {
            self.sum / self.fired_tokens as f64
        }
    }

    /// Bytes of an encoded statistics record without position tallies (older stores).
    const BASE_LEN: usize = 36 + 4 * HIST_LEN;

    /// Bytes of an encoded statistics record with position tallies.
    pub(crate) const ENCODED_LEN: usize = Self::BASE_LEN + PositionTallies::ENCODED_LEN;

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::ENCODED_LEN);
        out.extend(self.fired_tokens.to_le_bytes());
        out.extend(self.fired_images.to_le_bytes());
        out.extend(self.sum_units.to_le_bytes());
        out.extend(self.max.to_le_bytes());
        for h in &self.hist {
            out.extend(h.to_le_bytes());
        }
        if let Some(p) = &self.by_position {
            p.encode_into(&mut out);
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let by_position = match bytes.len() {
            Self::BASE_LEN => None,
            Self::ENCODED_LEN => Some(PositionTallies::decode(&bytes[Self::BASE_LEN..])?),
            n => bail!(
                "stats record is {n} bytes, expected {} (or {} from an older store)",
                Self::ENCODED_LEN,
                Self::BASE_LEN
            ),
        };
        let bytes = &bytes[..Self::BASE_LEN];
        let mut r = Reader(bytes);
        let fired_tokens = r.u64()?;
        let fired_images = r.u64()?;
        let sum_units = u128::from_le_bytes(r.take::<16>()?);
        let max = r.f32()?;
        let hist = (0..HIST_LEN).map(|_| r.u32()).collect::<Result<_>>()?;
        Ok(Self {
            fired_tokens,
            fired_images,
            sum: sum_of_units(sum_units),
            sum_units,
            max,
            hist,
            by_position,
        })
    }
}

/// One top example of a feature: an image, its scores, and the feature's sparse map over its tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Global dataset index of the image.
    pub image: u32,
    /// Ranking score under the store's [`super::RankRule`].
    pub score: f32,
    /// Largest activation over the image's tokens.
    pub max: f32,
    /// Mean over the base-view tokens, zeros included.
    pub mean_base: f32,
    /// (token index within the image tokens, newlines counted; activation), by token index.
    /// Serialised by serde as (index, f32) pairs.
    #[serde(with = "tokens_as_f32")]
    pub tokens: Vec<(u16, f16)>,
}

/// Serde for token maps as (index, f32) pairs, so JSON readers see plain numbers.
mod tokens_as_f32 {
    use half::f16;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(tokens: &[(u16, f16)], s: S) -> Result<S::Ok, S::Error> {
        let wide: Vec<(u16, f32)> = tokens.iter().map(|&(t, v)| (t, v.to_f32())).collect();
        wide.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u16, f16)>, D::Error> {
        let wide = Vec::<(u16, f32)>::deserialize(d)?;
        Ok(wide
            .into_iter()
            .map(|(t, v)| (t, f16::from_f32(v)))
            .collect())
    }
}

impl Example {
    /// Bytes of the encoding of an example with `n` tokens.
    pub(crate) fn encoded_len(n: usize) -> usize {
        20 + 4 * n
    }

    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::encoded_len(self.tokens.len()));
        self.encode_into(&mut out);
        out
    }

    /// Append the encoding to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend(self.image.to_le_bytes());
        out.extend(self.score.to_le_bytes());
        out.extend(self.max.to_le_bytes());
        out.extend(self.mean_base.to_le_bytes());
        out.extend((self.tokens.len() as u32).to_le_bytes());
        for (t, v) in &self.tokens {
            out.extend(t.to_le_bytes());
            out.extend(v.to_bits().to_le_bytes());
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader(bytes);
        let image = r.u32()?;
        let score = r.f32()?;
        let max = r.f32()?;
        let mean_base = r.f32()?;
        let n = r.u32()? as usize;
        if r.0.len() != 4 * n {
            bail!(
                "example record holds {} token bytes, expected {}",
                r.0.len(),
                4 * n
            );
        }
        let tokens = (0..n)
            .map(|_| Ok((r.u16()?, f16::from_bits(r.u16()?))))
            .collect::<Result<_>>()?;
        Ok(Self {
            image,
            score,
            max,
            mean_base,
            tokens,
        })
    }
}

/// One image of the dataset as seen by the cache job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Global dataset index (the row index, as in the original system).
    pub index: u32,
    /// Dataset id of the image (for de-duplication), or its file name.
    pub id: String,
    /// Path of the image relative to the dataset root.
    pub path: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The image's token geometry (absent only for synthetic benchmark images).
    pub layout: Option<ImageLayout>,
    /// Image tokens, newlines included.
    pub n_tokens: u32,
    /// The image's strongest stored features as (feature, max activation), strongest first.
    pub top_features: Vec<(u32, f32)>,
}

impl ImageRecord {
    /// The record of dataset image `index` with its geometry; sizes come from the layout.
    pub fn new(index: u32, id: String, path: String, layout: ImageLayout) -> Self {
        let (height, width) = layout.original;
        Self {
            index,
            id,
            path,
            width,
            height,
            n_tokens: layout.num_image_tokens() as u32,
            layout: Some(layout),
            top_features: Vec::new(),
        }
    }

    /// The image's token geometry, or an error naming the image when the record has none.
    pub fn layout(&self) -> anyhow::Result<&ImageLayout> {
        self.layout.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "image {} ({}): its record carries no token layout; rebuild the cache",
                self.index,
                self.path
            )
        })
    }
}

/// How far a store has come; written in the same atomic batch as the data it describes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Images aggregated.
    pub images: u64,
    /// Tokens scored (the denominator of densities).
    pub tokens: u64,
    /// One past the largest image index aggregated; a resumed run continues from here.
    pub next_image: u32,
    /// Set once the job has seen every image it was given.
    pub complete: bool,
    /// Positions scored per kind, as [`super::positions::POSITION_KINDS`] orders them (the
    /// denominators of the densities by kind); `None` in stores made before they were counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored_by_position: Option<[u64; 4]>,
}

pub(crate) const KEY_MANIFEST: &[u8] = b"m";
pub(crate) const KEY_PROGRESS: &[u8] = b"p";
pub(crate) const PREFIX_IMAGE: &[u8] = b"i/";
pub(crate) const PREFIX_STATS: &[u8] = b"s/";
pub(crate) const PREFIX_TOP: &[u8] = b"t/";
/// Range samples (kept in the state log; the prefix names them in the digest).
pub(crate) const PREFIX_RANGE: &[u8] = b"r/";
pub(crate) const PREFIX_EXAMPLES: &[u8] = b"e/";
pub(crate) const KEY_COUNTS: &[u8] = b"c";
pub(crate) const PREFIX_SKIPPED: &[u8] = b"k/";

/// An image a cache run could not aggregate, and why; committed with the images around it, so
/// every run over the store reports the same skips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedImage {
    /// Dataset index.
    pub index: u32,
    /// Path relative to the dataset root.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// `prefix` followed by the big-endian ids, so keys sort by id.
pub(crate) fn key(prefix: &[u8], ids: &[u32]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for id in ids {
        k.extend(id.to_be_bytes());
    }
    k
}

/// The first id after `prefix` in a key.
pub(crate) fn key_id(prefix: &[u8], key: &[u8]) -> Result<u32> {
    match key.get(prefix.len()..prefix.len() + 4) {
        Some(b) if key.starts_with(prefix) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        _ => bail!("malformed key {key:?}"),
    }
}

/// A cursor over little-endian fields.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.0.len() < N {
            bail!("record is truncated");
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().expect("split_at gave N bytes"))
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bins() {
        assert_eq!(hist_bin(1e-5), 0);
        assert_eq!(hist_bin(0.000_999), 0);
        assert_eq!(hist_bin(0.0011), 1);
        assert_eq!(hist_bin(1.0), 1 + 24); // three decades of 8 bins below 1
        assert_eq!(hist_bin(0.99), 24);
        assert_eq!(hist_bin(999.0), HIST_BINS);
        assert_eq!(hist_bin(1000.0), HIST_LEN - 1);
        assert_eq!(hist_bin(f32::INFINITY), HIST_LEN - 1);
        let edges = hist_edges();
        assert_eq!(edges.len(), HIST_BINS + 1);
        assert!((edges[24] - 1.0).abs() < 1e-12 && (edges[HIST_BINS] - 1e3).abs() < 1e-9);
        for v in [0.002f32, 0.05, 0.7, 3.0, 42.0, 500.0] {
            let b = hist_bin(v) - 1;
            assert!(
                edges[b] <= f64::from(v) && f64::from(v) < edges[b + 1],
                "{v}"
            );
        }
    }

    #[test]
    fn stats_sum_is_exact_in_any_order() {
        let vals: Vec<f32> = (0..500)
            .map(|i| 1e-5 + (i as f32 * 0.37).sin().abs() * 7.3)
            .collect();
        let slotted: Vec<(usize, f32)> =
            vals.iter().enumerate().map(|(i, &v)| (i % 4, v)).collect();
        let mut fwd = FeatureStats::default();
        fwd.add_image(slotted.iter().copied());
        let mut parts = FeatureStats::default();
        for chunk in slotted.chunks(7).rev() {
            let mut s = FeatureStats::default();
            s.add_image(chunk.iter().rev().copied());
            parts.merge(&s);
        }
        assert_eq!(fwd.by_position, parts.by_position);
        let tallies = fwd.by_position.unwrap().0;
        assert_eq!(tallies.iter().map(|t| t.tokens).sum::<u64>(), 500);
        assert_eq!(
            tallies.iter().map(|t| t.sum_units).sum::<u128>(),
            fwd.sum_units
        );
        assert_eq!(fwd.sum_units, parts.sum_units);
        assert_eq!(fwd.sum, parts.sum);
        assert_eq!(fwd.hist, parts.hist);
        assert_eq!(fwd.max, parts.max);
        assert_eq!((fwd.fired_tokens, fwd.fired_images), (500, 1));
        assert_eq!(parts.fired_images, vals.chunks(7).count() as u64);
        let naive: f64 = vals.iter().map(|&v| f64::from(v)).sum();
        assert!((fwd.sum - naive).abs() < 1e-9);
        assert_eq!(fwd.hist.iter().sum::<u32>(), 500);
        assert_eq!(fwd.density(1000), 0.5);
        assert_eq!(FeatureStats::decode(&fwd.encode()).unwrap(), fwd);
        assert!(FeatureStats::decode(&fwd.encode()[1..]).is_err());
        // An older store's record, without position tallies, still reads.
        let old = FeatureStats {
            by_position: None,
            ..fwd.clone()
        };
        assert_eq!(old.encode().len(), FeatureStats::BASE_LEN);
        assert_eq!(FeatureStats::decode(&old.encode()).unwrap(), old);
        let mut mixed = fwd.clone();
        mixed.merge(&old);
        assert_eq!(mixed.by_position, None);
    }

    #[test]
    fn example_codec_and_keys() {
        let e = Example {
            image: 7,
            score: 1.5,
            max: 2.0,
            mean_base: 0.25,
            tokens: vec![(0, f16::from_f32(2.0)), (600, f16::from_f32(0.125))],
        };
        assert_eq!(Example::decode(&e.encode()).unwrap(), e);
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("[600,0.125]"), "{json}");
        assert_eq!(serde_json::from_str::<Example>(&json).unwrap(), e);
        let bytes = e.encode();
        assert!(Example::decode(&bytes[..bytes.len() - 1]).is_err());
        let k = key(PREFIX_TOP, &[3, 258]);
        assert_eq!(k, b"t/\0\0\0\x03\0\0\x01\x02");
        assert_eq!(key_id(PREFIX_TOP, &k).unwrap(), 3);
        assert!(key_id(PREFIX_STATS, &k).is_err());
    }

    #[test]
    fn ranking_order() {
        let mut v = vec![(1.0, 5), (2.0, 9), (1.0, 2), (2.0, 3)];
        v.sort_by(|a, b| rank_order(*a, *b));
        assert_eq!(v, vec![(2.0, 3), (2.0, 9), (1.0, 2), (1.0, 5)]);
    }
}
