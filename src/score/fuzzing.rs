//! Fuzzing for images (anchors §5.2, §5.8): the judge sees images with highlighted regions that
//! are either the feature's true activation regions (tokens ≥ a fraction of the example's max)
//! or fake ones with the same number of tokens of each kind, and says which highlights fit.
//!
//! Fakes are drawn on non-activating images (delphi's `default`) or on the same activating
//! images away from the true tokens (delphi's harder `active`).

use std::collections::HashSet;
use std::path::Path;

use anyhow::Result;

use super::detection::{Loaded, SampleOptions, fit, load, negatives, positives};
use super::judge::Sample;
use crate::heatmap::overlay::{OverlayStyle, Ramp, encode_png, render_overlay};
use crate::heatmap::{Source, Upsample, activation_field};
use crate::model::anyres::TokenKind;
use crate::store::{Example, Store};
use crate::util::rng::SeededRng;

/// Where fake highlights go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FuzzType {
    /// On non-activating images.
    Default,
    /// On the activating images, away from the true tokens.
    Active,
}

crate::util::choice::choice!(FuzzType, "fuzzing type" { Default => "default", Active => "active" });

/// Image tokens of `ex` at or above `fraction` of its max.
pub fn true_tokens(ex: &Example, fraction: f32) -> Vec<u32> {
    let cut = fraction * ex.max;
    ex.tokens
        .iter()
        .filter(|(_, v)| v.to_f32() > 0.0 && v.to_f32() >= cut)
        .map(|&(i, _)| u32::from(i))
        .collect()
}

/// For each token of `like` (by kind in `img`'s layout), a random token of the same kind of
/// `img` that is not in `avoid`; fewer when too few are left.
pub fn fake_tokens(
    img: &Loaded,
    like: &[u32],
    kinds_of: &Loaded,
    avoid: &[u32],
    rng: &mut SeededRng,
) -> Vec<u32> {
    let src = kinds_of.layout.tokens();
    let dst = img.layout.tokens();
    let avoid: HashSet<u32> = avoid.iter().copied().collect();
    let mut out = Vec::new();
    for kind in [TokenKind::Base, TokenKind::HighRes] {
        let want = like
            .iter()
            .filter(|&&t| src.get(t as usize).is_some_and(|k| k.kind == kind))
            .count();
        let mut pool: Vec<u32> = (0..dst.len() as u32)
            .filter(|t| dst[*t as usize].kind == kind && !avoid.contains(t))
            .collect();
        rng.shuffle(&mut pool);
        out.extend(pool.into_iter().take(want));
    }
    out.sort_unstable();
    out
}

/// `img` with everything but `tokens` darkened (the original system's look), fit to `max_side`.
pub fn highlight(img: &Loaded, tokens: &[u32], max_side: u32) -> Result<Vec<u8>> {
    let acts: Vec<(u32, f32)> = tokens.iter().map(|&t| (t, 1.0)).collect();
    let field = activation_field(&img.layout, &acts, Source::Combined, Upsample::Nearest);
    let shown = fit(&img.rgb, max_side);
    let drawn = render_overlay(
        &shown,
        &field,
        &OverlayStyle::DarkenMask,
        &Ramp::inferno(),
        None,
    );
    encode_png(&drawn)
}

/// The fuzzing samples of `f`: true highlights on activating images, fakes per `kind`; also
/// whether the negatives' images are surely inactive (always true for `active`).
pub fn samples(
    store: &Store,
    root: &Path,
    f: u32,
    opts: &SampleOptions,
    kind: FuzzType,
    fraction: f32,
) -> Result<(Vec<Sample>, bool)> {
    let mut rng = SeededRng::for_name(opts.seed, &format!("fuzz/{f}"));
    let mut out = Vec::new();
    let mut shown = Vec::new();
    for ex in positives(store, f, opts.positives, opts.positives_from)? {
        let l = load(store, root, ex.image, opts.max_pixels)?;
        let truth = true_tokens(&ex, fraction);
        out.push(Sample {
            png: highlight(&l, &truth, opts.max_side)?,
            positive: true,
            image: ex.image,
        });
        shown.push((l, truth));
    }
    if shown.is_empty() {
        return Ok((out, true));
    }
    let exact = match kind {
        FuzzType::Active => {
            for k in 0..opts.negatives {
                let (l, truth) = &shown[k % shown.len()];
                let fake = fake_tokens(l, truth, l, truth, &mut rng);
                out.push(Sample {
                    png: highlight(l, &fake, opts.max_side)?,
                    positive: false,
                    image: l.record.index,
                });
            }
            true
        }
        FuzzType::Default => {
            let (neg, exact) = negatives(store, f, opts.negatives, opts.seed)?;
            for (k, i) in neg.into_iter().enumerate() {
                let l = load(store, root, i, opts.max_pixels)?;
                // Match the token count of one of the true highlights, in turn.
                let (like, truth) = &shown[k % shown.len()];
                let fake = fake_tokens(&l, truth, like, &[], &mut rng);
                out.push(Sample {
                    png: highlight(&l, &fake, opts.max_side)?,
                    positive: false,
                    image: i,
                });
            }
            exact
        }
    };
    Ok((out, exact))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::anyres::ImageLayout;
    use crate::store::ImageRecord;
    use half::f16;
    use image::RgbImage;

    fn loaded(w: u32, h: u32) -> Loaded {
        let layout = ImageLayout::new((h, w), &[(8, 16), (16, 8), (16, 16)], 8, 2).unwrap();
        Loaded {
            record: ImageRecord {
                index: 3,
                id: "a".into(),
                path: "a.png".into(),
                width: w,
                height: h,
                layout: Some(layout.clone()),
                n_tokens: layout.num_image_tokens() as u32,
                top_features: vec![],
            },
            layout,
            rgb: RgbImage::from_pixel(w, h, image::Rgb([200, 200, 200])),
        }
    }

    #[test]
    fn fakes_match_the_true_count_per_kind_and_avoid_it() {
        let l = loaded(16, 16);
        let kinds = l.layout.tokens();
        let ex = Example {
            image: 3,
            score: 4.0,
            max: 4.0,
            mean_base: 0.0,
            tokens: vec![
                (0, f16::from_f32(4.0)),
                (1, f16::from_f32(1.0)),
                (20, f16::from_f32(2.0)),
            ],
        };
        let truth = true_tokens(&ex, 0.3);
        assert_eq!(truth, vec![0, 20], "1.0 < 0.3 x 4");
        let mut rng = SeededRng::new(1);
        let fake = fake_tokens(&l, &truth, &l, &truth, &mut rng);
        assert_eq!(fake.len(), 2);
        assert!(fake.iter().all(|t| !truth.contains(t)));
        let kind = |t: &u32| kinds[*t as usize].kind;
        let mut want: Vec<_> = truth.iter().map(kind).collect();
        let mut got: Vec<_> = fake.iter().map(kind).collect();
        want.sort_by_key(|k| *k as u8);
        got.sort_by_key(|k| *k as u8);
        assert_eq!(want, got);
        // The highlight keeps the true cell lit and darkens the rest.
        let png = highlight(&l, &[0], 0).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.get_pixel(0, 0).0, [200, 200, 200]);
        assert!(img.get_pixel(15, 15).0[0] < 40);
    }
}
