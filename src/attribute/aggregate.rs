//! Per-(position, latent) attributions summed per latent, split into image and text tokens,
//! ranked, and turned into the original's filter files.

use std::collections::HashMap;

use anyhow::{Result, bail};
use serde::Serialize;

use super::patch::HostCodes;
use crate::model::llava_next::{SeqToken, SequenceMap};

/// One latent's attribution summed over the positions where it is active.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatentAttribution {
    /// Latent index.
    pub latent: u32,
    /// Σ over positions of `z · ∂M/∂z`: the first-order effect on the metric of zero-ablating it.
    pub total: f64,
    /// The part from image positions (newline tokens included).
    pub image: f64,
    /// The part from text positions.
    pub text: f64,
    /// Σ of its activations.
    pub activation_sum: f64,
    /// Positions where it is active.
    pub positions: u32,
    /// `(index among the image's tokens, attribution)`, like the cache's per-token examples;
    /// [`crate::model::anyres::token_grid_maps`] turns it into patch maps over every tile.
    pub image_map: Vec<(u32, f32)>,
    /// `(sequence position, attribution)` at text positions.
    pub text_map: Vec<(u32, f32)>,
}

/// Which part of a latent's attribution a ranking reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// Every position.
    Total,
    /// Image positions.
    Image,
    /// Text positions.
    Text,
}

impl Part {
    /// This part of `a`.
    pub fn of(self, a: &LatentAttribution) -> f64 {
        match self {
            Part::Total => a.total,
            Part::Image => a.image,
            Part::Text => a.text,
        }
    }
}

/// Attributions `z · grad` of every active (position, latent), summed per latent.
///
/// Returned sorted by total, largest first (ties by latent index), plus the number of active
/// (position, latent) pairs.
pub fn aggregate(
    map: &SequenceMap,
    codes: &HostCodes,
    grads: &[Vec<f64>],
) -> Result<(Vec<LatentAttribution>, usize)> {
    let rows = codes.values.len();
    if map.len() != rows || grads.len() != rows || codes.indices.len() != rows {
        bail!(
            "attribution sizes disagree: {} positions, {rows} code rows, {} gradient rows",
            map.len(),
            grads.len()
        );
    }
    let mut by_latent: HashMap<u32, LatentAttribution> = HashMap::new();
    let mut pairs = 0usize;
    for (pos, tok) in map.tokens.iter().enumerate() {
        let row = codes.values[pos]
            .iter()
            .zip(&codes.indices[pos])
            .zip(&grads[pos]);
        for ((&z, &latent), &g) in row {
            // Slots past the positive activations hold zeros; ablating them changes nothing.
            if z <= 0.0 {
                continue;
            }
            pairs += 1;
            let a = f64::from(z) * g;
            let e = by_latent
                .entry(latent)
                .or_insert_with(|| LatentAttribution {
                    latent,
                    ..Default::default()
                });
            e.total += a;
            e.activation_sum += f64::from(z);
            e.positions += 1;
            match tok {
                SeqToken::Image { token, .. } => {
                    e.image += a;
                    e.image_map.push((*token as u32, a as f32));
                }
                SeqToken::Text { .. } => {
                    e.text += a;
                    e.text_map.push((pos as u32, a as f32));
                }
            }
        }
    }
    let mut out: Vec<LatentAttribution> = by_latent.into_values().collect();
    sort_by(&mut out, Part::Total, false);
    Ok((out, pairs))
}

/// Sort by `part` (signed, largest first, as the original's top-k; or by magnitude).
pub fn sort_by(list: &mut [LatentAttribution], part: Part, by_abs: bool) {
    let key = |a: &LatentAttribution| {
        let v = part.of(a);
        if by_abs { v.abs() } else { v }
    };
    list.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.latent.cmp(&b.latent)));
}

/// The `k` latents with the largest signed `part` summed over `lists` (one list per item).
///
/// For one item this is the original's create_filters_from_attribution ranking: it averages
/// over the span, which orders latents exactly as the sum does.
pub fn top_latents<'a, I>(lists: I, part: Part, k: usize) -> Vec<u32>
where
    I: IntoIterator<Item = &'a [LatentAttribution]>,
{
    top_of_sums(
        lists
            .into_iter()
            .flat_map(|list| list.iter().map(|a| (a.latent, part.of(a)))),
        k,
    )
}

/// The `k` latents of largest summed value over `(latent, value)` pairs (ties by id).
pub fn top_of_sums(pairs: impl IntoIterator<Item = (u32, f64)>, k: usize) -> Vec<u32> {
    let mut sums: HashMap<u32, f64> = HashMap::new();
    for (latent, v) in pairs {
        *sums.entry(latent).or_default() += v;
    }
    let mut ranked: Vec<(u32, f64)> = sums.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.into_iter().take(k).map(|(l, _)| l).collect()
}

/// The original's filter file: `{"<hookpoint>": [latents…]}`.
pub fn filter_json(hookpoint: &str, latents: &[u32]) -> serde_json::Value {
    serde_json::json!({ hookpoint: latents })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> SequenceMap {
        SequenceMap {
            tokens: vec![
                SeqToken::Text { id: 1 },
                SeqToken::Image { image: 0, token: 0 },
                SeqToken::Image { image: 0, token: 1 },
                SeqToken::Text { id: 2 },
            ],
        }
    }

    #[test]
    fn sums_split_by_token_kind_and_skip_zero_slots() {
        let codes = HostCodes {
            values: vec![
                vec![2.0, 0.0],
                vec![1.0, 0.5],
                vec![3.0, 1.0],
                vec![1.0, 0.0],
            ],
            indices: vec![vec![7, 9], vec![7, 3], vec![3, 7], vec![9, 7]],
        };
        let grads = vec![
            vec![0.5, 100.0],
            vec![1.0, -2.0],
            vec![0.1, 2.0],
            vec![-1.0, 100.0],
        ];
        let (list, pairs) = aggregate(&map(), &codes, &grads).unwrap();
        assert_eq!(pairs, 6);
        let get = |l: u32| list.iter().find(|a| a.latent == l).unwrap();
        let seven = get(7);
        assert_eq!(seven.total, 1.0 + 1.0 + 2.0);
        assert_eq!((seven.image, seven.text), (3.0, 1.0));
        assert_eq!(seven.activation_sum, 4.0);
        assert_eq!(seven.image_map, vec![(0, 1.0), (1, 2.0)]);
        assert_eq!(seven.text_map, vec![(0, 1.0)]);
        let three = get(3);
        assert!((three.total - (-1.0 + 0.3)).abs() < 1e-12);
        assert_eq!(get(9).total, -1.0);
        let order: Vec<u32> = list.iter().map(|a| a.latent).collect();
        assert_eq!(order, vec![7, 3, 9]);
        let mut by_abs = list.clone();
        sort_by(&mut by_abs, Part::Total, true);
        assert_eq!(by_abs[0].latent, 7);
        assert_eq!(top_latents([list.as_slice()], Part::Image, 1), vec![7]);
        assert_eq!(top_latents([list.as_slice()], Part::Text, 2), vec![7, 3]);
    }

    #[test]
    fn mismatched_sizes_are_an_error() {
        let codes = HostCodes::default();
        assert!(aggregate(&map(), &codes, &[]).is_err());
    }

    #[test]
    fn filter_file_uses_the_hookpoint_key() {
        let v = filter_json("model.layers.2", &[4, 1]);
        assert_eq!(v.to_string(), r#"{"model.layers.2":[4,1]}"#);
    }
}
