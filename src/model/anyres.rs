//! Anyres tiling and the geometry of every image token (the one place it is computed).
//!
//! This reproduces Hugging Face transformers' `LlavaNextImageProcessor` (best canvas, aspect-fit
//! resize, centre padding, tiling) and `LlavaNextModel.pack_image_features` (stitched map,
//! unpadding, one newline token per row). Sizes are `(height, width)` unless named otherwise.
//!
//! The image-feature sequence of one image is: the `g x g` base view row-major (no newlines), then
//! the unpadded stitched high-resolution map row-major with a newline token after every row.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// Pick the pinpoint canvas `(h, w)` for an image of `(H, W)`, exactly as transformers does.
///
/// Maximises the effective resolution `min(int(W*s) * int(H*s), W*H)` with `s` the fit scale,
/// breaks ties by the smaller wasted area, and keeps the earlier candidate on a full tie. The
/// arithmetic is f64 like Python's. Returns `(0, 0)` when no candidate scores above zero (empty
/// list or a zero-sized image), where transformers returns `None`.
pub fn select_best_resolution(original_hw: (u32, u32), pinpoints: &[(u32, u32)]) -> (u32, u32) {
    let (oh, ow) = (original_hw.0 as f64, original_hw.1 as f64);
    let original_area = original_hw.0 as u64 * original_hw.1 as u64;
    let mut best = (0, 0);
    let mut max_effective = 0u64;
    let mut min_wasted = i64::MAX;
    for &(h, w) in pinpoints {
        let scale = (w as f64 / ow).min(h as f64 / oh);
        let dw = (ow * scale) as u64;
        let dh = (oh * scale) as u64;
        let effective = (dw * dh).min(original_area);
        let wasted = (w as u64 * h as u64) as i64 - effective as i64;
        if effective > max_effective || (effective == max_effective && wasted < min_wasted) {
            max_effective = effective;
            min_wasted = wasted;
            best = (h, w);
        }
    }
    best
}

/// Aspect-preserving size that fits `original` inside `target` (transformers'
/// `get_patch_output_size`: the long side fills the target, the other is rounded up).
fn fit_size(original_hw: (u32, u32), target_hw: (u32, u32)) -> (u32, u32) {
    let (oh, ow) = (original_hw.0 as f64, original_hw.1 as f64);
    let (th, tw) = target_hw;
    let scale_w = tw as f64 / ow;
    let scale_h = th as f64 / oh;
    if scale_w < scale_h {
        (((oh * scale_w).ceil() as u32).min(th), tw)
    } else {
        (th, ((ow * scale_h).ceil() as u32).min(tw))
    }
}

/// Pixel rectangle in the ORIGINAL image, half-open, f32 pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelRect {
    /// Left edge (inclusive).
    pub x0: f32,
    /// Top edge (inclusive).
    pub y0: f32,
    /// Right edge (exclusive).
    pub x1: f32,
    /// Bottom edge (exclusive).
    pub y1: f32,
}

impl PixelRect {
    /// Area in square pixels (zero for an empty rectangle).
    pub fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }
}

/// What an image token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    /// A cell of the squashed low-resolution base view.
    Base,
    /// A cell of the unpadded stitched high-resolution map.
    HighRes,
    /// The learned end-of-row vector after each high-resolution row.
    Newline,
}

/// One image token with its position in the grids and the image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageToken {
    /// What the token stands for.
    pub kind: TokenKind,
    /// 0 = base view; 1.. = high-res tile row-major (for a newline, the tile of its row's last cell).
    pub tile: u16,
    /// Base: row in the base grid. HighRes/Newline: row in the unpadded map.
    pub row: u16,
    /// Base: column in the base grid. HighRes: column in the unpadded map. Newline: unpadded width.
    pub col: u16,
    /// Pixels of the original image the cell covers; `None` for newline tokens.
    pub rect: Option<PixelRect>,
}

/// Full anyres geometry of one image: canvas, tiles, padding and unpadding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageLayout {
    /// (H, W) of the original image.
    pub original: (u32, u32),
    /// Chosen pinpoint canvas (h, w).
    pub best: (u32, u32),
    /// (nph, npw) = best / tile_px.
    pub tiles: (u32, u32),
    /// Side of one view in pixels (336 for CLIP-L/336).
    pub tile_px: u32,
    /// Patches per side of one view (24).
    pub grid_side: u32,
    /// Aspect-fit size inside `best` before padding.
    pub resized: (u32, u32),
    /// (top, left) zero padding in the canvas; the remainder goes bottom/right.
    pub pad: (u32, u32),
    /// Half-open rows of the stitched (nph*g) x (npw*g) map kept by unpadding.
    pub kept_rows: (u32, u32),
    /// Half-open columns of the stitched map kept by unpadding.
    pub kept_cols: (u32, u32),
}

/// Half-open range kept by the model's `unpad_image` along the padded axis of length `current`.
///
/// The image spans `original * other_current / other_original` cells of that axis. Since 4.47,
/// transformers computes it as `int(round(original * (other_current / other_original), 7))`; the
/// rounding makes it the exact integer quotient computed here (a test checks the two agree).
/// transformers 4.45.2's model used plain `int(float)`, which for about 1 in 70 000 sizes (e.g.
/// H x W = 55 x 176) lands one below and shifts the crop, so its model and processor disagreed on
/// the token count; the later formula is the consistent one.
fn kept_range(original: u64, other_current: u64, other_original: u64, current: u64) -> (u32, u32) {
    let new_len = (original * other_current / other_original).min(current);
    let padding = (current - new_len) / 2;
    (padding as u32, (current - padding) as u32)
}

impl ImageLayout {
    /// Geometry of an `(H, W)` image for the given pinpoints, view size and patch size.
    pub fn new(
        original_hw: (u32, u32),
        pinpoints: &[(u32, u32)],
        tile_px: u32,
        patch_px: u32,
    ) -> Result<Self> {
        let (oh, ow) = original_hw;
        if oh == 0 || ow == 0 {
            bail!("image has zero size ({ow}x{oh} pixels); nothing to tile");
        }
        if tile_px == 0 || patch_px == 0 || !tile_px.is_multiple_of(patch_px) {
            bail!(
                "view size {tile_px} px is not a positive multiple of the patch size {patch_px} px; \
                 check crop_size in preprocessor_config.json and patch_size in config.json"
            );
        }
        if pinpoints.is_empty() {
            bail!("image_grid_pinpoints is empty; the model config must list candidate canvases");
        }
        if let Some(&(h, w)) = pinpoints
            .iter()
            .find(|&&(h, w)| h == 0 || w == 0 || h % tile_px != 0 || w % tile_px != 0)
        {
            bail!(
                "pinpoint [{h}, {w}] is not a positive multiple of the {tile_px} px view size; \
                 fix image_grid_pinpoints in config.json"
            );
        }
        let grid_side = tile_px / patch_px;
        let best = select_best_resolution(original_hw, pinpoints);
        let tiles = (best.0 / tile_px, best.1 / tile_px);
        let resized = fit_size(original_hw, best);
        let pad = ((best.0 - resized.0) / 2, (best.1 - resized.1) / 2);
        let (hc, wc) = ((tiles.0 * grid_side) as u64, (tiles.1 * grid_side) as u64);
        // Same float comparison as the model; equal ratios compare equal in f64 too.
        let (kept_rows, kept_cols) = if ow as f64 / oh as f64 > wc as f64 / hc as f64 {
            (kept_range(oh as u64, wc, ow as u64, hc), (0, wc as u32))
        } else {
            ((0, hc as u32), kept_range(ow as u64, hc, oh as u64, wc))
        };
        Ok(Self {
            original: original_hw,
            best,
            tiles,
            tile_px,
            grid_side,
            resized,
            pad,
            kept_rows,
            kept_cols,
        })
    }

    /// Number of views fed to the vision tower: the base view plus every tile.
    pub fn num_views(&self) -> usize {
        1 + (self.tiles.0 * self.tiles.1) as usize
    }

    /// Tokens of the base view (`grid_side^2`).
    pub fn base_tokens(&self) -> usize {
        (self.grid_side * self.grid_side) as usize
    }

    /// (h', w') of the unpadded high-resolution map.
    pub fn unpadded(&self) -> (u32, u32) {
        (
            self.kept_rows.1 - self.kept_rows.0,
            self.kept_cols.1 - self.kept_cols.0,
        )
    }

    /// Image tokens in the language-model sequence: base + h' * (w' + 1).
    pub fn num_image_tokens(&self) -> usize {
        let (h, w) = self.unpadded();
        self.base_tokens() + h as usize * (w as usize + 1)
    }

    /// Size of the stitched high-resolution map before unpadding, in cells.
    pub fn stitched(&self) -> (u32, u32) {
        (self.tiles.0 * self.grid_side, self.tiles.1 * self.grid_side)
    }

    /// Tile index (1-based, row-major) holding stitched-map cell (R, C).
    fn tile_of(&self, stitched_row: u32, stitched_col: u32) -> u16 {
        let g = self.grid_side;
        (1 + (stitched_row / g) * self.tiles.1 + stitched_col / g) as u16
    }

    /// Original-image rectangle of stitched-map cell (R, C), undoing the resize and padding.
    fn highres_rect(&self, stitched_row: u32, stitched_col: u32) -> PixelRect {
        let p = self.tile_px as f64 / self.grid_side as f64;
        let (oh, ow) = (self.original.0 as f64, self.original.1 as f64);
        let map = |canvas: f64, pad: u32, resized: u32, orig: f64| {
            ((canvas - pad as f64) * orig / resized as f64).clamp(0.0, orig) as f32
        };
        let (r, c) = (stitched_row as f64, stitched_col as f64);
        PixelRect {
            x0: map(c * p, self.pad.1, self.resized.1, ow),
            x1: map((c + 1.0) * p, self.pad.1, self.resized.1, ow),
            y0: map(r * p, self.pad.0, self.resized.0, oh),
            y1: map((r + 1.0) * p, self.pad.0, self.resized.0, oh),
        }
    }

    /// Every image token in sequence order, `num_image_tokens()` long.
    pub fn tokens(&self) -> Vec<ImageToken> {
        let g = self.grid_side;
        let (oh, ow) = (self.original.0 as f64, self.original.1 as f64);
        let mut out = Vec::with_capacity(self.num_image_tokens());
        for r in 0..g {
            for c in 0..g {
                let (gf, rf, cf) = (g as f64, r as f64, c as f64);
                out.push(ImageToken {
                    kind: TokenKind::Base,
                    tile: 0,
                    row: r as u16,
                    col: c as u16,
                    rect: Some(PixelRect {
                        x0: (cf * ow / gf) as f32,
                        y0: (rf * oh / gf) as f32,
                        x1: ((cf + 1.0) * ow / gf) as f32,
                        y1: ((rf + 1.0) * oh / gf) as f32,
                    }),
                });
            }
        }
        let (c0, c1) = self.kept_cols;
        let width = c1 - c0;
        // An empty kept row (extremely tall images) still has its newline; give it a real tile.
        let last_col = if c1 > c0 {
            c1 - 1
        } else {
            c0.min(self.stitched().1 - 1)
        };
        for (row, sr) in (self.kept_rows.0..self.kept_rows.1).enumerate() {
            for (col, sc) in (c0..c1).enumerate() {
                out.push(ImageToken {
                    kind: TokenKind::HighRes,
                    tile: self.tile_of(sr, sc),
                    row: row as u16,
                    col: col as u16,
                    rect: Some(self.highres_rect(sr, sc)),
                });
            }
            out.push(ImageToken {
                kind: TokenKind::Newline,
                tile: self.tile_of(sr, last_col),
                row: row as u16,
                col: width as u16,
                rect: None,
            });
        }
        out
    }
}

/// Scatter sparse per-token values into the dense base grid (`g*g`) and unpadded map (`h'*w'`).
///
/// Indices are positions within the image tokens (0 = first base token). Newline tokens and
/// indices past the end are ignored; a repeated index keeps its last value; unset cells are 0.
pub fn token_grid_maps(layout: &ImageLayout, values: &[(u32, f32)]) -> (Vec<f32>, Vec<f32>) {
    let base_n = layout.base_tokens();
    let (h, w) = layout.unpadded();
    let (h, w) = (h as usize, w as usize);
    let mut base = vec![0.0f32; base_n];
    let mut high = vec![0.0f32; h * w];
    for &(idx, v) in values {
        let idx = idx as usize;
        if idx < base_n {
            base[idx] = v;
            continue;
        }
        let q = idx - base_n;
        let (row, col) = (q / (w + 1), q % (w + 1));
        if row < h && col < w {
            high[row * w + col] = v;
        }
    }
    (base, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINS: [(u32, u32); 5] = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

    fn layout_wh(w: u32, h: u32) -> ImageLayout {
        ImageLayout::new((h, w), &PINS, 336, 14).unwrap()
    }

    #[test]
    fn worked_examples_from_spec() {
        let l = layout_wh(640, 480);
        assert_eq!(l.best, (672, 672));
        assert_eq!(l.stitched(), (48, 48));
        assert_eq!(l.unpadded(), (36, 48));
        assert_eq!(l.num_image_tokens(), 2340);

        let l = layout_wh(1000, 1000);
        assert_eq!(l.best, (672, 672));
        assert_eq!(l.unpadded(), (48, 48));
        assert_eq!(l.num_image_tokens(), 2928);

        let l = layout_wh(300, 300);
        assert_eq!(l.best, (336, 672));
        assert_eq!(l.stitched(), (24, 48));
        assert_eq!(l.unpadded(), (24, 24));
        assert_eq!(l.num_image_tokens(), 1176);
        assert_eq!(l.num_views(), 3);
    }

    #[test]
    fn more_token_counts() {
        // (W, H, best (h, w), unpadded (h', w'), tokens): values from the transformers formulas.
        let cases = [
            (336, 336, (336, 672), (24, 24), 1176),
            (672, 336, (336, 672), (24, 48), 1752),
            (336, 1008, (1008, 336), (72, 24), 2376),
            (500, 375, (672, 672), (36, 48), 2340),
            (1000, 300, (336, 1008), (22, 72), 2182),
            (300, 1000, (1008, 336), (72, 22), 2232),
            (1, 1, (336, 672), (24, 24), 1176),
        ];
        for (w, h, best, unpadded, n) in cases {
            let l = layout_wh(w, h);
            assert_eq!(l.best, best, "{w}x{h}");
            assert_eq!(l.unpadded(), unpadded, "{w}x{h}");
            assert_eq!(l.num_image_tokens(), n, "{w}x{h}");
            assert_eq!(l.tokens().len(), n, "{w}x{h}");
        }
    }

    #[test]
    fn random_sizes_match_python_reference() {
        // (H, W, tokens) from a Python transcription of transformers' select_best_resolution and
        // unpad_image (int(round(x, 7))), seeded random sizes.
        let cases = [
            (1346, 637, 1826),
            (1637, 2686, 2046),
            (217, 316, 1416),
            (2214, 405, 1656),
            (1517, 2407, 2046),
            (257, 2098, 1160),
            (899, 173, 1656),
            (372, 1796, 1598),
            (1732, 306, 1512),
            (1005, 391, 2126),
            (2277, 1758, 2448),
            (262, 2336, 1160),
            (527, 934, 1948),
            (2603, 2589, 2928),
            (2407, 273, 1224),
            (2383, 2418, 2928),
        ];
        for (h, w, n) in cases {
            let l = ImageLayout::new((h, w), &PINS, 336, 14).unwrap();
            assert_eq!(l.num_image_tokens(), n, "H x W = {h} x {w}");
        }
    }

    #[test]
    fn rounding_edge_case_follows_current_model() {
        // H x W = 55 x 176: transformers 4.45.2's int(float) kept 14 rows (1262 tokens);
        // the exact quotient, used by later releases and by every processor, keeps 16.
        let l = ImageLayout::new((55, 176), &PINS, 336, 14).unwrap();
        assert_eq!(l.unpadded(), (16, 48));
        assert_eq!(l.num_image_tokens(), 1360);
    }

    #[test]
    fn unpad_matches_float_formula_with_round7() {
        // The model computes int(round(orig * (current / other), 7)) in f64.
        let round7 = |x: f64| ((x * 1e7).round() / 1e7) as u64;
        for h in (1..=700u32).step_by(3) {
            for w in (1..=700u32).step_by(7) {
                let l = ImageLayout::new((h, w), &PINS, 336, 14).unwrap();
                let (hc, wc) = l.stitched();
                let (hf, wf, hcf, wcf) = (h as f64, w as f64, hc as f64, wc as f64);
                let expected = if wf / hf > wcf / hcf {
                    let pad = (hc as u64 - round7(hf * (wcf / wf))) / 2;
                    ((pad as u32, hc - pad as u32), (0, wc))
                } else {
                    let pad = (wc as u64 - round7(wf * (hcf / hf))) / 2;
                    ((0, hc), (pad as u32, wc - pad as u32))
                };
                assert_eq!((l.kept_rows, l.kept_cols), expected, "{h}x{w}");
            }
        }
    }

    #[test]
    fn select_best_resolution_ties_and_fit() {
        assert_eq!(select_best_resolution((300, 300), &PINS), (336, 672));
        assert_eq!(select_best_resolution((480, 640), &PINS), (672, 672));
        assert_eq!(select_best_resolution((100, 1000), &PINS), (336, 1008));
        assert_eq!(select_best_resolution((1000, 100), &PINS), (1008, 336));
        assert_eq!(select_best_resolution((10, 10), &[]), (0, 0));
        // Reordering the tie changes the winner: the first candidate wins a full tie.
        assert_eq!(
            select_best_resolution((300, 300), &[(672, 336), (336, 672)]),
            (672, 336)
        );
    }

    #[test]
    fn resize_and_pad_geometry() {
        let l = layout_wh(640, 480);
        assert_eq!(l.resized, (504, 672));
        assert_eq!(l.pad, (84, 0));
        assert_eq!(l.kept_rows, (6, 42));
        // Odd remainder: floor on top, remainder at the bottom.
        let l = layout_wh(1000, 333);
        assert_eq!(l.best, (336, 1008));
        assert_eq!(l.resized, (336, 1008));
        let l = layout_wh(1000, 330);
        assert_eq!(l.resized, (333, 1008));
        assert_eq!(l.pad, (1, 0));
    }

    #[test]
    fn layout_errors() {
        assert!(ImageLayout::new((0, 10), &PINS, 336, 14).is_err());
        assert!(ImageLayout::new((10, 0), &PINS, 336, 14).is_err());
        assert!(ImageLayout::new((10, 10), &PINS, 336, 15).is_err());
        assert!(ImageLayout::new((10, 10), &PINS, 336, 0).is_err());
        assert!(ImageLayout::new((10, 10), &[], 336, 14).is_err());
        let err = ImageLayout::new((10, 10), &[(336, 500)], 336, 14).unwrap_err();
        assert!(err.to_string().contains("[336, 500]"), "{err}");
    }

    fn sizes() -> Vec<(u32, u32)> {
        vec![
            (640, 480),
            (1000, 1000),
            (300, 300),
            (336, 336),
            (672, 336),
            (336, 1008),
            (500, 375),
            (1000, 331),
            (123, 457),
            (176, 55),
        ]
    }

    #[test]
    fn every_rect_lies_in_the_image() {
        for (w, h) in sizes() {
            let l = layout_wh(w, h);
            for t in l.tokens() {
                match (t.kind, t.rect) {
                    (TokenKind::Newline, r) => assert!(r.is_none()),
                    (_, Some(r)) => {
                        assert!(0.0 <= r.x0 && r.x0 <= r.x1 && r.x1 <= w as f32, "{t:?}");
                        assert!(0.0 <= r.y0 && r.y0 <= r.y1 && r.y1 <= h as f32, "{t:?}");
                        if t.kind == TokenKind::HighRes {
                            assert!(r.area() > 0.0, "kept cell inside padding: {w}x{h} {t:?}");
                        }
                    }
                    (_, None) => panic!("missing rect {t:?}"),
                }
            }
        }
    }

    #[test]
    fn base_rects_tile_the_image() {
        for (w, h) in sizes() {
            let l = layout_wh(w, h);
            let g = l.grid_side as usize;
            let toks = l.tokens();
            let base: Vec<PixelRect> = toks[..g * g].iter().map(|t| t.rect.unwrap()).collect();
            for r in 0..g {
                for c in 0..g {
                    let a = base[r * g + c];
                    assert_eq!(toks[r * g + c].kind, TokenKind::Base);
                    assert_eq!(
                        (toks[r * g + c].row, toks[r * g + c].col),
                        (r as u16, c as u16)
                    );
                    if c == 0 {
                        assert_eq!(a.x0, 0.0);
                    } else {
                        assert_eq!(a.x0, base[r * g + c - 1].x1);
                    }
                    if r == 0 {
                        assert_eq!(a.y0, 0.0);
                    } else {
                        assert_eq!(a.y0, base[(r - 1) * g + c].y1);
                    }
                    if c == g - 1 {
                        assert_eq!(a.x1, w as f32);
                    }
                    if r == g - 1 {
                        assert_eq!(a.y1, h as f32);
                    }
                }
            }
            let area: f64 = base.iter().map(|r| r.area() as f64).sum();
            assert!((area - (w * h) as f64).abs() < 1e-3 * (w * h) as f64);
        }
    }

    #[test]
    fn highres_rects_cover_the_image_when_padding_is_cell_aligned() {
        let l = layout_wh(640, 480);
        let area: f64 = l
            .tokens()
            .iter()
            .filter_map(|t| t.rect)
            .skip(576)
            .map(|r| r.area() as f64)
            .sum();
        assert!((area - 640.0 * 480.0).abs() < 1.0, "{area}");
    }

    #[test]
    fn newlines_and_tile_indices() {
        for (w, h) in sizes() {
            let l = layout_wh(w, h);
            let (hp, wp) = l.unpadded();
            let toks = l.tokens();
            let newlines: Vec<_> = toks
                .iter()
                .filter(|t| t.kind == TokenKind::Newline)
                .collect();
            assert_eq!(newlines.len(), hp as usize);
            for (i, t) in toks.iter().enumerate().skip(l.base_tokens()) {
                let q = i - l.base_tokens();
                let (row, col) = (
                    (q / (wp as usize + 1)) as u16,
                    (q % (wp as usize + 1)) as u16,
                );
                assert_eq!((t.row, t.col), (row, col), "{w}x{h} token {i}");
                assert_eq!(t.kind == TokenKind::Newline, col as u32 == wp);
                let sr = t.row as u32 + l.kept_rows.0;
                let sc = if t.kind == TokenKind::Newline {
                    l.kept_cols.1 - 1
                } else {
                    t.col as u32 + l.kept_cols.0
                };
                let g = l.grid_side;
                let tile = 1 + (sr / g) * l.tiles.1 + sc / g;
                assert_eq!(t.tile as u32, tile, "{w}x{h} {t:?}");
                assert!(t.tile >= 1 && (t.tile as usize) < l.num_views());
            }
        }
    }

    #[test]
    fn extreme_aspect_keeps_hf_counts() {
        // H x W = 10 x 5000: no high-res row survives unpadding, as in transformers.
        let l = ImageLayout::new((10, 5000), &PINS, 336, 14).unwrap();
        assert_eq!(l.unpadded().0, 0);
        assert_eq!(l.num_image_tokens(), 576);
        assert_eq!(l.tokens().len(), 576);
        // H x W = 5000 x 10: every row is only its newline.
        let l = ImageLayout::new((5000, 10), &PINS, 336, 14).unwrap();
        assert_eq!(l.unpadded(), (72, 0));
        assert_eq!(l.num_image_tokens(), 576 + 72);
        assert_eq!(l.tokens().len(), 576 + 72);
    }

    #[test]
    fn grid_maps_scatter() {
        let l = layout_wh(640, 480); // unpadded 36 x 48
        let (hp, wp) = l.unpadded();
        let vals = [
            (0u32, 1.0f32),
            (575, 2.0),
            (576, 3.0),                             // high-res (0, 0)
            (576 + 48, 9.0),                        // newline of row 0: ignored
            (576 + 49 + 5, 4.0),                    // high-res (1, 5)
            (l.num_image_tokens() as u32 - 2, 5.0), // last high-res cell
            (l.num_image_tokens() as u32 + 3, 7.0), // out of range: ignored
        ];
        let (base, high) = token_grid_maps(&l, &vals);
        assert_eq!(base.len(), 576);
        assert_eq!(high.len(), (hp * wp) as usize);
        assert_eq!((base[0], base[575]), (1.0, 2.0));
        assert_eq!(high[0], 3.0);
        assert_eq!(high[48 + 5], 4.0);
        assert_eq!(high[(hp * wp) as usize - 1], 5.0);
        assert_eq!(base.iter().sum::<f32>() + high.iter().sum::<f32>(), 15.0);
    }
}
