//! Activation fields drawn over images, ready for PNG: colour heatmaps and dark masks.
//!
//! [`seed_activation_image`] reproduces the original system's explainer image exactly (Pillow
//! arithmetic included); [`render_overlay`] is the general renderer for any field and ramp.

pub mod pillow;

use anyhow::{Context, Result, bail};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, GrayImage, ImageEncoder, RgbImage};

use super::field::ActivationField;
use crate::model::anyres::{ImageLayout, token_grid_maps};

/// Base-cell activations below this count as inactive in the original system's mask.
pub const SEED_ACTIVE_MIN: f32 = crate::sae::ACTIVE_MIN;

/// Mask value of an inactive cell: such pixels keep `(255 - 224) / 255` of their brightness.
pub const SEED_DARKEN: u8 = 224;

/// A colour ramp: stops at increasing positions in `[0, 1]`, linear in between.
#[derive(Debug, Clone, PartialEq)]
pub struct Ramp {
    stops: Vec<(f32, [u8; 3])>,
}

impl Default for Ramp {
    fn default() -> Self {
        Self::inferno()
    }
}

impl Ramp {
    /// Matplotlib's perceptually uniform "inferno", sampled at eleven stops.
    pub fn inferno() -> Self {
        const HEX: [&str; 11] = [
            "#000004", "#160b39", "#420a68", "#6a176e", "#932667", "#bc3754", "#dd513a", "#f37819",
            "#fca50a", "#f6d746", "#fcffa4",
        ];
        Self::from_hex(&HEX).expect("built-in inferno ramp is valid hex")
    }

    /// Evenly spaced stops from `#rrggbb` colours (the `#` is optional), first colour at 0.
    pub fn from_hex<S: AsRef<str>>(colours: &[S]) -> Result<Self> {
        if colours.is_empty() {
            bail!("colour ramp has no colours; give at least one #rrggbb value");
        }
        let last = (colours.len() - 1).max(1) as f32;
        let stops = colours
            .iter()
            .enumerate()
            .map(|(i, c)| Ok((i as f32 / last, parse_hex(c.as_ref())?)))
            .collect::<Result<Vec<_>>>()?;
        Self::from_stops(stops)
    }

    /// Stops at explicit positions, which must be finite, within `[0, 1]` and non-decreasing.
    pub fn from_stops(stops: Vec<(f32, [u8; 3])>) -> Result<Self> {
        if stops.is_empty() {
            bail!("colour ramp has no stops; give at least one (position, colour) pair");
        }
        for (i, w) in stops.iter().enumerate() {
            if !(0.0..=1.0).contains(&w.0) {
                bail!("colour ramp stop {i} sits at {} outside [0, 1]", w.0);
            }
            if i > 0 && w.0 < stops[i - 1].0 {
                bail!(
                    "colour ramp stop {i} at {} comes before stop {} at {}; sort the stops",
                    w.0,
                    i - 1,
                    stops[i - 1].0
                );
            }
        }
        Ok(Self { stops })
    }

    /// The stops, in order.
    pub fn stops(&self) -> &[(f32, [u8; 3])] {
        &self.stops
    }

    /// Colour at `t`, clamped to `[0, 1]` (NaN reads as 0).
    pub fn sample(&self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let first = self.stops[0];
        if t <= first.0 {
            return first.1;
        }
        for w in self.stops.windows(2) {
            let ((p0, c0), (p1, c1)) = (w[0], w[1]);
            if t <= p1 {
                let f = if p1 > p0 { (t - p0) / (p1 - p0) } else { 1.0 };
                return std::array::from_fn(|k| {
                    (c0[k] as f32 + (c1[k] as f32 - c0[k] as f32) * f).round() as u8
                });
            }
        }
        self.stops[self.stops.len() - 1].1
    }

    /// 256 samples across `[0, 1]`, for per-pixel lookups.
    fn lut(&self) -> Vec<[u8; 3]> {
        (0..256).map(|i| self.sample(i as f32 / 255.0)).collect()
    }
}

/// Parse `#rrggbb` or `rrggbb`, naming the offending text on failure.
fn parse_hex(text: &str) -> Result<[u8; 3]> {
    let digits = text.trim().trim_start_matches('#');
    let valid = digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        bail!("colour {text:?} is not a #rrggbb hex colour (e.g. \"#fca50a\")");
    }
    let byte = |i: usize| u8::from_str_radix(&digits[i..i + 2], 16);
    Ok([byte(0)?, byte(2)?, byte(4)?])
}

/// How a field is drawn over its image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OverlayStyle {
    /// Ramp colour blended over the image, opacity `alpha * value / max` (0 keeps the pixel).
    Heat {
        /// Opacity at the maximum value, in `[0, 1]`.
        alpha: f32,
    },
    /// The original system's look: pixels with value below [`SEED_ACTIVE_MIN`] keep 31/255 of
    /// their brightness (Pillow's integer composite), active pixels are unchanged.
    DarkenMask,
}

impl Default for OverlayStyle {
    fn default() -> Self {
        // The opacity the original system used before it switched to dark masks.
        Self::Heat { alpha: 0.65 }
    }
}

/// Pillow's `DIV255`: rounded division by 255 for products of two bytes.
fn div255(v: u32) -> u8 {
    let t = v + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// Pillow's `paste(black, mask)` blend of one byte: `out = px * (1 - m/255)`, rounded.
fn darken(px: u8, m: u8) -> u8 {
    div255(px as u32 * (255 - m as u32))
}

/// Nearest source index for each of `dst` positions spread over `src`.
fn nearest_index(src: u32, dst: u32) -> Vec<usize> {
    (0..dst as u64)
        .map(|i| (((2 * i + 1) * src as u64) / (2 * dst as u64)).min(src as u64 - 1) as usize)
        .collect()
}

/// Draw `field` over `img`; a field of another size is sampled at the nearest pixel.
///
/// `scale_max` fixes the value drawn at full strength (so several images share one scale);
/// `None` uses the field's own maximum. A field with nothing above 0 leaves a heat overlay
/// identical to the image.
pub fn render_overlay(
    img: &RgbImage,
    field: &ActivationField,
    style: &OverlayStyle,
    ramp: &Ramp,
    scale_max: Option<f32>,
) -> RgbImage {
    let mut out = img.clone();
    let (w, h) = img.dimensions();
    let (fw, fh) = (field.width, field.height);
    if w == 0 || h == 0 || fw == 0 || fh == 0 || field.values.len() < fw as usize * fh as usize {
        return out;
    }
    let (xs, ys) = (nearest_index(fw, w), nearest_index(fh, h));
    let (fw, stride) = (fw as usize, w as usize * 3);
    // Walk rows of raw bytes, looking the field row up once per image row.
    let field_row = |y: usize| &field.values[ys[y] * fw..(ys[y] + 1) * fw];
    let raw: &mut [u8] = &mut out;
    match *style {
        OverlayStyle::Heat { alpha } => {
            let max = scale_max.unwrap_or_else(|| field.max());
            let alpha = if alpha.is_nan() {
                0.0
            } else {
                alpha.clamp(0.0, 1.0)
            };
            if !(max > 0.0 && max.is_finite()) || alpha == 0.0 {
                return out;
            }
            let lut = ramp.lut();
            let inv_max = 1.0 / max;
            for (y, row) in raw.chunks_exact_mut(stride).enumerate() {
                let frow = field_row(y);
                for (px, &fx) in row.chunks_exact_mut(3).zip(&xs) {
                    let v = frow[fx];
                    if v.is_nan() || v <= 0.0 {
                        continue;
                    }
                    let t = (v * inv_max).min(1.0);
                    // `+ 0.5` then truncate: round half up without a libm call (values >= 0).
                    let colour = lut[(t * 255.0 + 0.5) as usize];
                    let a = alpha * t;
                    for (p, &c) in px.iter_mut().zip(&colour) {
                        *p = (*p as f32 + (c as f32 - *p as f32) * a + 0.5) as u8;
                    }
                }
            }
        }
        OverlayStyle::DarkenMask => {
            for (y, row) in raw.chunks_exact_mut(stride).enumerate() {
                let frow = field_row(y);
                for (px, &fx) in row.chunks_exact_mut(3).zip(&xs) {
                    // NaN stays lit, as in `seed_mask`.
                    if frow[fx] < SEED_ACTIVE_MIN {
                        px.iter_mut().for_each(|p| *p = darken(*p, SEED_DARKEN));
                    }
                }
            }
        }
    }
    out
}

/// Encode an RGB image as PNG bytes.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    PngEncoder::new(&mut bytes)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .with_context(|| format!("encoding a {}x{} overlay as PNG", img.width(), img.height()))?;
    Ok(bytes)
}

/// The original system's mask: base cells below [`SEED_ACTIVE_MIN`] set to [`SEED_DARKEN`], others
/// 0, resized `g x g` → `tile_px` square with Pillow's bilinear "L" resampling.
///
/// Its scorer counts a pixel as active when the mask is below [`SEED_DARKEN`].
pub fn seed_mask(layout: &ImageLayout, acts: &[(u32, f32)]) -> GrayImage {
    let g = layout.grid_side as usize;
    let s = layout.tile_px;
    let (base, _) = token_grid_maps(layout, acts);
    // NaN compares false, so it counts as active, as in the original's `base < 1e-5`.
    let cells: Vec<u8> = base
        .iter()
        .map(|&v| if v < SEED_ACTIVE_MIN { SEED_DARKEN } else { 0 })
        .collect();
    let px = pillow::resize(
        &cells,
        (g, g),
        1,
        (s as usize, s as usize),
        pillow::Filter::Bilinear,
    );
    GrayImage::from_raw(s, s, px).expect("resize returns tile_px^2 bytes")
}

/// The original system's activation image, for parity: the image squashed to `tile_px` square
/// (Pillow bicubic), darkened through [`seed_mask`] by Pillow's integer composite.
pub fn seed_activation_image(
    img: &RgbImage,
    layout: &ImageLayout,
    acts: &[(u32, f32)],
) -> RgbImage {
    let mask = seed_mask(layout, acts);
    let s = layout.tile_px as usize;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut px = if w == 0 || h == 0 {
        vec![0u8; s * s * 3]
    } else {
        pillow::resize(img.as_raw(), (w, h), 3, (s, s), pillow::Filter::Bicubic)
    };
    for (rgb, &m) in px.chunks_exact_mut(3).zip(mask.as_raw()) {
        rgb.iter_mut().for_each(|p| *p = darken(*p, m));
    }
    RgbImage::from_raw(s as u32, s as u32, px).expect("resize returns tile_px^2 pixels")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heatmap::{Source, Upsample, activation_field};
    use crate::util::hash::Fingerprint;

    const PINS: [(u32, u32); 5] = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

    fn layout_wh(w: u32, h: u32) -> ImageLayout {
        ImageLayout::new((h, w), &PINS, 336, 14).unwrap()
    }

    fn fnv(bytes: &[u8]) -> String {
        Fingerprint::new().update(bytes).hex()
    }

    /// Deterministic test picture; the reference values below come from Pillow 10.4 on the same.
    fn synth(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                ((x * 7 + y * 3) % 256) as u8,
                ((x * x + 5 * y) % 256) as u8,
                (((x ^ y) * 13) % 256) as u8,
            ])
        })
    }

    /// Base cells (0,0), (5,7), (5,8), (12,20), (23,23) active at 0.5.
    fn seed_acts() -> Vec<(u32, f32)> {
        [(0, 0), (5, 7), (5, 8), (12, 20), (23, 23)]
            .iter()
            .map(|&(r, c)| (r * 24 + c, 0.5))
            .collect()
    }

    #[test]
    fn div255_rounds_like_division() {
        for v in 0..=255 * 255u32 {
            assert_eq!(div255(v) as u32, (v + 127) / 255, "{v}");
        }
    }

    #[test]
    fn seed_mask_matches_pillow() {
        let mask = seed_mask(&layout_wh(640, 480), &seed_acts());
        assert_eq!(mask.dimensions(), (336, 336));
        let row3: Vec<u8> = (0..20).map(|x| mask.get_pixel(x, 3).0[0]).collect();
        assert_eq!(
            row3,
            [
                0, 0, 0, 0, 0, 0, 0, 8, 24, 40, 56, 72, 88, 104, 120, 136, 152, 168, 184, 200
            ]
        );
        assert_eq!(fnv(mask.as_raw()), "cd5cadc5a6ebe5b5");
        // High-res tokens do not reach the original system's mask.
        let l = layout_wh(640, 480);
        let only_high = seed_mask(&l, &[(600, 5.0)]);
        assert!(only_high.as_raw().iter().all(|&m| m == SEED_DARKEN));
    }

    #[test]
    fn seed_activation_image_matches_pillow() {
        let cases = [
            ((50, 37), "ba4ec8db26e08c24", "966df6771d265149"),
            ((900, 613), "2586919f0cc07444", "844137599b3de53c"),
            ((336, 336), "be44099f8665af45", "65652cef60fd0cb1"),
        ];
        for ((w, h), resized, out) in cases {
            let img = synth(w, h);
            let squashed = pillow::resize(
                img.as_raw(),
                (w as usize, h as usize),
                3,
                (336, 336),
                pillow::Filter::Bicubic,
            );
            assert_eq!(fnv(&squashed), resized, "squash of {w}x{h}");
            let seeded = seed_activation_image(&img, &layout_wh(w, h), &seed_acts());
            assert_eq!(seeded.dimensions(), (336, 336));
            assert_eq!(fnv(seeded.as_raw()), out, "activation image of {w}x{h}");
        }
    }

    #[test]
    fn seed_activation_image_darkens_by_hand_computed_factor() {
        let img = RgbImage::from_pixel(40, 30, image::Rgb([200, 100, 7]));
        let out = seed_activation_image(&img, &layout_wh(40, 30), &seed_acts());
        // Far from active cells the mask is 224: out = round(p * 31 / 255).
        assert_eq!(out.get_pixel(100, 100).0, [24, 12, 1]);
        // (x 13, y 3): only cells (0,0) [0] and (0,1) [224] reach it, weights 15/28 and 13/28,
        // so the mask is 104 and out = round(p * 151 / 255).
        assert_eq!(out.get_pixel(13, 3).0, [118, 59, 4]);
        // (7, 7): mask 8 * 27/28 + 224 * 1/28 = 15.7 -> 16, out = round(p * 239 / 255).
        assert_eq!(out.get_pixel(7, 7).0, [187, 94, 7]);
        // Inside an active cell, away from its edges, nothing changes.
        assert_eq!(out.get_pixel(3, 3).0, [200, 100, 7]);
        // No activation: every pixel darkened.
        let dark = seed_activation_image(&img, &layout_wh(40, 30), &[]);
        assert!(dark.pixels().all(|p| p.0 == [24, 12, 1]));
    }

    #[test]
    fn pillow_resize_matches_pillow_gray() {
        let green: Vec<u8> = synth(97, 61).pixels().map(|p| p.0[1]).collect();
        let cases = [
            (
                pillow::Filter::Bilinear,
                ["a90f04a5eadb09fe", "a89665f49bcc9975", "0e7dc173313fc7e8"],
            ),
            (
                pillow::Filter::Bicubic,
                ["55ceef47a0603287", "8ac0258f01f260e8", "bfe8b10ce4347e7a"],
            ),
        ];
        for (filter, hashes) in cases {
            for (size, want) in [(40, 23), (130, 200), (200, 61)].into_iter().zip(hashes) {
                let got = pillow::resize(&green, (97, 61), 1, size, filter);
                assert_eq!(got.len(), size.0 * size.1);
                assert_eq!(fnv(&got), want, "{filter:?} to {size:?}");
            }
        }
    }

    #[test]
    fn ramp_from_hex_and_errors() {
        let r = Ramp::from_hex(&["#000000", "ffffff"]).unwrap();
        assert_eq!(r.stops(), [(0.0, [0, 0, 0]), (1.0, [255, 255, 255])]);
        assert_eq!(r.sample(0.5), [128, 128, 128]);
        assert_eq!(r.sample(-1.0), [0, 0, 0]);
        assert_eq!(r.sample(2.0), [255, 255, 255]);
        assert_eq!(r.sample(f32::NAN), [0, 0, 0]);
        let one = Ramp::from_hex(&["#102030"]).unwrap();
        assert_eq!(
            (one.sample(0.0), one.sample(1.0)),
            ([16, 32, 48], [16, 32, 48])
        );
        for bad in ["#12zz45", "#12345", "red", "#1234567"] {
            let err = Ramp::from_hex(&["#000000", bad]).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        let owned = vec![String::from("#000004"), String::from("#fcffa4")];
        assert!(Ramp::from_hex(&owned).is_ok());
        assert!(Ramp::from_hex::<&str>(&[]).is_err());
        assert!(Ramp::from_stops(vec![(0.5, [0; 3]), (0.2, [0; 3])]).is_err());
        assert!(Ramp::from_stops(vec![(f32::NAN, [0; 3])]).is_err());
        assert!(Ramp::from_stops(vec![(1.5, [0; 3])]).is_err());
        let inferno = Ramp::inferno();
        assert_eq!(inferno.stops().len(), 11);
        assert_eq!(inferno.sample(0.0), [0, 0, 4]);
        assert_eq!(inferno.sample(1.0), [252, 255, 164]);
        assert_eq!(inferno.sample(0.5), [188, 55, 84]);
        assert_eq!(Ramp::default(), inferno);
    }

    #[test]
    fn heat_overlay_keeps_untouched_pixels() {
        let l = layout_wh(672, 336);
        let img = synth(672, 336);
        let idx = 576 + 5 * 49 + 30; // high-res cell covering x 420..434, y 70..84
        let field = activation_field(&l, &[(idx, 3.0)], Source::Combined, Upsample::Nearest);
        let ramp = Ramp::from_hex(&["#000000", "#ff0000"]).unwrap();
        let style = OverlayStyle::Heat { alpha: 0.5 };
        let out = render_overlay(&img, &field, &style, &ramp, None);
        let mut changed = 0;
        for (x, y, p) in out.enumerate_pixels() {
            let src = img.get_pixel(x, y).0;
            if field.values[(y * 672 + x) as usize] == 0.0 {
                assert_eq!(p.0, src, "{x},{y}");
            } else {
                // Full value: half the ramp's top colour over half the pixel.
                let want = [
                    ((src[0] as f32 + 255.0) / 2.0).round() as u8,
                    (src[1] as f32 / 2.0).round() as u8,
                    (src[2] as f32 / 2.0).round() as u8,
                ];
                assert_eq!(p.0, want, "{x},{y}");
                changed += 1;
            }
        }
        assert_eq!(changed, 14 * 14);
        // A shared scale of twice the maximum blends at a quarter opacity with the mid colour.
        let half = render_overlay(&img, &field, &style, &ramp, Some(6.0));
        let src = img.get_pixel(425, 75).0;
        let want = (src[0] as f32 + (128.0 - src[0] as f32) * 0.25).round() as u8;
        assert_eq!(half.get_pixel(425, 75).0[0], want);
        // Nothing active, or zero opacity: the image comes back unchanged.
        let empty = activation_field(&l, &[], Source::Combined, Upsample::Bilinear);
        assert_eq!(render_overlay(&img, &empty, &style, &ramp, None), img);
        let clear = OverlayStyle::Heat { alpha: 0.0 };
        assert_eq!(render_overlay(&img, &field, &clear, &ramp, None), img);
    }

    #[test]
    fn darken_mask_style_and_resized_fields() {
        let l = layout_wh(672, 336);
        let img = RgbImage::from_pixel(672, 336, image::Rgb([200, 100, 7]));
        let idx = 576 + 5 * 49 + 30;
        let field = activation_field(&l, &[(idx, 3.0)], Source::Combined, Upsample::Nearest);
        let out = render_overlay(
            &img,
            &field,
            &OverlayStyle::DarkenMask,
            &Ramp::inferno(),
            None,
        );
        assert_eq!(out.get_pixel(425, 75).0, [200, 100, 7]);
        assert_eq!(out.get_pixel(0, 0).0, [24, 12, 1]);
        assert_eq!(out.get_pixel(434, 75).0, [24, 12, 1]);
        // A half-size image samples the field at the nearest full-size pixel.
        let small = RgbImage::from_pixel(336, 168, image::Rgb([200, 100, 7]));
        let out = render_overlay(
            &small,
            &field,
            &OverlayStyle::DarkenMask,
            &Ramp::inferno(),
            None,
        );
        assert_eq!(out.dimensions(), (336, 168));
        assert_eq!(out.get_pixel(213, 38).0, [200, 100, 7]);
        assert_eq!(out.get_pixel(100, 100).0, [24, 12, 1]);
    }

    #[test]
    fn png_round_trip() {
        let img = synth(37, 21);
        let bytes = encode_png(&img).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let back = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(back, img);
    }
}
