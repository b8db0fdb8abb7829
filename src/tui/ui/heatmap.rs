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
}
