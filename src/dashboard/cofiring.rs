//! Which features fire on the same image tokens as a given one, over a set of images (the
//! feature's top examples, re-encoded so every feature's tokens are known).
//!
//! The measure is the Jaccard index of the two features' sets of (image, token) pairs where they
//! are active; with it come the shared count and `P(other | feature)`, the share of the
//! feature's tokens where the other fires too.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Another feature's overlap with the one asked about.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CoFiring {
    /// Feature index.
    pub feature: u32,
    /// Tokens where both fire.
    pub shared: u32,
    /// Tokens where this feature fires (over the same images).
    pub tokens: u32,
    /// `shared / (tokens of the asked feature + tokens of this one − shared)`.
    pub jaccard: f32,
    /// `shared / tokens of the asked feature`.
    pub p_given_feature: f32,
}

/// The `top` features by Jaccard overlap with `feature` over `images`, each image given as its
/// active `(token, feature, value)` triples (ties: more shared tokens, then lower index).
pub fn cofiring(feature: u32, images: &[Vec<(u16, u32, f32)>], top: usize) -> Vec<CoFiring> {
    let mut own: BTreeSet<(usize, u16)> = BTreeSet::new();
    let mut per: HashMap<u32, BTreeSet<(usize, u16)>> = HashMap::new();
    for (i, acts) in images.iter().enumerate() {
        for &(tok, f, v) in acts {
            if !crate::sae::is_active(v) {
                continue;
            }
            if f == feature {
                own.insert((i, tok));
            } else {
                per.entry(f).or_default().insert((i, tok));
            }
        }
    }
    if own.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<CoFiring> = per
        .into_iter()
        .filter_map(|(g, set)| {
            let shared = set.intersection(&own).count() as u32;
            (shared > 0).then(|| {
                let union = own.len() as u32 + set.len() as u32 - shared;
                CoFiring {
                    feature: g,
                    shared,
                    tokens: set.len() as u32,
                    jaccard: shared as f32 / union as f32,
                    p_given_feature: shared as f32 / own.len() as f32,
                }
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.jaccard
            .total_cmp(&a.jaccard)
            .then(b.shared.cmp(&a.shared))
            .then(a.feature.cmp(&b.feature))
    });
    out.truncate(top);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SeededRng;

    #[test]
    fn overlaps_match_a_brute_force_count() {
        let mut rng = SeededRng::for_name(1, "cofiring-test");
        let images: Vec<Vec<(u16, u32, f32)>> = (0..6)
            .map(|_| {
                let mut acts = Vec::new();
                for tok in 0..30u16 {
                    for f in 0..12u32 {
                        if rng.uniform() < 0.3 {
                            acts.push((tok, f, 1.0 + rng.uniform() as f32));
                        }
                    }
                }
                acts
            })
            .collect();
        let active = |f: u32| -> BTreeSet<(usize, u16)> {
            let mut s = BTreeSet::new();
            for (i, acts) in images.iter().enumerate() {
                for &(t, g, _) in acts {
                    if g == f {
                        s.insert((i, t));
                    }
                }
            }
            s
        };
        let got = cofiring(3, &images, 11);
        assert_eq!(got.len(), 11);
        let mine = active(3);
        for c in &got {
            let theirs = active(c.feature);
            let shared = mine.intersection(&theirs).count();
            let union = mine.union(&theirs).count();
            assert_eq!(c.shared as usize, shared);
            assert!((c.jaccard - shared as f32 / union as f32).abs() < 1e-6);
            assert!((c.p_given_feature - shared as f32 / mine.len() as f32).abs() < 1e-6);
        }
        assert!(got.windows(2).all(|w| w[0].jaccard >= w[1].jaccard));
        assert!(cofiring(99, &images, 5).is_empty());
    }
}
