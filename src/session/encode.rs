//! The one path from a tap run's image tokens to sparse SAE activations: which positions are
//! scored (every image token but the row-end newlines), and which code values count (those that
//! pass [`is_active`]). The cache, the probe, the model actor and the benchmark all go through it.

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};

use super::TapRun;
use crate::model::anyres::{ImageLayout, TokenKind};
use crate::model::llava_next::{SeqToken, SequenceMap};
use crate::sae::Sae;
pub use crate::sae::{ACTIVE_MIN, is_active};

/// Scored image tokens of a sequence: their positions, and each one's index among the image's
/// tokens (the index the store and the heatmaps use).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoredTokens {
    /// Sequence positions.
    pub positions: Vec<u32>,
    /// Index of each among the image's tokens.
    pub tokens: Vec<u16>,
}

/// The image tokens of `map` that are scored: base view and high-resolution tiles, not newlines.
pub fn scored_tokens(map: &SequenceMap, layout: &ImageLayout) -> ScoredTokens {
    let geometry = layout.tokens();
    let mut out = ScoredTokens::default();
    for (pos, st) in map.tokens.iter().enumerate() {
        if let SeqToken::Image { token, .. } = st
            && geometry
                .get(*token)
                .is_some_and(|g| g.kind != TokenKind::Newline)
        {
            out.positions.push(pos as u32);
            out.tokens.push(*token as u16);
        }
    }
    out
}

/// The `(token, feature, value)` triples of host top-k codes, row `r` belonging to image token
/// `tokens[r]`; values that are not activations are left out.
pub fn sparse_acts(
    tokens: &[u16],
    values: &[Vec<f32>],
    indices: &[Vec<u32>],
) -> Vec<(u16, u32, f32)> {
    let mut acts = Vec::with_capacity(tokens.len() * values.first().map_or(0, Vec::len));
    for ((&tok, vals), ids) in tokens.iter().zip(values).zip(indices) {
        push_active(&mut acts, tok, vals, ids);
    }
    acts
}

/// Append one code row's activations, as image token `tok`.
fn push_active(acts: &mut Vec<(u16, u32, f32)>, tok: u16, vals: &[f32], ids: &[u32]) {
    for (&f, &v) in ids.iter().zip(vals) {
        if is_active(v) {
            acts.push((tok, f, v));
        }
    }
}

/// One image's sparse activations at its scored tokens.
#[derive(Debug, Clone)]
pub struct ImageCodes {
    /// The image's geometry.
    pub layout: ImageLayout,
    /// `(token index among image tokens, feature, value)`.
    pub acts: Vec<(u16, u32, f32)>,
    /// How many tokens were scored.
    pub scored_tokens: usize,
}

/// Encode the scored image tokens of `run` with `sae` (only those rows reach the SAE).
pub fn encode_image_tokens(sae: &Sae, run: &TapRun) -> Result<ImageCodes> {
    let layout = run.layout.clone().context("the sequence has no image")?;
    let scored = scored_tokens(&run.map, &layout);
    let index = Tensor::new(scored.positions.as_slice(), run.residual.device())?;
    let rows = run.residual.index_select(&index, 0)?;
    let codes = sae.encode(&rows)?;
    let values = codes.values.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let indices = codes.indices.to_vec2::<u32>()?;
    Ok(ImageCodes {
        acts: sparse_acts(&scored.tokens, &values, &indices),
        scored_tokens: scored.tokens.len(),
        layout,
    })
}

/// The activations at the scored image tokens of codes computed for every position of `map`.
pub fn image_acts_of_all_positions(
    map: &SequenceMap,
    layout: &ImageLayout,
    values: &[Vec<f32>],
    indices: &[Vec<u32>],
) -> Vec<(u16, u32, f32)> {
    let scored = scored_tokens(map, layout);
    let mut acts = Vec::new();
    for (&pos, &tok) in scored.positions.iter().zip(&scored.tokens) {
        push_active(
            &mut acts,
            tok,
            &values[pos as usize],
            &indices[pos as usize],
        );
    }
    acts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_above_the_threshold_are_kept() {
        let acts = sparse_acts(
            &[4, 9],
            &[vec![2.0, ACTIVE_MIN], vec![0.0, 3.5]],
            &[vec![7, 8], vec![1, 2]],
        );
        assert_eq!(acts, vec![(4, 7, 2.0), (9, 2, 3.5)]);
        assert!(is_active(ACTIVE_MIN * 2.0) && !is_active(ACTIVE_MIN) && !is_active(f32::NAN));
    }
}
