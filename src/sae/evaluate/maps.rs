//! Activation maps of one image at pixel resolution and their overlaps with labelled regions.
//!
//! Nearest upsampling gives each grid cell the pixels whose centres fall in its rectangle, so the
//! counts reduce to per-cell sums (summed-area tables). Bilinear upsampling interpolates between
//! cell centres with clamped edges (as Pillow's BILINEAR does) and is counted pixel by pixel,
//! only around the active cells since the map is zero elsewhere.

use anyhow::{Result, bail};

use super::{ImageTruth, MapGrid};
use crate::heatmap::Upsample;
use crate::model::anyres::{ImageLayout, TokenKind};

/// One image's grid geometry and its overlaps with the image's regions.
pub(super) struct ImageMaps {
    /// Grid cell of each image token, if the token belongs to the grid.
    pub of_token: Vec<Option<u32>>,
    /// `(row, col)` of each cell.
    cell_rc: Vec<(u32, u32)>,
    rows: usize,
    cols: usize,
    /// Pixels of each cell (nearest upsampling).
    area: Vec<u64>,
    /// `[region][cell]` pixels of the region inside the cell.
    overlap: Vec<Vec<u64>>,
    /// Pixels of each region.
    pub region_area: Vec<u64>,
    /// Per pixel column: left and right lattice column and the right one's weight.
    xw: Vec<(u32, u32, f32)>,
    /// Per pixel row: upper and lower lattice row and the lower one's weight.
    yw: Vec<(u32, u32, f32)>,
}

/// Pixels `[start, end)` of one axis whose centres lie in `[a, b)`, clamped to `0..len`.
fn pixel_span(a: f32, b: f32, len: u32) -> (usize, usize) {
    let lo = (a - 0.5).ceil().max(0.0) as usize;
    let hi = ((b - 0.5).ceil().max(0.0) as usize).min(len as usize);
    (lo.min(hi), hi)
}

/// Bilinear taps of every pixel centre along one axis, for cell centres at `first + i * pitch`.
fn taps(pixels: u32, cells: usize, first: f64, pitch: f64) -> Vec<(u32, u32, f32)> {
    let last = cells.saturating_sub(1) as f64;
    (0..pixels)
        .map(|p| {
            let u = ((p as f64 + 0.5 - first) / pitch).clamp(0.0, last);
            let lo = u.floor();
            let hi = (lo + 1.0).min(last);
            (lo as u32, hi as u32, (u - lo) as f32)
        })
        .collect()
}

impl ImageMaps {
    /// Number of grid cells.
    pub fn cells(&self) -> usize {
        self.cell_rc.len()
    }

    /// Geometry of `grid` over `layout`'s image and its overlaps with `truth`'s regions.
    pub fn new(layout: &ImageLayout, truth: &ImageTruth, grid: MapGrid) -> Result<Self> {
        let (w, h) = (truth.width, truth.height);
        if layout.original != (h, w) {
            bail!(
                "the layout is for {:?} (h, w) but the masks are {w}x{h}",
                layout.original
            );
        }
        let want = match grid {
            MapGrid::Base => TokenKind::Base,
            MapGrid::HighRes => TokenKind::HighRes,
            MapGrid::Auto => bail!("activation maps need a concrete grid (base or high-res)"),
        };
        let tokens = layout.tokens();
        let mut of_token = vec![None; tokens.len()];
        let (mut spans, mut cell_rc) = (Vec::new(), Vec::new());
        for (t, tok) in tokens.iter().enumerate() {
            if let (true, Some(r)) = (tok.kind == want, tok.rect) {
                of_token[t] = Some(spans.len() as u32);
                spans.push((pixel_span(r.x0, r.x1, w), pixel_span(r.y0, r.y1, h)));
                cell_rc.push((u32::from(tok.row), u32::from(tok.col)));
            }
        }
        // Cell centres in original pixels, from the same geometry the token rectangles use.
        let (ow, oh) = (f64::from(w), f64::from(h));
        let (rows, cols, x0, px, y0, py) = match grid {
            MapGrid::Base => {
                let g = f64::from(layout.grid_side);
                let s = layout.grid_side as usize;
                (s, s, 0.5 * ow / g, ow / g, 0.5 * oh / g, oh / g)
            }
            MapGrid::HighRes | MapGrid::Auto => {
                let p = f64::from(layout.tile_px) / f64::from(layout.grid_side);
                let sx = ow / f64::from(layout.resized.1);
                let sy = oh / f64::from(layout.resized.0);
                let (hh, ww) = layout.unpadded();
                let cx = (f64::from(layout.kept_cols.0) + 0.5) * p - f64::from(layout.pad.1);
                let cy = (f64::from(layout.kept_rows.0) + 0.5) * p - f64::from(layout.pad.0);
                (hh as usize, ww as usize, cx * sx, p * sx, cy * sy, p * sy)
            }
        };
        let area = spans
            .iter()
            .map(|((a, b), (c, d))| ((b - a) * (d - c)) as u64)
            .collect();
        let stride = w as usize + 1;
        let (mut overlap, mut region_area) = (Vec::new(), Vec::new());
        for (_, _, mask) in &truth.regions {
            // Summed-area table: sat[y][x] = pixels of the mask above and left of (x, y).
            let mut sat = vec![0u64; stride * (h as usize + 1)];
            for y in 0..h as usize {
                let mut row = 0u64;
                for x in 0..w as usize {
                    row += u64::from(mask[y * w as usize + x]);
                    sat[(y + 1) * stride + x + 1] = sat[y * stride + x + 1] + row;
                }
            }
            let count = |(a, b): (usize, usize), (c, d): (usize, usize)| {
                sat[d * stride + b] + sat[c * stride + a]
                    - sat[c * stride + b]
                    - sat[d * stride + a]
            };
            overlap.push(spans.iter().map(|&(sx, sy)| count(sx, sy)).collect());
            region_area.push(sat[h as usize * stride + w as usize]);
        }
        Ok(Self {
            of_token,
            cell_rc,
            rows,
            cols,
            area,
            overlap,
            region_area,
            xw: taps(w, cols, x0, px),
            yw: taps(h, rows, y0, py),
        })
    }

    /// `|S|` and `|S ∧ region|` per region for the map of `acts` (`(cell, value)`), where S is the
    /// set of pixels whose upsampled value exceeds `cut`.
    pub fn overlaps(
        &self,
        truth: &ImageTruth,
        acts: &[(u32, f32)],
        cut: f32,
        mode: Upsample,
    ) -> (u64, Vec<u64>) {
        let regions = truth.regions.len();
        if mode == Upsample::Nearest {
            let active: Vec<usize> = acts
                .iter()
                .filter(|a| a.1 > cut)
                .map(|a| a.0 as usize)
                .collect();
            let s = active.iter().map(|&c| self.area[c]).sum();
            let inter = (0..regions)
                .map(|r| active.iter().map(|&c| self.overlap[r][c]).sum())
                .collect();
            return (s, inter);
        }
        let mut grid = vec![0f32; self.rows * self.cols];
        let (mut r0, mut r1, mut c0, mut c1) = (u32::MAX, 0, u32::MAX, 0);
        for &(cell, v) in acts {
            let (r, c) = self.cell_rc[cell as usize];
            grid[r as usize * self.cols + c as usize] = v;
            if v > 0.0 {
                (r0, r1, c0, c1) = (r0.min(r), r1.max(r), c0.min(c), c1.max(c));
            }
        }
        let (mut s, mut inter) = (0u64, vec![0u64; regions]);
        if r0 > r1 {
            return (s, inter);
        }
        // Outside one cell around the active ones every tap reads zero.
        let near = |lo: u32, hi: u32, a: u32, b: u32| hi + 1 >= a && lo <= b + 1;
        let width = truth.width as usize;
        for (y, &(ya, yb, fy)) in self.yw.iter().enumerate() {
            if !near(ya, yb, r0, r1) {
                continue;
            }
            for (x, &(xa, xb, fx)) in self.xw.iter().enumerate() {
                if !near(xa, xb, c0, c1) {
                    continue;
                }
                let at = |r: u32, c: u32| grid[r as usize * self.cols + c as usize];
                let top = at(ya, xa) * (1.0 - fx) + at(ya, xb) * fx;
                let bottom = at(yb, xa) * (1.0 - fx) + at(yb, xb) * fx;
                if top * (1.0 - fy) + bottom * fy > cut {
                    s += 1;
                    let i = y * width + x;
                    for (r, (_, _, mask)) in truth.regions.iter().enumerate() {
                        inter[r] += u64::from(mask[i]);
                    }
                }
            }
        }
        (s, inter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_clamp_at_the_edges_and_interpolate_between_centres() {
        // Four cells of 10 px: centres at 5, 15, 25, 35.
        let t = taps(40, 4, 5.0, 10.0);
        assert_eq!(t[0], (0, 1, 0.0));
        assert_eq!((t[9].0, t[9].1), (0, 1));
        assert!((t[9].2 - 0.45).abs() < 1e-6, "{:?}", t[9]);
        assert_eq!(t[39], (3, 3, 0.0));
    }

    #[test]
    fn highres_lattice_matches_token_rectangles() {
        // A wide image: padding on top and bottom of the canvas, rows cropped by unpadding.
        let l = ImageLayout::new((30, 70), &[(28, 56), (56, 28), (56, 56)], 28, 14).unwrap();
        let t = ImageTruth::from_objects(70, 30, &[]).unwrap();
        let m = ImageMaps::new(&l, &t, MapGrid::HighRes).unwrap();
        let tokens = l.tokens();
        for (tok, cell) in tokens.iter().zip(&m.of_token) {
            let (Some(cell), Some(rect)) = (cell, tok.rect) else {
                continue;
            };
            let (r, c) = m.cell_rc[*cell as usize];
            // A pixel column whose centre is at the rectangle's centre taps exactly this cell,
            // unless the rectangle was clamped at the image border.
            let cx = ((rect.x0 + rect.x1) / 2.0) as usize;
            let cy = ((rect.y0 + rect.y1) / 2.0) as usize;
            if rect.x0 > 0.0 && rect.x1 < 70.0 {
                assert!(m.xw[cx].0 == c || m.xw[cx].1 == c, "{:?} col {c}", m.xw[cx]);
            }
            if rect.y0 > 0.0 && rect.y1 < 30.0 {
                assert!(m.yw[cy].0 == r || m.yw[cy].1 == r, "{:?} row {r}", m.yw[cy]);
            }
        }
    }
}
