//! The one path from a tap run's positions to sparse SAE activations: which positions are
//! scored ([`TokenSelection`]: by default every image token but the row-end newlines), and which
//! code values count (those that pass [`is_active`]). The cache, the probe, the model actor, the
//! benchmark and SAE training all go through it.

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};

use super::TapRun;
use crate::model::anyres::{ImageLayout, TokenKind};
use crate::model::llava_next::{SeqToken, SequenceMap};
use crate::sae::Sae;
pub use crate::sae::{ACTIVE_MIN, is_active};

/// Which positions of a sequence are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenSelection {
    /// Image tokens of the base view and the high-resolution map, not the row-end newlines
    /// (what the original system cached).
    #[default]
    Image,
    /// Image tokens and the newline token that ends each high-resolution row.
    ImageAndNewline,
    /// The prompt's text tokens only.
    Text,
    /// Every position: image tokens, newlines and text.
    All,
}

crate::util::choice::choice!(TokenSelection, "token selection" {
    Image => "image",
    ImageAndNewline => "image+newline",
    Text => "text",
    All => "all",
});

impl TokenSelection {
    /// Whether an image token of `kind` is scored.
    pub fn keeps_image(self, kind: TokenKind) -> bool {
        match self {
            TokenSelection::Image => kind != TokenKind::Newline,
            TokenSelection::ImageAndNewline | TokenSelection::All => true,
            TokenSelection::Text => false,
        }
    }

    /// Whether text positions are scored.
    pub fn keeps_text(self) -> bool {
        matches!(self, TokenSelection::Text | TokenSelection::All)
    }
}

impl serde::Serialize for TokenSelection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for TokenSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// What scored position `index` (as [`ScoredTokens::tokens`] numbers them) of an image with
/// `layout` is: the layout's token kind, or `None` for a text position (numbered from
/// [`ImageLayout::num_image_tokens`] on, in sequence order).
pub fn kind_of(layout: &ImageLayout, index: u16) -> Option<TokenKind> {
    layout.tokens().get(usize::from(index)).map(|t| t.kind)
}

/// A short name of a position's kind for display (`None`: a text position, see [`kind_of`]):
/// `base`, `high-res`, `newline` or `text`.
pub fn position_name(kind: Option<TokenKind>) -> &'static str {
    match kind {
        Some(TokenKind::Base) => "base",
        Some(TokenKind::HighRes) => "high-res",
        Some(TokenKind::Newline) => "newline",
        None => "text",
    }
}

/// Scored tokens of a sequence: their positions, and each one's index among the image's tokens
/// (the index the store and the heatmaps use); text positions, when scored, are numbered after
/// the image tokens in sequence order (see [`kind_of`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoredTokens {
    /// Sequence positions.
    pub positions: Vec<u32>,
    /// Index of each among the image's tokens.
    pub tokens: Vec<u16>,
}

/// The positions of `map` that `selection` scores.
pub fn scored_tokens(
    map: &SequenceMap,
    layout: &ImageLayout,
    selection: TokenSelection,
) -> ScoredTokens {
    let geometry = layout.tokens();
    let mut out = ScoredTokens::default();
    let mut text = 0usize;
    for (pos, st) in map.tokens.iter().enumerate() {
        let index = match st {
            SeqToken::Image { token, .. } => geometry
                .get(*token)
                .filter(|g| selection.keeps_image(g.kind))
                .map(|_| *token),
            _ => {
                text += 1;
                selection.keeps_text().then(|| geometry.len() + text - 1)
            }
        };
        if let Some(index) = index.and_then(|i| u16::try_from(i).ok()) {
            out.positions.push(pos as u32);
            out.tokens.push(index);
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

/// Encode the image tokens of `run` that [`TokenSelection::Image`] scores with `sae` (only those
/// rows reach the SAE).
pub fn encode_image_tokens(sae: &Sae, run: &TapRun) -> Result<ImageCodes> {
    encode_tokens(sae, run, TokenSelection::Image)
}

/// Encode the positions of `run` that `selection` scores with `sae`.
pub fn encode_tokens(sae: &Sae, run: &TapRun, selection: TokenSelection) -> Result<ImageCodes> {
    let layout = run.layout.clone().context("the sequence has no image")?;
    let scored = scored_tokens(&run.map, &layout, selection);
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
    let scored = scored_tokens(map, layout, TokenSelection::Image);
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
    fn each_selection_scores_its_positions_and_text_is_numbered_after_the_image() {
        // 4x4 patches of 8 px views, a 16x8 image: 16 base tokens, then high-res rows with a
        // newline each.
        let layout = ImageLayout::new((16, 8), &[(8, 16), (16, 8), (16, 16)], 8, 2).unwrap();
        let n = layout.num_image_tokens();
        let newlines = layout
            .tokens()
            .iter()
            .filter(|t| t.kind == TokenKind::Newline)
            .count();
        assert!(newlines > 0);
        let mut map = SequenceMap {
            tokens: vec![SeqToken::Text { id: 1 }, SeqToken::Text { id: 2 }],
        };
        map.tokens
            .extend((0..n).map(|token| SeqToken::Image { image: 0, token }));
        map.tokens.push(SeqToken::Text { id: 3 });
        let count = |sel| scored_tokens(&map, &layout, sel).tokens.len();
        assert_eq!(count(TokenSelection::Image), n - newlines);
        assert_eq!(count(TokenSelection::ImageAndNewline), n);
        assert_eq!(count(TokenSelection::Text), 3);
        assert_eq!(count(TokenSelection::All), n + 3);
        let text = scored_tokens(&map, &layout, TokenSelection::Text);
        assert_eq!(text.positions, vec![0, 1, n as u32 + 2]);
        let first = n as u16;
        assert_eq!(text.tokens, vec![first, first + 1, first + 2]);
        assert_eq!(position_name(kind_of(&layout, first)), "text");
        assert_eq!(position_name(kind_of(&layout, 0)), "base");
        let all = scored_tokens(&map, &layout, TokenSelection::All);
        let labels: std::collections::BTreeSet<&str> = all
            .tokens
            .iter()
            .map(|&t| position_name(kind_of(&layout, t)))
            .collect();
        assert_eq!(labels.len(), 4, "{labels:?}");
        for sel in TokenSelection::ALL {
            let json = serde_json::to_string(sel).unwrap();
            assert_eq!(serde_json::from_str::<TokenSelection>(&json).unwrap(), *sel);
        }
        assert_eq!(
            serde_json::to_string(&TokenSelection::ImageAndNewline).unwrap(),
            "\"image+newline\""
        );
    }

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
