//! The in-memory plan of the shapes dataset: which objects go where on which background.
//!
//! Planning is kept apart from rasterisation so balance and placement can be checked cheaply.

use anyhow::Result;
use std::collections::VecDeque;

use super::ShapesSpec;
use crate::util::rng::SeededRng;

/// Image sizes (width, height) the dataset cycles through; the first four are the anyres cases
/// that matter most (square, wide, tall, and an odd 4:3 size).
pub const IMAGE_SIZES: [(u32, u32); 7] = [
    (336, 336),
    (672, 336),
    (336, 1008),
    (500, 375),
    (448, 448),
    (640, 480),
    (300, 500),
];

/// Smallest object side in pixels: at least four 14-px patches across.
pub const MIN_OBJECT_SIDE: u32 = 60;
/// Largest object side in pixels.
pub const MAX_OBJECT_SIDE: u32 = 200;
/// Least free space between two objects' boxes, so masks never touch.
const GAP: u32 = 8;

/// A saturated object colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Colour {
    /// Red.
    Red,
    /// Green.
    Green,
    /// Blue.
    Blue,
    /// Yellow.
    Yellow,
    /// Magenta.
    Magenta,
    /// Cyan.
    Cyan,
}

impl Colour {
    /// Every colour, in manifest order.
    pub const ALL: [Colour; 6] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Magenta,
        Colour::Cyan,
    ];

    /// The name used in labels and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Magenta => "magenta",
            Colour::Cyan => "cyan",
        }
    }

    /// The exact RGB value every pixel of such an object has.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 30],
            Colour::Green => [30, 180, 50],
            Colour::Blue => [30, 70, 225],
            Colour::Yellow => [240, 210, 20],
            Colour::Magenta => [210, 40, 200],
            Colour::Cyan => [20, 200, 215],
        }
    }
}

/// A geometric shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// Filled disc.
    Circle,
    /// Filled axis-aligned square.
    Square,
    /// Filled upward triangle.
    Triangle,
    /// Filled five-pointed star.
    Star,
    /// Plus-shaped cross.
    Cross,
    /// Annulus; the hole shows the background.
    Ring,
}

impl Shape {
    /// Every shape, in manifest order.
    pub const ALL: [Shape; 6] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Cross,
        Shape::Ring,
    ];

    /// The name used in labels and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Cross => "cross",
            Shape::Ring => "ring",
        }
    }
}

/// A muted background texture; every tone is a low-saturation grey or beige.
#[derive(Debug, Clone, PartialEq)]
pub enum Texture {
    /// Linear blend from `from` to `to`, along y when `vertical`, else along x.
    Gradient {
        /// Tone at the start edge.
        from: [u8; 3],
        /// Tone at the far edge.
        to: [u8; 3],
        /// Whether the blend runs top to bottom.
        vertical: bool,
    },
    /// Diagonal bands of two tones.
    Stripes {
        /// First tone.
        a: [u8; 3],
        /// Second tone.
        b: [u8; 3],
        /// Width of one pair of bands in pixels.
        period: u32,
    },
    /// Low-contrast checkerboard.
    Checks {
        /// First tone.
        a: [u8; 3],
        /// Second tone.
        b: [u8; 3],
        /// Side of one check in pixels.
        cell: u32,
    },
    /// Smooth value noise around `base`, quantised to coarse steps so it compresses well.
    Blotches {
        /// Mean tone.
        base: [u8; 3],
        /// Noise lattice spacing in pixels.
        cell: u32,
        /// Seed of the lattice values.
        seed: u64,
    },
}

/// One object of an image, drawn inside the square `[x, x+side) × [y, y+side)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedObject {
    /// Fill colour.
    pub colour: Colour,
    /// Geometry.
    pub shape: Shape,
    /// Left edge of the drawing box.
    pub x: u32,
    /// Top edge of the drawing box.
    pub y: u32,
    /// Side of the drawing box.
    pub side: u32,
}

impl PlannedObject {
    /// "red circle"-style label.
    pub fn label(&self) -> String {
        format!("{} {}", self.colour.name(), self.shape.name())
    }
}

/// Everything needed to rasterise one image; objects are listed back to front.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePlan {
    /// Image id, e.g. `shape-0000`.
    pub id: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Background texture.
    pub texture: Texture,
    /// Objects, back to front.
    pub objects: Vec<PlannedObject>,
}

/// Plans `spec.count` images: sizes cycle through [`IMAGE_SIZES`], (colour, shape) pairs are dealt
/// from shuffled full decks so every pair appears about equally often.
pub fn plan_shapes(spec: &ShapesSpec) -> Result<Vec<ImagePlan>> {
    let mut deck = Deck::new(SeededRng::for_name(spec.seed, "shapes/deck"));
    let mut count_rng = SeededRng::for_name(spec.seed, "shapes/counts");
    let mut counts = Vec::new();
    let mut plans = Vec::with_capacity(spec.count);
    for index in 0..spec.count {
        // Blocks of four images hold exactly eight objects, keeping the total predictable.
        if counts.is_empty() {
            counts = vec![1usize, 2, 2, 3];
            count_rng.shuffle(&mut counts);
        }
        let n_objects = counts.pop().unwrap_or(2);
        let id = format!("shape-{index:04}");
        let (width, height) = IMAGE_SIZES[index % IMAGE_SIZES.len()];
        let mut rng = SeededRng::for_name(spec.seed, &id);
        let texture = plan_texture(&mut rng);
        let mut objects: Vec<PlannedObject> = Vec::with_capacity(n_objects);
        for k in 0..n_objects {
            let taken: Vec<(Colour, Shape)> = objects.iter().map(|o| (o.colour, o.shape)).collect();
            let (colour, shape) = deck.deal(&taken);
            let (x, y, side) = place(&mut rng, width, height, k == 0, &objects)
                .ok_or_else(|| anyhow::anyhow!("{id}: no free room for object {k}"))?;
            objects.push(PlannedObject {
                colour,
                shape,
                x,
                y,
                side,
            });
        }
        plans.push(ImagePlan {
            id,
            width,
            height,
            texture,
            objects,
        });
    }
    Ok(plans)
}

/// Muted tones: channel spread at most 25, so no background pixel looks like an object colour.
const TONES: [[u8; 3]; 8] = [
    [205, 200, 190],
    [185, 178, 160],
    [160, 160, 158],
    [120, 117, 112],
    [215, 208, 192],
    [140, 136, 126],
    [96, 96, 100],
    [176, 170, 166],
];

fn shade(tone: [u8; 3], delta: i32) -> [u8; 3] {
    tone.map(|c| (i32::from(c) + delta).clamp(0, 255) as u8)
}

fn plan_texture(rng: &mut SeededRng) -> Texture {
    let tone = TONES[rng.below(TONES.len() as u64) as usize];
    // Darken light tones and lighten dark ones so the second tone stays in range.
    let sign = if tone[0] > 150 { -1 } else { 1 };
    let delta = sign * (8 + rng.below(14) as i32);
    let other = shade(tone, delta);
    match rng.below(4) {
        0 => Texture::Gradient {
            from: tone,
            to: shade(tone, 2 * delta),
            vertical: rng.below(2) == 0,
        },
        1 => Texture::Stripes {
            a: tone,
            b: other,
            period: 24 + 4 * rng.below(8) as u32,
        },
        2 => Texture::Checks {
            a: tone,
            b: other,
            cell: 32 + 8 * rng.below(5) as u32,
        },
        _ => Texture::Blotches {
            base: tone,
            cell: 48 + 16 * rng.below(4) as u32,
            seed: rng.next_u64(),
        },
    }
}

/// Picks a box for a new object that keeps [`GAP`] pixels from every placed one.
/// The first object of a wide or tall image goes into its far half so high-res tiles matter.
fn place(
    rng: &mut SeededRng,
    width: u32,
    height: u32,
    first: bool,
    placed: &[PlannedObject],
) -> Option<(u32, u32, u32)> {
    let max_side = MAX_OBJECT_SIDE
        .min(width.min(height) * 9 / 20)
        .max(MIN_OBJECT_SIDE);
    let mut side = MIN_OBJECT_SIDE + rng.below(u64::from(max_side - MIN_OBJECT_SIDE) + 1) as u32;
    for attempt in 0..600u32 {
        if attempt > 0 && attempt.is_multiple_of(60) {
            side = (side * 17 / 20).max(MIN_OBJECT_SIDE);
        }
        let (x_lo, y_lo) = match (first, width, height) {
            (true, w, h) if w * 2 >= h * 3 => (w / 2, 0),
            (true, w, h) if h * 2 >= w * 3 => (0, h / 2),
            _ => (0, 0),
        };
        let x_hi = width.checked_sub(side)?;
        let y_hi = height.checked_sub(side)?;
        let x = x_lo.min(x_hi) + rng.below(u64::from(x_hi - x_lo.min(x_hi)) + 1) as u32;
        let y = y_lo.min(y_hi) + rng.below(u64::from(y_hi - y_lo.min(y_hi)) + 1) as u32;
        let clear = placed.iter().all(|o| {
            x + side + GAP <= o.x
                || o.x + o.side + GAP <= x
                || y + side + GAP <= o.y
                || o.y + o.side + GAP <= y
        });
        if clear {
            return Some((x, y, side));
        }
    }
    None
}

/// Shuffled full decks of (colour, shape) pairs, dealt in order.
struct Deck {
    rng: SeededRng,
    cards: VecDeque<(Colour, Shape)>,
}

impl Deck {
    fn new(rng: SeededRng) -> Self {
        Self {
            rng,
            cards: VecDeque::new(),
        }
    }

    fn refill(&mut self) {
        let mut fresh: Vec<(Colour, Shape)> = Colour::ALL
            .iter()
            .flat_map(|&c| Shape::ALL.iter().map(move |&s| (c, s)))
            .collect();
        self.rng.shuffle(&mut fresh);
        self.cards.extend(fresh);
    }

    /// Next card whose colour and shape both differ from `taken`, so an image never holds two
    /// objects of one colour or one shape and each label names exactly one mask.
    fn deal(&mut self, taken: &[(Colour, Shape)]) -> (Colour, Shape) {
        loop {
            let fits = |c: &(Colour, Shape)| taken.iter().all(|t| t.0 != c.0 && t.1 != c.1);
            if let Some(card) = self
                .cards
                .iter()
                .position(fits)
                .and_then(|i| self.cards.remove(i))
            {
                return card;
            }
            // A fresh deck always holds a fitting card: at most two colours and shapes are taken.
            self.refill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn plan64() -> Vec<ImagePlan> {
        plan_shapes(&ShapesSpec::default()).expect("plan")
    }

    #[test]
    fn required_sizes_appear() {
        let plans = plan64();
        for size in [(336, 336), (672, 336), (336, 1008), (500, 375)] {
            assert!(
                plans.iter().any(|p| (p.width, p.height) == size),
                "size {size:?} missing"
            );
        }
    }

    #[test]
    fn every_pair_appears_at_least_twice() {
        let mut seen: HashMap<(Colour, Shape), usize> = HashMap::new();
        let plans = plan64();
        for o in plans.iter().flat_map(|p| &p.objects) {
            *seen.entry((o.colour, o.shape)).or_default() += 1;
        }
        for c in Colour::ALL {
            for s in Shape::ALL {
                let n = seen.get(&(c, s)).copied().unwrap_or(0);
                assert!(n >= 2, "{} {} appears {n} times", c.name(), s.name());
            }
        }
        let total: usize = seen.values().sum();
        assert_eq!(total, 128);
    }

    #[test]
    fn objects_fit_apart_and_are_distinct() {
        for p in plan64() {
            assert!((1..=3).contains(&p.objects.len()));
            for (i, a) in p.objects.iter().enumerate() {
                assert!(
                    a.x + a.side <= p.width && a.y + a.side <= p.height,
                    "{}",
                    p.id
                );
                assert!((MIN_OBJECT_SIDE..=MAX_OBJECT_SIDE).contains(&a.side));
                for b in &p.objects[i + 1..] {
                    let apart = a.x + a.side <= b.x
                        || b.x + b.side <= a.x
                        || a.y + a.side <= b.y
                        || b.y + b.side <= a.y;
                    assert!(apart, "{} has overlapping objects", p.id);
                    assert!(a.colour != b.colour && a.shape != b.shape, "{}", p.id);
                }
            }
        }
    }

    #[test]
    fn wide_and_tall_images_use_their_far_parts() {
        let plans = plan64();
        let far = |p: &ImagePlan| {
            p.objects
                .iter()
                .any(|o| (p.width == 672 && o.x >= 336) || (p.height == 1008 && o.y >= 336))
        };
        let long: Vec<&ImagePlan> = plans
            .iter()
            .filter(|p| p.width == 672 || p.height == 1008)
            .collect();
        assert!(!long.is_empty());
        assert!(long.iter().all(|p| far(p)));
    }

    #[test]
    fn seeds_change_the_plan() {
        let a = plan_shapes(&ShapesSpec { seed: 1, count: 8 }).expect("plan");
        let b = plan_shapes(&ShapesSpec { seed: 2, count: 8 }).expect("plan");
        assert_eq!(
            a,
            plan_shapes(&ShapesSpec { seed: 1, count: 8 }).expect("plan")
        );
        assert_ne!(a, b);
    }
}
