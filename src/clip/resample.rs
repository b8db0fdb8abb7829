//! Pillow's convolution resampling for 8-bit RGB images, reproduced bit for bit.
//!
//! CLIP's image processor resizes with `PIL.Image.resize(..., BICUBIC)`. Pillow runs a
//! separable filter (horizontal pass, then vertical), with coefficients rounded to 22-bit fixed
//! point and each pass rounded back to 8 bits. The image crate's Catmull-Rom has the same kernel
//! but float arithmetic and one pass, so it lands about one grey level off; this module follows
//! Pillow's arithmetic so pixels match transformers exactly.

use anyhow::{Result, bail};
use image::RgbImage;

/// Fixed-point precision of Pillow's 8-bit coefficients (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Pillow's resampling filters that use the convolution path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BOX` (4).
    Box,
    /// `Image.BILINEAR` (2).
    Bilinear,
    /// `Image.HAMMING` (5).
    Hamming,
    /// `Image.BICUBIC` (3), the one CLIP uses.
    Bicubic,
    /// `Image.LANCZOS` (1).
    Lanczos,
}

impl Filter {
    /// The filter for a PIL resample id; nearest (0) takes another path in Pillow and is refused.
    pub fn from_pil(id: u32) -> Result<Self> {
        Ok(match id {
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            0 => bail!("resample 0 (nearest) is not supported; use 3 (bicubic) as CLIP does"),
            other => bail!("resample {other} is not a PIL filter id (1-5; CLIP uses 3)"),
        })
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Self::Box => {
                if (-0.5..0.5).contains(&x) {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => crate::util::pillow::bilinear_weight(x),
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let px = x * std::f64::consts::PI;
                    px.sin() / px * (0.46 + 0.54 * px.cos())
                }
            }
            Self::Bicubic => crate::util::pillow::bicubic_weight(x),
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = x * std::f64::consts::PI;
        px.sin() / px
    }
}

/// Per output pixel: first source index and fixed-point weights of the source run.
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for a whole-image box.
fn taps(in_size: usize, out_size: usize, filter: Filter) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut start = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C casts truncate toward zero; negative starts are then clamped, as in Pillow.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let raw: Vec<f64> = (xmin..xmax)
            .map(|x| filter.weight((x as f64 - center + 0.5) / filterscale))
            .collect();
        let total: f64 = raw.iter().sum();
        let one = f64::from(1u32 << PRECISION_BITS);
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                if w < 0.0 {
                    (-0.5 + w * one) as i32
                } else {
                    (0.5 + w * one) as i32
                }
            })
            .collect();
        start.push(xmin);
        weights.push(fixed);
    }
    Taps { start, weights }
}

/// Round a fixed-point accumulator back to a byte, clamping like Pillow's `clip8`.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resize `src` to `width x height` exactly as Pillow's `Image.resize(size, filter)` does.
pub fn resize(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (w, h) = src.dimensions();
    if (w, h) == (width, height) || width == 0 || height == 0 || w == 0 || h == 0 {
        // Pillow returns a copy for an unchanged size; empty sizes have nothing to filter.
        return if (w, h) == (width, height) {
            src.clone()
        } else {
            RgbImage::new(width, height)
        };
    }
    let half = 1i64 << (PRECISION_BITS - 1);
    let horizontal = if w != width {
        let t = taps(w as usize, width as usize, filter);
        let mut out = RgbImage::new(width, h);
        for y in 0..h {
            for xx in 0..width as usize {
                let mut acc = [half; 3];
                for (i, &k) in t.weights[xx].iter().enumerate() {
                    let px = src.get_pixel((t.start[xx] + i) as u32, y).0;
                    for c in 0..3 {
                        acc[c] += i64::from(px[c]) * i64::from(k);
                    }
                }
                out.put_pixel(xx as u32, y, image::Rgb(acc.map(clip8)));
            }
        }
        out
    } else {
        src.clone()
    };
    if h == height {
        return horizontal;
    }
    let t = taps(h as usize, height as usize, filter);
    let mut out = RgbImage::new(width, height);
    for yy in 0..height as usize {
        for x in 0..width {
            let mut acc = [half; 3];
            for (i, &k) in t.weights[yy].iter().enumerate() {
                let px = horizontal.get_pixel(x, (t.start[yy] + i) as u32).0;
                for c in 0..3 {
                    acc[c] += i64::from(px[c]) * i64::from(k);
                }
            }
            out.put_pixel(x, yy as u32, image::Rgb(acc.map(clip8)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn uniform_images_stay_uniform_and_weights_sum_to_one() {
        let img = RgbImage::from_pixel(37, 23, Rgb([200, 17, 99]));
        for filter in [
            Filter::Bicubic,
            Filter::Bilinear,
            Filter::Lanczos,
            Filter::Box,
            Filter::Hamming,
        ] {
            let out = resize(&img, 16, 41, filter);
            assert_eq!(out.dimensions(), (16, 41));
            assert!(out.pixels().all(|p| p.0 == [200, 17, 99]), "{filter:?}");
            for (n_in, n_out) in [(37, 16), (23, 41)] {
                for w in taps(n_in, n_out, filter).weights {
                    let sum: i64 = w.iter().map(|&k| i64::from(k)).sum();
                    assert!((sum - (1 << PRECISION_BITS)).abs() <= w.len() as i64);
                }
            }
        }
    }

    #[test]
    fn pillow_reference_values() {
        // Pillow 13, `Image.frombytes("RGB", ...).resize(size, Image.BICUBIC)`:
        // (4, 1) black/white/black/white -> (2, 1) = [107, 148].
        let src = RgbImage::from_fn(4, 1, |x, _| Rgb([if x % 2 == 1 { 255 } else { 0 }; 3]));
        let out = resize(&src, 2, 1, Filter::Bicubic);
        assert_eq!(out.get_pixel(0, 0).0, [107; 3]);
        assert_eq!(out.get_pixel(1, 0).0, [148; 3]);
        // (2, 1) black/white -> (8, 1): the overshoot is clipped to 0..=255.
        let step = RgbImage::from_fn(2, 1, |x, _| Rgb([if x == 1 { 255 } else { 0 }; 3]));
        let up = resize(&step, 8, 1, Filter::Bicubic);
        let row: Vec<u8> = (0..8).map(|x| up.get_pixel(x, 0).0[0]).collect();
        assert_eq!(row, [0, 0, 22, 89, 166, 233, 255, 255]);
    }

    #[test]
    fn unsupported_filter_ids_are_refused() {
        assert!(
            Filter::from_pil(0)
                .unwrap_err()
                .to_string()
                .contains("nearest")
        );
        assert!(Filter::from_pil(9).is_err());
        assert_eq!(Filter::from_pil(3).unwrap(), Filter::Bicubic);
    }
}
