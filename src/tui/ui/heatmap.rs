//! Half-block pictures: two vertical pixels a cell (`▀`, top in the foreground colour, bottom in
//! the background). Works in every terminal, tmux and `TestBackend` included.

use image::RgbImage;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::widgets::Widget;

/// An RGB image drawn into a rect with half blocks, aspect kept, centred.
pub struct HalfBlocks<'a>(pub &'a RgbImage);

/// Cells `(w, h)` that fit an image of `iw x ih` pixels into `area`, a cell holding 1 x 2 pixels.
pub fn fit_cells(iw: u32, ih: u32, area: Rect) -> (u16, u16) {
    if iw == 0 || ih == 0 || area.width == 0 || area.height == 0 {
        return (0, 0);
    }
    let (aw, ah) = (f64::from(area.width), f64::from(area.height) * 2.0);
    let s = (aw / f64::from(iw)).min(ah / f64::from(ih));
    let w = (f64::from(iw) * s).floor().clamp(1.0, aw) as u16;
    let h = ((f64::from(ih) * s / 2.0).floor()).clamp(1.0, f64::from(area.height)) as u16;
    (w, h)
}

/// The rect an image takes inside `area` when fitted and centred.
pub fn fitted_rect(iw: u32, ih: u32, area: Rect) -> Rect {
    let (w, h) = fit_cells(iw, ih, area);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// Outline the pixel rectangle `[x0, x1) x [y0, y1)` of `img` with a dark band outside a light
/// one, so it shows on any picture. Each band is `band` pixels (horizontal, vertical) thick: at
/// least the spacing at which the picture is sampled when drawn, so no band falls between
/// samples.
pub fn outline(img: &mut RgbImage, (x0, y0, x1, y1): (u32, u32, u32, u32), band: (u32, u32)) {
    let (w, h) = img.dimensions();
    let (bx, by) = (band.0.max(1), band.1.max(1));
    let mut paint = |xa: i64, ya: i64, xb: i64, yb: i64, rgb: [u8; 3]| {
        for y in ya.max(0)..yb.min(i64::from(h)) {
            for x in xa.max(0)..xb.min(i64::from(w)) {
                img.put_pixel(x as u32, y as u32, image::Rgb(rgb));
            }
        }
    };
    let (x0, y0, x1, y1) = (i64::from(x0), i64::from(y0), i64::from(x1), i64::from(y1));
    let (bx, by) = (i64::from(bx), i64::from(by));
    for (grow, rgb) in [(bx.max(by), [0, 0, 0]), (0, [255, 255, 255])] {
        // `grow` widens the outer band; the inner one lies just inside the rectangle.
        let (gx, gy) = (grow.min(bx), grow.min(by));
        let (ox0, oy0, ox1, oy1) = (x0 - gx, y0 - gy, x1 + gx, y1 + gy);
        paint(ox0, oy0, ox1, oy0 + by, rgb);
        paint(ox0, oy1 - by, ox1, oy1, rgb);
        paint(ox0, oy0, ox0 + bx, oy1, rgb);
        paint(ox1 - bx, oy0, ox1, oy1, rgb);
    }
}

impl Widget for HalfBlocks<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let img = self.0;
        let r = fitted_rect(img.width(), img.height(), area);
        if r.width == 0 || r.height == 0 {
            return;
        }
        let (iw, ih) = (u64::from(img.width()), u64::from(img.height()));
        let (pw, ph) = (u64::from(r.width), u64::from(r.height) * 2);
        // Nearest pixel at each half-cell centre.
        let px = |x: u64, y: u64| {
            let sx = ((2 * x + 1) * iw / (2 * pw)).min(iw - 1) as u32;
            let sy = ((2 * y + 1) * ih / (2 * ph)).min(ih - 1) as u32;
            let p = img.get_pixel(sx, sy).0;
            Color::Rgb(p[0], p[1], p[2])
        };
        for cy in 0..r.height {
            for cx in 0..r.width {
                let (x, y) = (u64::from(cx), u64::from(cy) * 2);
                if let Some(cell) = buf.cell_mut((r.x + cx, r.y + cy)) {
                    cell.set_symbol("▀").set_fg(px(x, y)).set_bg(px(x, y + 1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_pixels_per_cell_with_aspect_kept() {
        let mut img = RgbImage::new(4, 4);
        img.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        let mut buf = Buffer::empty(Rect::new(0, 0, 10, 2));
        HalfBlocks(&img).render(buf.area, &mut buf);
        // A square image in 10x2 cells becomes 4 cells wide, 2 tall, centred at x = 3.
        assert_eq!(fitted_rect(4, 4, buf.area), Rect::new(3, 0, 4, 2));
        let c = &buf[(3, 0)];
        assert_eq!(
            (c.symbol(), c.fg, c.bg),
            ("▀", Color::Rgb(255, 0, 0), Color::Rgb(0, 0, 0))
        );
        assert_eq!(buf[(0, 0)].symbol(), " ");
    }

    #[test]
    fn outlines_are_dark_outside_light_inside_and_leave_the_patch_visible() {
        let mut img = RgbImage::from_pixel(40, 40, image::Rgb([9, 9, 9]));
        outline(&mut img, (10, 10, 30, 30), (2, 2));
        assert_eq!(img.get_pixel(10, 20).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(11, 20).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(8, 20).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(20, 29).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(20, 31).0, [0, 0, 0]);
        // Inside the bands and outside the outline, the picture is untouched.
        assert_eq!(img.get_pixel(20, 20).0, [9, 9, 9]);
        assert_eq!(img.get_pixel(5, 5).0, [9, 9, 9]);
        // A patch at the edge is clipped, not an error.
        outline(&mut img, (0, 0, 5, 5), (3, 3));
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
    }
}
