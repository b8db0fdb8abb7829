//! Sparse per-token activations turned into a per-pixel field over the ORIGINAL image.
//!
//! Every view of an image is a grid of cells with an affine map to original pixels: the base view
//! squashes the whole image onto `g x g` cells; the high-resolution map undoes the aspect-fit
//! resize and centre padding of the anyres canvas. Values are spread to pixels by bilinear
//! interpolation between cell centres (clamped at the borders, Pillow's and `align_corners=False`
//! convention) or by nearest cell, with per-axis weights precomputed so a render is O(pixels).

use crate::model::anyres::{ImageLayout, token_grid_maps};

/// How cell values are spread over pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Upsample {
    /// Linear between cell centres along each axis, constant beyond the outermost centres.
    #[default]
    Bilinear,
    /// Each pixel takes the value of the cell it lies in.
    Nearest,
}

crate::util::choice::choice!(Upsample, "upsampling" { Nearest => "nearest", Bilinear => "bilinear" });

/// Which image tokens feed the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// The squashed `g x g` base view only, as the original system drew it.
    Base,
    /// The unpadded high-resolution tiles only.
    HighRes,
    /// High-resolution detail where the image has a high-resolution map, max-blended with the
    /// base view (the base view alone when unpadding left no high-resolution cell).
    #[default]
    Combined,
}

/// A value per pixel of the original image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationField {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` values, row-major.
    pub values: Vec<f32>,
}

/// How a field becomes a binary "the feature is here" mask.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MaskRule {
    /// Value > 0: the original system's rule (its `mask < 224` marks every pixel with any
    /// bilinear weight on an active base cell), up to the 8-bit rounding of its mask image.
    #[default]
    AnyPositive,
    /// Value > 0 and value >= fraction x the field's maximum (nothing when the maximum is <= 0).
    FractionOfMax(f32),
    /// Value > the given threshold.
    Absolute(f32),
}

/// Affine map from an original-pixel coordinate to a continuous cell coordinate, where cell `j`
/// spans `[j, j + 1)`: `cell = px * cells_per_px + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct AxisMap {
    cells_per_px: f64,
    offset: f64,
    cells: usize,
}

/// Per-pixel interpolation along one axis: `value = v[lo] + (v[hi] - v[lo]) * t`.
struct AxisWeights {
    lo: Vec<usize>,
    hi: Vec<usize>,
    t: Vec<f32>,
}

impl AxisMap {
    fn weights(&self, pixels: u32, upsample: Upsample) -> AxisWeights {
        let n = pixels as usize;
        let mut w = AxisWeights {
            lo: Vec::with_capacity(n),
            hi: Vec::with_capacity(n),
            t: Vec::with_capacity(n),
        };
        let last = self.cells.saturating_sub(1);
        for x in 0..pixels {
            // Sample at the pixel centre.
            let u = (x as f64 + 0.5) * self.cells_per_px + self.offset;
            let (lo, hi, t) = match upsample {
                Upsample::Nearest => {
                    let i = (u.floor().max(0.0) as usize).min(last);
                    (i, i, 0.0)
                }
                Upsample::Bilinear => {
                    let c = (u - 0.5).clamp(0.0, last as f64);
                    let lo = c.floor() as usize;
                    let hi = (lo + 1).min(last);
                    (lo, hi, (c - lo as f64) as f32)
                }
            };
            w.lo.push(lo);
            w.hi.push(hi);
            w.t.push(t);
        }
        w
    }
}

/// Pixel → cell maps of the base view: the whole image squashed onto `g x g` cells.
fn base_maps(layout: &ImageLayout) -> (AxisMap, AxisMap) {
    let g = layout.grid_side as usize;
    let (h, w) = (layout.original.0 as f64, layout.original.1 as f64);
    let x = AxisMap {
        cells_per_px: g as f64 / w,
        offset: 0.0,
        cells: g,
    };
    let y = AxisMap {
        cells_per_px: g as f64 / h,
        offset: 0.0,
        cells: g,
    };
    (x, y)
}

/// Pixel → cell maps of the unpadded high-resolution map: the inverse of the anyres resize, pad
/// and crop, the same transform `ImageLayout::tokens` uses for the high-res rectangles.
fn highres_maps(layout: &ImageLayout) -> (AxisMap, AxisMap) {
    let patch = layout.tile_px as f64 / layout.grid_side as f64;
    let (hp, wp) = layout.unpadded();
    let axis = |resized: u32, original: u32, pad: u32, kept_start: u32, cells: u32| AxisMap {
        cells_per_px: resized as f64 / (original as f64 * patch),
        offset: pad as f64 / patch - kept_start as f64,
        cells: cells as usize,
    };
    let x = axis(
        layout.resized.1,
        layout.original.1,
        layout.pad.1,
        layout.kept_cols.0,
        wp,
    );
    let y = axis(
        layout.resized.0,
        layout.original.0,
        layout.pad.0,
        layout.kept_rows.0,
        hp,
    );
    (x, y)
}

/// Spread a dense `rows x cols` grid over the pixels of `out` (separable: rows first), writing
/// the value, or with `max_blend` keeping the larger of it and what `out` already holds.
fn render_grid(
    grid: &[f32],
    cols: usize,
    (xw, yw): (&AxisWeights, &AxisWeights),
    out: &mut [f32],
    max_blend: bool,
) {
    let width = xw.lo.len();
    let rows = grid.len().checked_div(cols).unwrap_or(0);
    if width == 0 || rows == 0 {
        return;
    }
    let mut horiz = vec![0.0f32; rows * width];
    for (r, line) in horiz.chunks_exact_mut(width).enumerate() {
        let cells = &grid[r * cols..(r + 1) * cols];
        for (x, o) in line.iter_mut().enumerate() {
            let (a, b) = (cells[xw.lo[x]], cells[xw.hi[x]]);
            // `a + (b - a) * t` keeps equal neighbours exact, so flat regions stay flat.
            *o = a + (b - a) * xw.t[x];
        }
    }
    for (y, line) in out.chunks_exact_mut(width).enumerate() {
        let a = &horiz[yw.lo[y] * width..(yw.lo[y] + 1) * width];
        let b = &horiz[yw.hi[y] * width..(yw.hi[y] + 1) * width];
        let t = yw.t[y];
        let lerp = line.iter_mut().zip(a).zip(b);
        if max_blend {
            lerp.for_each(|((o, &a), &b)| *o = o.max(a + (b - a) * t));
        } else {
            lerp.for_each(|((o, &a), &b)| *o = a + (b - a) * t);
        }
    }
}

/// Spread one view's grid over the original image through its pixel → cell maps.
fn render_view(
    layout: &ImageLayout,
    grid: &[f32],
    (xm, ym): (AxisMap, AxisMap),
    up: Upsample,
    out: &mut [f32],
    max_blend: bool,
) {
    let (h, w) = layout.original;
    let weights = (&xm.weights(w, up), &ym.weights(h, up));
    render_grid(grid, xm.cells, weights, out, max_blend);
}

/// Per-pixel activation field of one image from sparse `(image-token index, value)` pairs.
///
/// Indices count from the first image token (0 = first base cell); newline tokens and indices past
/// the end are ignored. Pixels get 0 where no token is active.
pub fn activation_field(
    layout: &ImageLayout,
    acts: &[(u32, f32)],
    source: Source,
    upsample: Upsample,
) -> ActivationField {
    let (height, width) = layout.original;
    let (base, high) = token_grid_maps(layout, acts);
    let (hp, wp) = layout.unpadded();
    let has_high = hp > 0 && wp > 0;
    let mut values = vec![0.0f32; width as usize * height as usize];
    if matches!(source, Source::Base | Source::Combined) {
        render_view(
            layout,
            &base,
            base_maps(layout),
            upsample,
            &mut values,
            false,
        );
    }
    if has_high && matches!(source, Source::HighRes | Source::Combined) {
        let blend = source == Source::Combined;
        render_view(
            layout,
            &high,
            highres_maps(layout),
            upsample,
            &mut values,
            blend,
        );
    }
    ActivationField {
        width,
        height,
        values,
    }
}

/// Half-open source ranges, each at least one element, that cover `src` in `dst` parts.
fn box_ranges(src: usize, dst: usize) -> Vec<(usize, usize)> {
    (0..dst)
        .map(|i| {
            let start = (i * src / dst).min(src - 1);
            let end = ((i + 1) * src / dst).clamp(start + 1, src);
            (start, end)
        })
        .collect()
}

impl ActivationField {
    /// The largest value (NaN ignored), or 0 for an empty field.
    pub fn max(&self) -> f32 {
        let m = self
            .values
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        if m == f32::NEG_INFINITY { 0.0 } else { m }
    }

    /// One flag per pixel: value strictly above `threshold`.
    pub fn binarize(&self, threshold: f32) -> Vec<bool> {
        self.values.iter().map(|&v| v > threshold).collect()
    }

    /// Area-average resample to `w x h` (for terminal previews); enlarging repeats pixels.
    pub fn downscale(&self, w: u32, h: u32) -> ActivationField {
        let (sw, sh) = (self.width as usize, self.height as usize);
        let (dw, dh) = (w as usize, h as usize);
        let mut values = vec![0.0f32; dw * dh];
        if sw == 0 || sh == 0 || dw == 0 || dh == 0 || self.values.len() < sw * sh {
            return ActivationField {
                width: w,
                height: h,
                values,
            };
        }
        let (xr, yr) = (box_ranges(sw, dw), box_ranges(sh, dh));
        let mut acc = vec![0.0f64; sw];
        for (oy, &(y0, y1)) in yr.iter().enumerate() {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for row in self.values[y0 * sw..y1 * sw].chunks_exact(sw) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v as f64;
                }
            }
            let rows = (y1 - y0) as f64;
            for (ox, &(x0, x1)) in xr.iter().enumerate() {
                let sum: f64 = acc[x0..x1].iter().sum();
                values[oy * dw + ox] = (sum / (rows * (x1 - x0) as f64)) as f32;
            }
        }
        ActivationField {
            width: w,
            height: h,
            values,
        }
    }
}

/// Binary mask of a field under `rule`, one flag per pixel (for IOU scoring).
pub fn binary_mask(field: &ActivationField, rule: MaskRule) -> Vec<bool> {
    match rule {
        MaskRule::AnyPositive => field.binarize(0.0),
        MaskRule::Absolute(t) => field.binarize(t),
        MaskRule::FractionOfMax(f) => {
            let max = field.max();
            if max <= 0.0 {
                return vec![false; field.values.len()];
            }
            let t = f * max;
            field.values.iter().map(|&v| v > 0.0 && v >= t).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::anyres::TokenKind;

    const PINS: [(u32, u32); 5] = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

    fn layout_wh(w: u32, h: u32) -> ImageLayout {
        ImageLayout::new((h, w), &PINS, 336, 14).unwrap()
    }

    fn at(f: &ActivationField, x: u32, y: u32) -> f32 {
        f.values[(y * f.width + x) as usize]
    }

    /// Continuous base-grid coordinate of a pixel centre.
    fn base_uv(l: &ImageLayout, x: u32, y: u32) -> (f64, f64) {
        let g = l.grid_side as f64;
        (
            (x as f64 + 0.5) * g / l.original.1 as f64,
            (y as f64 + 0.5) * g / l.original.0 as f64,
        )
    }

    #[test]
    fn single_base_cell_lights_its_rect() {
        let l = layout_wh(640, 480);
        let (r, c) = (5u32, 7u32);
        let rect = l.tokens()[(r * 24 + c) as usize].rect.unwrap();
        let acts = [(r * 24 + c, 2.0f32)];
        let bil = activation_field(&l, &acts, Source::Base, Upsample::Bilinear);
        let near = activation_field(&l, &acts, Source::Base, Upsample::Nearest);
        assert_eq!(
            (bil.width, bil.height, bil.values.len()),
            (640, 480, 640 * 480)
        );
        let (cx, cy) = (
            ((rect.x0 + rect.x1) / 2.0) as u32,
            ((rect.y0 + rect.y1) / 2.0) as u32,
        );
        assert!(at(&bil, cx, cy) > 1.8, "{}", at(&bil, cx, cy));
        assert_eq!(at(&near, cx, cy), 2.0);
        for (x, y) in [(0, 0), (639, 479), (cx + 60, cy), (cx, cy + 60)] {
            assert_eq!(
                (at(&bil, x, y), at(&near, x, y)),
                (0.0, 0.0),
                "pixel {x},{y}"
            );
        }
        for y in 0..480 {
            for x in 0..640 {
                let (u, v) = base_uv(&l, x, y);
                let inside = (x as f32 + 0.5) >= rect.x0
                    && (x as f32 + 0.5) < rect.x1
                    && (y as f32 + 0.5) >= rect.y0
                    && (y as f32 + 0.5) < rect.y1;
                assert_eq!(at(&near, x, y) > 0.0, inside, "nearest at {x},{y}");
                // Bilinear reaches exactly one cell pitch beyond the cell centre, no further.
                let near_centre = (u - 7.5).abs() < 1.0 && (v - 5.5).abs() < 1.0;
                if !near_centre {
                    assert_eq!(at(&bil, x, y), 0.0, "bilinear at {x},{y}");
                }
            }
        }
        assert_eq!(bil.max(), bil.values.iter().copied().fold(0.0, f32::max));
        assert!(bil.max() <= 2.0);
    }

    #[test]
    fn nearest_and_bilinear_differ_only_near_cell_borders() {
        let l = layout_wh(500, 375);
        // A 3x3 block of equal cells: rows 10..13, columns 4..7.
        let acts: Vec<(u32, f32)> = (10..13)
            .flat_map(|r| (4..7).map(move |c| (r * 24 + c, 1.5f32)))
            .collect();
        let bil = activation_field(&l, &acts, Source::Base, Upsample::Bilinear);
        let near = activation_field(&l, &acts, Source::Base, Upsample::Nearest);
        let within =
            |u: f64, v: f64, m: f64| u > 4.0 - m && u < 7.0 + m && v > 10.0 - m && v < 13.0 + m;
        let mut differing = 0;
        for y in 0..375 {
            for x in 0..500 {
                let (u, v) = base_uv(&l, x, y);
                let (b, n) = (at(&bil, x, y), at(&near, x, y));
                if b != n {
                    differing += 1;
                    assert!(
                        within(u, v, 0.5) && !within(u, v, -0.5),
                        "differs away from a border at {x},{y}: {b} vs {n}"
                    );
                }
                if within(u, v, -0.5) {
                    assert_eq!((b, n), (1.5, 1.5), "interior {x},{y}");
                }
            }
        }
        assert!(differing > 1000, "only {differing} pixels differ");
    }

    #[test]
    fn flat_grid_gives_flat_field() {
        let l = layout_wh(123, 457);
        let acts: Vec<(u32, f32)> = (0..l.num_image_tokens() as u32)
            .map(|i| (i, 0.75))
            .collect();
        for source in [Source::Base, Source::HighRes, Source::Combined] {
            let f = activation_field(&l, &acts, source, Upsample::Bilinear);
            assert!(f.values.iter().all(|&v| v == 0.75), "{source:?}");
        }
    }

    #[test]
    fn combined_uses_highres_detail() {
        let l = layout_wh(672, 336);
        assert_eq!(
            (l.best, l.unpadded(), l.pad),
            ((336, 672), (24, 48), (0, 0))
        );
        let (row, col) = (5u32, 30u32);
        let idx = 576 + row * 49 + col;
        let tok = l.tokens()[idx as usize];
        assert_eq!((tok.kind, tok.row, tok.col), (TokenKind::HighRes, 5, 30));
        let rect = tok.rect.unwrap();
        assert_eq!(
            (rect.x0, rect.x1, rect.y0, rect.y1),
            (420.0, 434.0, 70.0, 84.0)
        );
        let acts = [(idx, 1.0f32)];
        let base = activation_field(&l, &acts, Source::Base, Upsample::Nearest);
        assert!(base.values.iter().all(|&v| v == 0.0));
        for source in [Source::HighRes, Source::Combined] {
            let f = activation_field(&l, &acts, source, Upsample::Nearest);
            for y in 0..336 {
                for x in 0..672 {
                    let inside = (420..434).contains(&x) && (70..84).contains(&y);
                    assert_eq!(at(&f, x, y), if inside { 1.0 } else { 0.0 }, "{x},{y}");
                }
            }
            let b = activation_field(&l, &acts, source, Upsample::Bilinear);
            assert!(at(&b, 426, 76) > 0.9 && at(&b, 427, 77) > 0.9);
            // Bilinear spreads less than one cell (14 px) from the cell centre (427, 77).
            for y in 0..336u32 {
                for x in 0..672u32 {
                    let (dx, dy) = (x as f32 + 0.5 - 427.0, y as f32 + 0.5 - 77.0);
                    if dx.abs() >= 14.0 || dy.abs() >= 14.0 {
                        assert_eq!(at(&b, x, y), 0.0, "{x},{y}");
                    }
                }
            }
        }
        // Max blend: the base cell under the same area at 0.5, the high-res token at 1.0.
        let base_idx = (77 * 24 / 336) * 24 + 427 * 24 / 672;
        let both = [(idx, 1.0f32), (base_idx, 0.5)];
        let f = activation_field(&l, &both, Source::Combined, Upsample::Nearest);
        let brect = l.tokens()[base_idx as usize].rect.unwrap();
        assert_eq!(at(&f, 427, 77), 1.0);
        assert_eq!(at(&f, brect.x1 as u32 - 1, brect.y1 as u32 - 1), 0.5);
        assert_eq!(at(&f, brect.x1 as u32 + 1, brect.y0 as u32), 0.0);
    }

    #[test]
    fn axis_maps_agree_with_token_rects() {
        for (w, h) in [
            (640, 480),
            (1000, 331),
            (123, 457),
            (176, 55),
            (300, 300),
            (1000, 1000),
        ] {
            let l = layout_wh(w, h);
            let (bx, by) = base_maps(&l);
            let (hx, hy) = highres_maps(&l);
            for t in l.tokens() {
                let (mx, my) = match t.kind {
                    TokenKind::Base => (bx, by),
                    TokenKind::HighRes => (hx, hy),
                    TokenKind::Newline => continue,
                };
                let r = t.rect.unwrap();
                let cell = |m: AxisMap, px: f32| px as f64 * m.cells_per_px + m.offset;
                let check = |m: AxisMap, lo: f32, hi: f32, idx: u16, full: f32| {
                    let (a, b) = (cell(m, lo), cell(m, hi));
                    let i = idx as f64;
                    // An edge clamped to the image border lies inside the cell, not on it.
                    if lo > 0.0 {
                        assert!((a - i).abs() < 1e-3, "{w}x{h} {t:?}: {a}");
                    } else {
                        assert!(a > i - 1e-3 && a < i + 1.0, "{w}x{h} {t:?}: {a}");
                    }
                    if hi < full {
                        assert!((b - i - 1.0).abs() < 1e-3, "{w}x{h} {t:?}: {b}");
                    } else {
                        assert!(b > i && b < i + 1.0 + 1e-3, "{w}x{h} {t:?}: {b}");
                    }
                };
                check(mx, r.x0, r.x1, t.col, w as f32);
                check(my, r.y0, r.y1, t.row, h as f32);
            }
        }
    }

    #[test]
    fn no_highres_rows_falls_back_to_base() {
        let l = ImageLayout::new((10, 5000), &PINS, 336, 14).unwrap();
        assert_eq!(l.unpadded().0, 0);
        let acts = [(3u32, 1.0f32), (100, 2.0)];
        let hi = activation_field(&l, &acts, Source::HighRes, Upsample::Bilinear);
        assert_eq!(hi.values.len(), 50_000);
        assert!(hi.values.iter().all(|&v| v == 0.0));
        let base = activation_field(&l, &acts, Source::Base, Upsample::Bilinear);
        let comb = activation_field(&l, &acts, Source::Combined, Upsample::Bilinear);
        assert_eq!(base, comb);
        assert!(comb.max() > 0.0);
    }

    #[test]
    fn binarize_rules() {
        let f = ActivationField {
            width: 6,
            height: 1,
            values: vec![0.0, 0.1, 0.5, 1.0, -0.2, f32::NAN],
        };
        let flags = |v: Vec<bool>| v.iter().map(|&b| b as u8).collect::<Vec<_>>();
        assert_eq!(f.max(), 1.0);
        assert_eq!(flags(f.binarize(0.5)), [0, 0, 0, 1, 0, 0]);
        assert_eq!(
            flags(binary_mask(&f, MaskRule::AnyPositive)),
            [0, 1, 1, 1, 0, 0]
        );
        assert_eq!(
            flags(binary_mask(&f, MaskRule::FractionOfMax(0.5))),
            [0, 0, 1, 1, 0, 0]
        );
        assert_eq!(
            flags(binary_mask(&f, MaskRule::FractionOfMax(0.0))),
            [0, 1, 1, 1, 0, 0]
        );
        assert_eq!(
            flags(binary_mask(&f, MaskRule::FractionOfMax(1.0))),
            [0, 0, 0, 1, 0, 0]
        );
        assert_eq!(
            flags(binary_mask(&f, MaskRule::Absolute(0.05))),
            [0, 1, 1, 1, 0, 0]
        );
        assert_eq!(
            flags(binary_mask(&f, MaskRule::Absolute(-0.5))),
            [1, 1, 1, 1, 1, 0]
        );
        let dark = ActivationField {
            width: 2,
            height: 1,
            values: vec![0.0, -1.0],
        };
        assert_eq!(dark.max(), 0.0);
        assert_eq!(
            binary_mask(&dark, MaskRule::FractionOfMax(0.0)),
            [false, false]
        );
        let empty = ActivationField {
            width: 0,
            height: 0,
            values: vec![],
        };
        assert_eq!(empty.max(), 0.0);
        assert!(binary_mask(&empty, MaskRule::AnyPositive).is_empty());
    }

    #[test]
    fn downscale_averages_boxes() {
        let f = ActivationField {
            width: 4,
            height: 2,
            values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        };
        assert_eq!(f.downscale(2, 1).values, [3.5, 5.5]);
        assert_eq!(f.downscale(1, 1).values, [4.5]);
        assert_eq!(f.downscale(4, 2), f);
        // Uneven split 4 -> 3 columns: [0,1) [1,2) [2,4).
        assert_eq!(f.downscale(3, 1).values, [3.0, 4.0, 5.5]);
        // Enlarging repeats pixels.
        let up = f.downscale(8, 2);
        assert_eq!(&up.values[..8], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]);
        let none = f.downscale(0, 3);
        assert_eq!((none.width, none.height, none.values.len()), (0, 3, 0));
        // Total mass is kept when the split is even.
        let l = layout_wh(640, 480);
        let big = activation_field(
            &l,
            &[(300, 1.0), (700, 2.0)],
            Source::Combined,
            Upsample::Bilinear,
        );
        let small = big.downscale(80, 60);
        let mean = |f: &ActivationField| {
            f.values.iter().map(|&v| v as f64).sum::<f64>() / f.values.len() as f64
        };
        assert!(
            (mean(&big) - mean(&small)).abs() < 1e-6,
            "{} vs {}",
            mean(&big),
            mean(&small)
        );
    }
}
