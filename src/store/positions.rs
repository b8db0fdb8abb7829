//! Where a feature fires, by kind of position: base view, high-resolution tiles, the newline
//! token ending each high-resolution row, and text.
//!
//! Per feature the store counts the tokens it fired on and their exact activation sum per kind
//! (in the fixed point of the total sum, so shards and resumed runs add up exactly); per store
//! it counts the scored positions of each kind, the denominators of the densities.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::records::{sum_of_units, units_of};
use crate::model::anyres::{ImageLayout, TokenKind};
use crate::session::encode::{TokenSelection, position_name};

/// Kinds of position, in the order of [`PositionTallies`]: base, high-res, newline, text.
pub const POSITION_KINDS: [Option<TokenKind>; 4] = [
    Some(TokenKind::Base),
    Some(TokenKind::HighRes),
    Some(TokenKind::Newline),
    None,
];

/// The slot of a position's kind in [`POSITION_KINDS`] (`None`: a text position).
pub fn position_slot(kind: Option<TokenKind>) -> usize {
    match kind {
        Some(TokenKind::Base) => 0,
        Some(TokenKind::HighRes) => 1,
        Some(TokenKind::Newline) => 2,
        None => 3,
    }
}

/// A feature's firing on one kind of position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionTally {
    /// Tokens of this kind it fired on.
    pub tokens: u64,
    /// The exact sum of those activations, in the units of [`super::FeatureStats::sum_units`].
    pub sum_units: u128,
}

/// A feature's firing per kind of position, in the order of [`POSITION_KINDS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionTallies(pub [PositionTally; 4]);

impl PositionTallies {
    /// Bytes of the encoded tallies.
    pub(crate) const ENCODED_LEN: usize = 4 * 24;

    /// Count activation `v` at a position of slot `slot`.
    pub fn add(&mut self, slot: usize, v: f32) {
        let t = &mut self.0[slot];
        t.tokens += 1;
        t.sum_units = t.sum_units.saturating_add(units_of(v));
    }

    /// Add another shard's tallies of the same feature.
    pub fn merge(&mut self, other: &PositionTallies) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            a.tokens += b.tokens;
            a.sum_units = a.sum_units.saturating_add(b.sum_units);
        }
    }

    /// Density and mean activation per kind against `scored` positions of each kind: one row
    /// per kind, `None` for a kind no position of which was scored.
    pub fn table(&self, scored: &[u64; 4]) -> Vec<PositionRow> {
        POSITION_KINDS
            .iter()
            .zip(self.0.iter().zip(scored))
            .map(|(&kind, (t, &n))| PositionRow {
                kind: position_name(kind),
                scored: n,
                fired: t.tokens,
                density: (n > 0).then(|| t.tokens as f64 / n as f64),
                mean: (t.tokens > 0).then(|| sum_of_units(t.sum_units) / t.tokens as f64),
            })
            .collect()
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        for t in &self.0 {
            out.extend(t.tokens.to_le_bytes());
            out.extend(t.sum_units.to_le_bytes());
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != Self::ENCODED_LEN {
            bail!(
                "position tallies are {} bytes, expected {}",
                bytes.len(),
                Self::ENCODED_LEN
            );
        }
        let mut out = Self::default();
        for (t, c) in out.0.iter_mut().zip(bytes.chunks_exact(24)) {
            t.tokens = u64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
            t.sum_units = u128::from_le_bytes(c[8..].try_into().expect("16 bytes"));
        }
        Ok(out)
    }
}

/// One kind of position in a feature's table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionRow {
    /// `base`, `high-res`, `newline` or `text`.
    pub kind: &'static str,
    /// Positions of this kind the store scored.
    pub scored: u64,
    /// Of those, where the feature fired.
    pub fired: u64,
    /// `fired / scored`; `None` where none was scored.
    pub density: Option<f64>,
    /// Mean activation where it fired; `None` where it never did.
    pub mean: Option<f64>,
}

/// The slot of each image position of `layout` (text positions, numbered after them, are slot
/// 3), written into `out`.
pub(crate) fn layout_slots(layout: &ImageLayout, out: &mut Vec<u8>) {
    out.clear();
    out.extend(
        layout
            .tokens()
            .iter()
            .map(|t| position_slot(Some(t.kind)) as u8),
    );
}

/// Positions of each kind an image with `layout` scored under `selection`, of `scored` in all
/// (the text positions are the rest).
pub(crate) fn scored_by_slot(
    layout: &ImageLayout,
    selection: TokenSelection,
    scored: usize,
) -> [u64; 4] {
    let mut out = [0u64; 4];
    for t in layout.tokens() {
        if selection.keeps_image(t.kind) {
            out[position_slot(Some(t.kind))] += 1;
        }
    }
    let image: u64 = out.iter().sum();
    out[3] = (scored as u64).saturating_sub(image);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::layout;

    #[test]
    fn tallies_add_merge_encode_and_tabulate() {
        let mut a = PositionTallies::default();
        a.add(0, 0.5);
        a.add(0, 1.5);
        a.add(3, 2.0);
        let mut b = PositionTallies::default();
        b.add(1, 4.0);
        a.merge(&b);
        assert_eq!(PositionTallies::decode(&encoded(&a)).unwrap(), a);
        assert!(PositionTallies::decode(&encoded(&a)[1..]).is_err());
        let rows = a.table(&[10, 20, 0, 4]);
        assert_eq!(
            rows.iter().map(|r| r.kind).collect::<Vec<_>>(),
            ["base", "high-res", "newline", "text"]
        );
        assert_eq!(rows[0].density, Some(0.2));
        assert_eq!(rows[0].mean, Some(1.0));
        assert_eq!((rows[1].fired, rows[1].mean), (1, Some(4.0)));
        assert_eq!((rows[2].density, rows[2].mean), (None, None));
        assert_eq!((rows[3].density, rows[3].mean), (Some(0.25), Some(2.0)));
    }

    fn encoded(t: &PositionTallies) -> Vec<u8> {
        let mut out = Vec::new();
        t.encode_into(&mut out);
        out
    }

    #[test]
    fn scored_positions_follow_the_token_selection() {
        let lay = layout(16, 16);
        let count = |k: TokenKind| lay.tokens().iter().filter(|t| t.kind == k).count() as u64;
        let (base, high, newline) = (
            count(TokenKind::Base),
            count(TokenKind::HighRes),
            count(TokenKind::Newline),
        );
        assert!(base > 0 && high > 0 && newline > 0);
        let image = (base + high) as usize;
        assert_eq!(
            scored_by_slot(&lay, TokenSelection::Image, image),
            [base, high, 0, 0]
        );
        let all = image + newline as usize + 7;
        assert_eq!(
            scored_by_slot(&lay, TokenSelection::All, all),
            [base, high, newline, 7]
        );
        assert_eq!(scored_by_slot(&lay, TokenSelection::Text, 7), [0, 0, 0, 7]);
        let mut slots = Vec::new();
        layout_slots(&lay, &mut slots);
        assert_eq!(slots.len(), lay.tokens().len());
        assert_eq!(slots.iter().filter(|&&s| s == 2).count() as u64, newline);
    }
}
