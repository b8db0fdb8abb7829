//! Pillow's convolution resampler (`Image.resize` on 8-bit images), reproduced bit for bit.
//!
//! Pillow computes per-output-pixel filter taps in f64 (support scaled up when shrinking, so
//! downscaling antialiases), turns them into 22-bit fixed point, and runs a horizontal pass, then
//! a vertical one (the other way round when the height shrinks much more than the width),
//! rounding to 8 bits in between. Matching that order and rounding is what makes
//! the original system's masks and squashed images reproducible exactly.

/// Pillow resampling filters used by the original system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BILINEAR`: triangle, support 1.
    Bilinear,
    /// `Image.BICUBIC`: Keys cubic with a = -0.5, support 2 (Pillow's default for RGB).
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Bilinear => bilinear_weight(x),
            Filter::Bicubic => bicubic_weight(x),
        }
    }
}

/// Pillow's triangle filter at distance `x` (support 1).
pub(crate) fn bilinear_weight(x: f64) -> f64 {
    (1.0 - x.abs()).max(0.0)
}

/// Pillow's cubic filter (Keys, a = -0.5) at distance `x` (support 2).
pub(crate) fn bicubic_weight(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fractional bits of the fixed-point taps (Pillow's `PRECISION_BITS` for 8-bit images).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point taps along one axis: output `i` reads `len[i]` inputs from `start[i]`.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    ksize: usize,
    weights: Vec<i64>,
}

fn taps(in_size: usize, out_size: usize, filter: Filter) -> Taps {
    // Pillow carries the source box as f32; exact for any realistic size.
    let scale = in_size as f32 as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let ss = 1.0 / filterscale;
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut t = Taps {
        start: Vec::with_capacity(out_size),
        len: Vec::with_capacity(out_size),
        ksize,
        weights: vec![0; out_size * ksize],
    };
    let mut k = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // `as` truncates toward zero, as C's `(int)` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let n = ((xmax - xmin).max(0) as usize).min(ksize);
        let mut total = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            *kx = filter.weight(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            total += *kx;
        }
        let row = &mut t.weights[xx * ksize..xx * ksize + n];
        for (w, &kx) in row.iter_mut().zip(&k) {
            let kx = if total != 0.0 { kx / total } else { kx };
            let fixed = kx * (1u32 << PRECISION_BITS) as f64;
            *w = if kx < 0.0 {
                (fixed - 0.5) as i64
            } else {
                (fixed + 0.5) as i64
            };
        }
        t.start.push(xmin as usize);
        t.len.push(n);
    }
    t
}

/// Pillow's `clip8`: drop the fraction and saturate to a byte.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resize an interleaved 8-bit image of `channels` per pixel as Pillow's `Image.resize` does.
///
/// `src` holds `width * height * channels` bytes; the result holds `out_w * out_h * channels`
/// (all zero when either size is empty).
///
/// # Panics
/// If `channels` is not 1 to 4 or `src` has the wrong length.
pub fn resize(
    src: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    (out_w, out_h): (usize, usize),
    filter: Filter,
) -> Vec<u8> {
    assert!(
        (1..=4).contains(&channels),
        "1 to 4 channels, got {channels}"
    );
    assert_eq!(src.len(), width * height * channels, "pixel buffer size");
    if width == 0 || height == 0 || out_w == 0 || out_h == 0 {
        return vec![0; out_w * out_h * channels];
    }
    // Pillow (10.1 on) runs the vertical pass first when the height shrinks by more than twice
    // what the width does; the order matters, as each pass rounds to 8 bits.
    let (dw, dh) = (width as i64 - out_w as i64, height as i64 - out_h as i64);
    let vertical_first = dh > 0 && dh > 2 * dw;
    if vertical_first {
        let v = vertical(src, (width, height), channels, out_h, filter);
        horizontal(&v, (width, out_h), channels, out_w, filter)
    } else {
        let h = horizontal(src, (width, height), channels, out_w, filter);
        vertical(&h, (out_w, height), channels, out_h, filter)
    }
}

/// The horizontal pass: `(width, height)` to `(out_w, height)` (a copy when the width stays).
fn horizontal(
    src: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    out_w: usize,
    filter: Filter,
) -> Vec<u8> {
    if out_w == width {
        return src.to_vec();
    }
    let half = 1i64 << (PRECISION_BITS - 1);
    let t = taps(width, out_w, filter);
    let mut out = vec![0u8; out_w * height * channels];
    let rows = src.chunks_exact(width * channels);
    for (row, dst) in rows.zip(out.chunks_exact_mut(out_w * channels)) {
        for (xx, d) in dst.chunks_exact_mut(channels).enumerate() {
            let k = &t.weights[xx * t.ksize..xx * t.ksize + t.len[xx]];
            let window = &row[t.start[xx] * channels..(t.start[xx] + k.len()) * channels];
            let mut acc = [half; 4];
            for (px, &w) in window.chunks_exact(channels).zip(k) {
                for (a, &p) in acc.iter_mut().zip(px) {
                    *a += p as i64 * w;
                }
            }
            for (o, &a) in d.iter_mut().zip(&acc) {
                *o = clip8(a);
            }
        }
    }
    out
}

/// The vertical pass: `(width, height)` to `(width, out_h)` (a copy when the height stays).
fn vertical(
    src: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    if out_h == height {
        return src.to_vec();
    }
    let half = 1i64 << (PRECISION_BITS - 1);
    let t = taps(height, out_h, filter);
    let stride = width * channels;
    let mut out = vec![0u8; out_h * stride];
    // Accumulate whole rows so the source is read in memory order.
    let mut acc = vec![0i64; stride];
    for (yy, dst) in out.chunks_exact_mut(stride).enumerate() {
        let k = &t.weights[yy * t.ksize..yy * t.ksize + t.len[yy]];
        acc.iter_mut().for_each(|a| *a = half);
        for (i, &w) in k.iter().enumerate() {
            let row = &src[(t.start[yy] + i) * stride..(t.start[yy] + i + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i64 * w;
            }
        }
        for (d, &a) in dst.iter_mut().zip(&acc) {
            *d = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_resample_independently_and_sizes_are_handled() {
        let (w, h) = (29usize, 17usize);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i * 37) % 251) as u8).collect();
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            for size in [(11, 40), (64, 5), (29, 9)] {
                let joint = resize(&rgb, (w, h), 3, size, filter);
                for c in 0..3 {
                    let plane: Vec<u8> = rgb.iter().skip(c).step_by(3).copied().collect();
                    let alone = resize(&plane, (w, h), 1, size, filter);
                    let from_joint: Vec<u8> = joint.iter().skip(c).step_by(3).copied().collect();
                    assert_eq!(alone, from_joint, "{filter:?} {size:?} channel {c}");
                }
            }
            assert_eq!(resize(&rgb, (w, h), 3, (w, h), filter), rgb);
        }
        assert_eq!(resize(&[], (0, 5), 3, (4, 2), Filter::Bicubic), vec![0; 24]);
        assert!(resize(&rgb, (w, h), 3, (0, 9), Filter::Bilinear).is_empty());
        // Taps sum to one in fixed point, so a flat image stays flat at any size.
        let flat = vec![77u8; 13 * 7];
        for size in [(3, 2), (50, 31), (13, 100)] {
            let out = resize(&flat, (13, 7), 1, size, Filter::Bicubic);
            assert!(out.iter().all(|&p| p == 77), "{size:?}");
        }
    }
}
