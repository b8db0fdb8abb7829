//! Rasterises an [`ImagePlan`] into an RGB image and one exact mask per object.
//!
//! Edges are crisp (no anti-aliasing) so every pixel is either background or exactly one object's
//! colour, and masks are the visible pixels only.

use anyhow::{Result, bail};
use image::{GrayImage, Luma, Rgb, RgbImage};

use super::plan::{ImagePlan, PlannedObject, Shape, Texture};
use crate::util::rng::SeededRng;

/// A rasterised image with its per-object masks and tight boxes.
pub struct Rendered {
    /// The RGB image.
    pub image: RgbImage,
    /// One mask per object (255 visible, 0 elsewhere), in plan order.
    pub masks: Vec<GrayImage>,
    /// Tight `[x0, y0, x1, y1]` box of each mask, end-exclusive.
    pub bboxes: Vec<[u32; 4]>,
}

/// Draws the background, then the objects back to front, and derives masks from what stays visible.
pub fn render(plan: &ImagePlan) -> Result<Rendered> {
    let (w, h) = (plan.width, plan.height);
    let background = Background::new(&plan.texture, w, h);
    let mut image = RgbImage::from_fn(w, h, |x, y| Rgb(background.at(x, y)));
    // 0 is background, k+1 is object k; later objects overwrite earlier ones.
    let mut owner = vec![0u8; w as usize * h as usize];
    for (k, obj) in plan.objects.iter().enumerate() {
        let colour = Rgb(obj.colour.rgb());
        for y in obj.y..(obj.y + obj.side).min(h) {
            for x in obj.x..(obj.x + obj.side).min(w) {
                if covers(obj, x, y) {
                    image.put_pixel(x, y, colour);
                    owner[(y * w + x) as usize] = k as u8 + 1;
                }
            }
        }
    }
    let mut masks = Vec::with_capacity(plan.objects.len());
    let mut bboxes = Vec::with_capacity(plan.objects.len());
    for k in 0..plan.objects.len() {
        let tag = k as u8 + 1;
        let mut bbox = [u32::MAX, u32::MAX, 0, 0];
        let mask = GrayImage::from_fn(w, h, |x, y| {
            if owner[(y * w + x) as usize] == tag {
                bbox = [
                    bbox[0].min(x),
                    bbox[1].min(y),
                    bbox[2].max(x + 1),
                    bbox[3].max(y + 1),
                ];
                Luma([255])
            } else {
                Luma([0])
            }
        });
        if bbox[2] == 0 {
            bail!(
                "{}: object {k} is fully hidden; the planner must keep objects apart",
                plan.id
            );
        }
        masks.push(mask);
        bboxes.push(bbox);
    }
    Ok(Rendered {
        image,
        masks,
        bboxes,
    })
}

/// Whether pixel (x, y), sampled at its centre, lies inside the object.
pub fn covers(obj: &PlannedObject, x: u32, y: u32) -> bool {
    let side = f64::from(obj.side);
    // Coordinates in [-1, 1] across the drawing box.
    let dx = 2.0 * (f64::from(x) + 0.5 - f64::from(obj.x)) / side - 1.0;
    let dy = 2.0 * (f64::from(y) + 0.5 - f64::from(obj.y)) / side - 1.0;
    if dx.abs() > 1.0 || dy.abs() > 1.0 {
        return false;
    }
    let r2 = dx * dx + dy * dy;
    match obj.shape {
        Shape::Circle => r2 <= 1.0,
        Shape::Square => true,
        Shape::Triangle => dx.abs() <= (dy + 1.0) / 2.0,
        Shape::Cross => dx.abs() <= 1.0 / 3.0 || dy.abs() <= 1.0 / 3.0,
        Shape::Ring => (0.3025..=1.0).contains(&r2),
        // The star's lower points reach only cos(36°) of the radius; shifting it down centres it.
        Shape::Star => in_star(dx, dy - 0.095),
    }
}

/// Even-odd test against a five-pointed star of outer radius 1 and inner radius 0.45, point up.
fn in_star(px: f64, py: f64) -> bool {
    let vertex = |i: usize| {
        let angle = -std::f64::consts::FRAC_PI_2 + i as f64 * std::f64::consts::PI / 5.0;
        let r = if i.is_multiple_of(2) { 1.0 } else { 0.45 };
        (r * angle.cos(), r * angle.sin())
    };
    let mut inside = false;
    for i in 0..10 {
        let (x1, y1) = vertex(i);
        let (x2, y2) = vertex((i + 1) % 10);
        if (y1 > py) != (y2 > py) && px < x1 + (py - y1) * (x2 - x1) / (y2 - y1) {
            inside = !inside;
        }
    }
    inside
}

/// A background texture ready to be sampled per pixel.
enum Background {
    Gradient {
        from: [u8; 3],
        to: [u8; 3],
        vertical: bool,
        span: f64,
    },
    Stripes {
        a: [u8; 3],
        b: [u8; 3],
        band: u32,
    },
    Checks {
        a: [u8; 3],
        b: [u8; 3],
        cell: u32,
    },
    Noise {
        base: [u8; 3],
        cell: u32,
        cols: usize,
        lattice: Vec<f64>,
    },
}

/// Peak noise amplitude in grey levels, and the step it is quantised to.
const NOISE_AMPLITUDE: f64 = 14.0;
const NOISE_STEP: f64 = 4.0;

impl Background {
    fn new(texture: &Texture, w: u32, h: u32) -> Self {
        match *texture {
            Texture::Gradient { from, to, vertical } => {
                let span = f64::from(if vertical { h } else { w }.max(2) - 1);
                Background::Gradient {
                    from,
                    to,
                    vertical,
                    span,
                }
            }
            Texture::Stripes { a, b, period } => Background::Stripes {
                a,
                b,
                band: (period / 2).max(1),
            },
            Texture::Checks { a, b, cell } => Background::Checks {
                a,
                b,
                cell: cell.max(1),
            },
            Texture::Blotches { base, cell, seed } => {
                let cell = cell.max(1);
                let cols = (w / cell + 2) as usize;
                let rows = (h / cell + 2) as usize;
                let mut rng = SeededRng::new(seed);
                let lattice = (0..cols * rows).map(|_| rng.range_f64(-1.0, 1.0)).collect();
                Background::Noise {
                    base,
                    cell,
                    cols,
                    lattice,
                }
            }
        }
    }

    fn at(&self, x: u32, y: u32) -> [u8; 3] {
        match self {
            Background::Gradient {
                from,
                to,
                vertical,
                span,
            } => {
                let t = f64::from(if *vertical { y } else { x }) / span;
                std::array::from_fn(|i| {
                    let (a, b) = (f64::from(from[i]), f64::from(to[i]));
                    (a + (b - a) * t).round() as u8
                })
            }
            Background::Stripes { a, b, band } => {
                if ((x + y) / band).is_multiple_of(2) {
                    *a
                } else {
                    *b
                }
            }
            Background::Checks { a, b, cell } => {
                if (x / cell + y / cell).is_multiple_of(2) {
                    *a
                } else {
                    *b
                }
            }
            Background::Noise {
                base,
                cell,
                cols,
                lattice,
            } => {
                let (gx, gy) = (x / cell, y / cell);
                let smooth = |t: f64| t * t * (3.0 - 2.0 * t);
                let fx = smooth(f64::from(x % cell) / f64::from(*cell));
                let fy = smooth(f64::from(y % cell) / f64::from(*cell));
                let at = |cx: u32, cy: u32| lattice[cy as usize * cols + cx as usize];
                let top = at(gx, gy) * (1.0 - fx) + at(gx + 1, gy) * fx;
                let bottom = at(gx, gy + 1) * (1.0 - fx) + at(gx + 1, gy + 1) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                // Coarse steps leave wide flat patches, which PNG stores cheaply.
                let delta = ((v * NOISE_AMPLITUDE / NOISE_STEP).round() * NOISE_STEP) as i32;
                base.map(|c| (i32::from(c) + delta).clamp(0, 255) as u8)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::Colour;
    use super::*;

    fn area(shape: Shape) -> (f64, Vec<bool>) {
        let obj = PlannedObject {
            colour: Colour::Red,
            shape,
            x: 0,
            y: 0,
            side: 100,
        };
        let cells: Vec<bool> = (0..100)
            .flat_map(|y| (0..100).map(move |x| (x, y)))
            .map(|(x, y)| covers(&obj, x, y))
            .collect();
        (cells.iter().filter(|&&c| c).count() as f64 / 1e4, cells)
    }

    #[test]
    fn shapes_have_expected_areas_and_differ() {
        let expected = [
            (Shape::Circle, 0.785),
            (Shape::Square, 1.0),
            (Shape::Triangle, 0.5),
            (Shape::Star, 0.33),
            (Shape::Cross, 0.556),
            (Shape::Ring, 0.548),
        ];
        let mut seen = Vec::new();
        for (shape, want) in expected {
            let (got, cells) = area(shape);
            assert!(
                (got - want).abs() < 0.04,
                "{}: area {got}, want {want}",
                shape.name()
            );
            assert!(
                !seen.contains(&cells),
                "{} looks like another shape",
                shape.name()
            );
            seen.push(cells);
        }
    }

    #[test]
    fn ring_has_a_hole_and_star_a_centre() {
        let ring = PlannedObject {
            colour: Colour::Red,
            shape: Shape::Ring,
            x: 10,
            y: 10,
            side: 80,
        };
        assert!(!covers(&ring, 50, 50));
        assert!(covers(&ring, 12, 50));
        let star = PlannedObject {
            shape: Shape::Star,
            ..ring
        };
        assert!(covers(&star, 50, 52));
        assert!(!covers(&star, 11, 11));
    }

    #[test]
    fn later_objects_hide_earlier_ones() {
        let plan = ImagePlan {
            id: "t".into(),
            width: 120,
            height: 100,
            texture: Texture::Checks {
                a: [100, 100, 100],
                b: [110, 110, 110],
                cell: 10,
            },
            objects: vec![
                PlannedObject {
                    colour: Colour::Red,
                    shape: Shape::Square,
                    x: 0,
                    y: 0,
                    side: 80,
                },
                PlannedObject {
                    colour: Colour::Blue,
                    shape: Shape::Square,
                    x: 40,
                    y: 0,
                    side: 80,
                },
            ],
        };
        let r = render(&plan).expect("render");
        assert_eq!(r.bboxes, vec![[0, 0, 40, 80], [40, 0, 120, 80]]);
        assert_eq!(r.masks[0].get_pixel(50, 10).0, [0]);
        assert_eq!(r.image.get_pixel(50, 10).0, Colour::Blue.rgb());
    }
}
