//! Pillow's convolution resampler (`Image.resize` on 8-bit images), reproduced bit for bit.
//!
//! Pillow 10 computes per-output-pixel filter taps in f64 (support scaled up when shrinking, so
//! downscaling antialiases), turns them into 22-bit fixed point, and runs a horizontal pass, then
//! a vertical one, rounding to 8 bits in between. Matching that order and rounding is what makes
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
        let x = x.abs();
        match self {
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
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
/// `src` holds `width * height * channels` bytes; the result holds `out_w * out_h * channels`.
pub fn resize(
    src: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    (out_w, out_h): (usize, usize),
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(src.len(), width * height * channels, "pixel buffer size");
    let half = 1i64 << (PRECISION_BITS - 1);
    let horizontal = if out_w != width {
        let t = taps(width, out_w, filter);
        let mut out = vec![0u8; out_w * height * channels];
        for y in 0..height {
            let row = &src[y * width * channels..(y + 1) * width * channels];
            for xx in 0..out_w {
                let k = &t.weights[xx * t.ksize..xx * t.ksize + t.len[xx]];
                for c in 0..channels {
                    let mut acc = half;
                    for (i, &w) in k.iter().enumerate() {
                        acc += row[(t.start[xx] + i) * channels + c] as i64 * w;
                    }
                    out[(y * out_w + xx) * channels + c] = clip8(acc);
                }
            }
        }
        out
    } else {
        src.to_vec()
    };
    if out_h == height {
        return horizontal;
    }
    let t = taps(height, out_h, filter);
    let stride = out_w * channels;
    let mut out = vec![0u8; out_h * stride];
    for yy in 0..out_h {
        let k = &t.weights[yy * t.ksize..yy * t.ksize + t.len[yy]];
        let dst = &mut out[yy * stride..(yy + 1) * stride];
        for (j, d) in dst.iter_mut().enumerate() {
            let mut acc = half;
            for (i, &w) in k.iter().enumerate() {
                acc += horizontal[(t.start[yy] + i) * stride + j] as i64 * w;
            }
            *d = clip8(acc);
        }
    }
    out
}
