//! The layout of top-N lists and of the example records that hold their token maps.
//!
//! A feature's list record is small (its (score, image) pairs) so that a commit rewrites it
//! cheaply; the token maps live in example records keyed by (feature block, image), written once
//! when their examples enter a list and never rewritten, except by compaction, which drops the
//! examples that were evicted since (see [`super::Aggregator`]).

use anyhow::{Result, bail};

use super::records::{PREFIX_EXAMPLES, key};
use super::{Example, rank_order};

/// Consecutive features whose examples of one image share a record: few enough that reading
/// one example reads little, many enough that a commit writes few keys (blocks × images).
pub const EXAMPLE_BLOCK: u32 = 64;

/// The block of feature `f`.
pub(crate) fn block_of(f: u32) -> u32 {
    f / EXAMPLE_BLOCK
}

/// Blocks of a store with `num_latents` features.
pub(crate) fn num_blocks(num_latents: usize) -> usize {
    num_latents.div_ceil(EXAMPLE_BLOCK as usize)
}

/// Key of the example record of `block` on `image`.
pub(crate) fn example_key(block: u32, image: u32) -> Vec<u8> {
    key(PREFIX_EXAMPLES, &[block, image])
}

/// Encode a top-N list (best first) as (score f32, image u32) pairs.
pub(crate) fn encode_list(list: &[(f32, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 * list.len());
    for (score, image) in list {
        out.extend(score.to_le_bytes());
        out.extend(image.to_le_bytes());
    }
    out
}

/// Decode the (score, image) pairs of a list record, in their stored order.
pub(crate) fn decode_pairs(bytes: &[u8]) -> Result<Vec<(f32, u32)>> {
    if !bytes.len().is_multiple_of(8) {
        bail!("list record is {} bytes, not a multiple of 8", bytes.len());
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let score = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            (score, u32::from_le_bytes([c[4], c[5], c[6], c[7]]))
        })
        .collect())
}

/// Decode a list record, checking it is in strict rank order.
pub(crate) fn decode_list(bytes: &[u8]) -> Result<Vec<(f32, u32)>> {
    let list = decode_pairs(bytes)?;
    if let Some(w) = list.windows(2).find(|w| !rank_order(w[0], w[1]).is_lt()) {
        bail!(
            "list record has image {} after image {}, out of rank order",
            w[1].1,
            w[0].1
        );
    }
    Ok(list)
}

/// Append feature `f`'s example to an example record (records hold features in ascending order).
pub(crate) fn push_example(out: &mut Vec<u8>, f: u32, example: &Example) {
    out.extend(f.to_le_bytes());
    example.encode_into(out);
}

/// One example inside an example record: its feature and its encoded bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub feature: u32,
    pub bytes: &'a [u8],
}

/// Split an example record of `image` into its entries, checking lengths, the image of every
/// example and the feature order, without decoding token maps.
pub(crate) fn record_entries(bytes: &[u8], image: u32) -> Result<Vec<Entry<'_>>> {
    let mut out: Vec<Entry> = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(head) = rest.get(..24) else {
            bail!("example record ends inside an example header");
        };
        let word =
            |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let (feature, of_image, n) = (word(0), word(4), word(20) as usize);
        if of_image != image {
            bail!("example record of image {image} holds an example of image {of_image}");
        }
        let len = Example::encoded_len(n);
        let Some(entry) = rest.get(4..4 + len) else {
            bail!("example record ends inside the example of feature {feature}");
        };
        if out.last().is_some_and(|e| e.feature >= feature) {
            bail!("example record lists feature {feature} out of order");
        }
        out.push(Entry {
            feature,
            bytes: entry,
        });
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// The example of feature `f` in an example record of `image`, if it holds one.
pub(crate) fn find_example(bytes: &[u8], image: u32, f: u32) -> Result<Option<Example>> {
    record_entries(bytes, image)?
        .iter()
        .find(|e| e.feature == f)
        .map(|e| Example::decode(e.bytes))
        .transpose()
}

/// Re-encode the entries of a record whose features satisfy `keep`; `None` if none does.
pub(crate) fn filter_record(
    entries: &[Entry],
    mut keep: impl FnMut(u32) -> bool,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| keep(e.feature)) {
        out.extend(e.feature.to_le_bytes());
        out.extend_from_slice(e.bytes);
    }
    (!out.is_empty()).then_some(out)
}

/// Encode per-block example counts (the `c` record) as little-endian u32.
pub(crate) fn encode_counts(counts: &[u32]) -> Vec<u8> {
    counts.iter().flat_map(|c| c.to_le_bytes()).collect()
}

/// Decode the `c` record of a store with `blocks` blocks.
pub(crate) fn decode_counts(bytes: &[u8], blocks: usize) -> Result<Vec<u32>> {
    if bytes.len() != 4 * blocks {
        bail!(
            "example-count record is {} bytes, expected {} for {blocks} blocks",
            bytes.len(),
            4 * blocks
        );
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::*;

    fn ex(image: u32, score: f32, n: u16) -> Example {
        Example {
            image,
            score,
            max: score,
            mean_base: 0.5,
            tokens: (0..n).map(|t| (t * 3, f16::from_f32(score))).collect(),
        }
    }

    #[test]
    fn list_codec_checks_rank_order() {
        let list = vec![(3.0, 4), (3.0, 9), (1.0, 2)];
        assert_eq!(decode_list(&encode_list(&list)).unwrap(), list);
        assert!(decode_list(&[]).unwrap().is_empty());
        assert!(decode_list(&encode_list(&list)[..7]).is_err());
        let swapped = encode_list(&[(1.0, 2), (3.0, 4)]);
        assert!(
            decode_list(&swapped)
                .unwrap_err()
                .to_string()
                .contains("rank order")
        );
        assert!(decode_list(&encode_list(&[(1.0, 2), (1.0, 2)])).is_err());
    }

    #[test]
    fn example_records_find_filter_and_refuse_damage() {
        let mut rec = Vec::new();
        push_example(&mut rec, 3, &ex(7, 2.0, 2));
        push_example(&mut rec, 70, &ex(7, 1.0, 0));
        push_example(&mut rec, 71, &ex(7, 5.0, 3));
        assert_eq!(find_example(&rec, 7, 70).unwrap(), Some(ex(7, 1.0, 0)));
        assert_eq!(find_example(&rec, 7, 71).unwrap(), Some(ex(7, 5.0, 3)));
        assert_eq!(find_example(&rec, 7, 4).unwrap(), None);
        let entries = record_entries(&rec, 7).unwrap();
        let kept = filter_record(&entries, |f| f != 70).unwrap();
        let mut expect = Vec::new();
        push_example(&mut expect, 3, &ex(7, 2.0, 2));
        push_example(&mut expect, 71, &ex(7, 5.0, 3));
        assert_eq!(kept, expect);
        assert!(filter_record(&entries, |_| false).is_none());
        assert!(
            record_entries(&rec, 8)
                .unwrap_err()
                .to_string()
                .contains("image 7")
        );
        assert!(record_entries(&rec[..rec.len() - 1], 7).is_err());
        assert!(record_entries(&rec[..10], 7).is_err());
        let mut unordered = Vec::new();
        push_example(&mut unordered, 9, &ex(7, 1.0, 1));
        push_example(&mut unordered, 9, &ex(7, 1.0, 1));
        assert!(
            record_entries(&unordered, 7)
                .unwrap_err()
                .to_string()
                .contains("out of order")
        );
        assert_eq!((block_of(63), block_of(64), num_blocks(129)), (0, 1, 3));
        assert_eq!(
            decode_counts(&encode_counts(&[1, 5]), 2).unwrap(),
            vec![1, 5]
        );
        assert!(decode_counts(&encode_counts(&[1, 5]), 3).is_err());
    }
}
