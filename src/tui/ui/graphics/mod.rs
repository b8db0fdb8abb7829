//! How pictures reach the terminal: our half blocks, or kitty / sixel / iTerm2 through
//! ratatui-image's encoders, chosen once at start from what the terminal (and tmux) answered.
//!
//! Protocol images are encoded once per (picture, rect) and cached, so a steady screen costs no
//! encoding; the cache is cleared when it grows past a screenful of pictures.

mod choose;
mod probe;
mod record;
mod replies;
mod tmux;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use image::{DynamicImage, RgbImage};
use ratatui::Frame;
use ratatui::layout::{Rect, Size};
use ratatui_image::picker::ProtocolType;
use ratatui_image::protocol::Protocol;
use ratatui_image::protocol::iterm2::Iterm2;
use ratatui_image::protocol::kitty::Kitty;
use ratatui_image::protocol::sixel::Sixel;
use ratatui_image::{FontSize, Image, Resize};

pub use choose::{Choice, Facts, choose};
pub use probe::probe;
pub use replies::Replies;
pub use tmux::{PASSTHROUGH_HINT, Tmux};

use super::heatmap::{HalfBlocks, fitted_rect};

/// The cell size assumed when the terminal reports none (a common 10x20 font).
const DEFAULT_CELL: (u16, u16) = (10, 20);

/// Requested graphics mode (`--graphics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphicsMode {
    /// Ask the terminal (through tmux's passthrough inside tmux); half blocks when nothing
    /// better answers.
    Auto,
    /// Kitty graphics protocol.
    Kitty,
    /// Sixel.
    Sixel,
    /// iTerm2 inline images.
    Iterm2,
    /// Coloured half-block cells.
    Halfblocks,
}

impl std::str::FromStr for GraphicsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "kitty" => Self::Kitty,
            "sixel" => Self::Sixel,
            "iterm2" => Self::Iterm2,
            "halfblocks" => Self::Halfblocks,
            _ => {
                return Err(format!(
                    "{s:?}: graphics is one of auto, kitty, sixel, iterm2, halfblocks"
                ));
            }
        })
    }
}

/// Encodes pictures for one protocol at the terminal's cell size.
pub struct Encoder {
    protocol: ProtocolType,
    cell: FontSize,
    /// Wrap each image for tmux's passthrough.
    wrap: bool,
}

impl Encoder {
    /// `img` fitted into `area`, encoded; `id` names it to kitty.
    fn encode(
        &self,
        img: &RgbImage,
        area: Rect,
        id: u32,
    ) -> Result<Protocol, ratatui_image::errors::Errors> {
        let img = DynamicImage::ImageRgb8(img.clone());
        // Scale, not fit: a picture smaller than its area (a 336-pixel image in the full-size
        // view, a thumbnail in a large cell) is drawn as large as the area allows.
        let resize = Resize::Scale(None);
        let size = resize.size_for(&img, self.cell, Size::new(area.width, area.height));
        let img = resize.resize(&img, self.cell, size, None);
        record::picture(&img, area, self.cell, self.protocol);
        Ok(match self.protocol {
            ProtocolType::Sixel if self.wrap => {
                // ratatui-image's own tmux wrapping leaves the sixel's closing ST undoubled,
                // which ends the passthrough early and shows nothing: wrap the plain sequence.
                let plain = Sixel::new(img, size, false)?;
                Protocol::Sixel(Sixel {
                    data: replies::passthrough(&plain.data),
                    is_tmux: true,
                    ..plain
                })
            }
            ProtocolType::Sixel => Protocol::Sixel(Sixel::new(img, size, false)?),
            ProtocolType::Kitty => Protocol::Kitty(Kitty::new(img, size, id, self.wrap, false)?),
            ProtocolType::Iterm2 => Protocol::ITerm2(Iterm2::new(img, size, self.wrap)?),
            ProtocolType::Halfblocks => Protocol::Halfblocks(
                ratatui_image::protocol::halfblocks::Halfblocks::new(img, size)?,
            ),
        })
    }
}

/// Draws pictures with the chosen method.
pub enum Graphics {
    /// Half-block cells (tests, plain SSH, tmux without passthrough).
    HalfBlocks,
    /// A terminal image protocol.
    Protocol {
        /// Protocol, cell size and tmux wrapping.
        encoder: Encoder,
        /// Encoded images by (picture hash, rect).
        cache: HashMap<(u64, Rect), Protocol>,
    },
}

impl Graphics {
    /// The method for `mode` given what the terminal said ([`probe`]), with the start-up status
    /// line: the method, and what would give a better one.
    pub fn from_facts(mode: GraphicsMode, facts: &Facts) -> (Graphics, String) {
        let choice = choose(mode, facts);
        let gfx = if choice.protocol == ProtocolType::Halfblocks {
            Graphics::HalfBlocks
        } else {
            let (w, h) = facts.replies.cell.unwrap_or(DEFAULT_CELL);
            Graphics::Protocol {
                encoder: Encoder {
                    protocol: choice.protocol,
                    cell: FontSize::new(w, h),
                    wrap: choice.wrap,
                },
                cache: HashMap::new(),
            }
        };
        let status = match choice.note {
            Some(note) => format!("graphics: {} — {note}", gfx.name()),
            None => format!("graphics: {}", gfx.name()),
        };
        record::status(&status);
        (gfx, status)
    }

    /// Name for the status line.
    pub fn name(&self) -> String {
        match self {
            Graphics::HalfBlocks => "halfblocks".into(),
            Graphics::Protocol { encoder, .. } => {
                let name = format!("{:?}", encoder.protocol).to_lowercase();
                if encoder.wrap {
                    format!("{name} through tmux")
                } else {
                    name
                }
            }
        }
    }

    /// Draw `img` fitted into `area`; returns the rect the picture took.
    pub fn draw(&mut self, frame: &mut Frame<'_>, area: Rect, img: &RgbImage) -> Rect {
        let halfblocks = |frame: &mut Frame<'_>| {
            frame.render_widget(HalfBlocks(img), area);
            fitted_rect(img.width(), img.height(), area)
        };
        let Graphics::Protocol { encoder, cache } = self else {
            return halfblocks(frame);
        };
        let mut h = DefaultHasher::new();
        img.as_raw().hash(&mut h);
        img.dimensions().hash(&mut h);
        let key = (h.finish(), area);
        if cache.len() > 64 {
            cache.clear();
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(key) {
            area.hash(&mut h);
            // Kitty image ids are 32-bit and must not be 0.
            let id = (h.finish() as u32).max(1);
            match encoder.encode(img, area, id) {
                Ok(p) => {
                    slot.insert(p);
                }
                Err(_) => return halfblocks(frame),
            }
        }
        match cache.get(&key) {
            Some(p) => {
                frame.render_widget(Image::new(p), area);
                // Protocol images are drawn from the area's top-left corner.
                let s = p.size();
                Rect::new(area.x, area.y, s.width, s.height).intersection(area)
            }
            None => area,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(protocol: ProtocolType, wrap: bool) -> Encoder {
        Encoder {
            protocol,
            cell: FontSize::new(6, 13),
            wrap,
        }
    }

    fn sixel_data(wrap: bool) -> String {
        let img = RgbImage::from_pixel(24, 26, image::Rgb([200, 30, 30]));
        match encoder(ProtocolType::Sixel, wrap).encode(&img, Rect::new(2, 3, 8, 4), 7) {
            Ok(Protocol::Sixel(s)) => s.data,
            _ => panic!("a sixel encoder gives sixel"),
        }
    }

    #[test]
    fn sixel_for_tmux_is_one_passthrough_with_every_inner_escape_doubled() {
        let data = sixel_data(true);
        let inner = data
            .strip_prefix("\x1bPtmux;")
            .and_then(|d| d.strip_suffix("\x1b\\"))
            .expect("wrapped in one passthrough");
        // A single ESC inside (the sixel's own ST, say) would end the passthrough early.
        assert_eq!(inner.replace("\x1b\x1b", "").find('\x1b'), None);
        assert!(inner.contains("\x1b\x1bP") && inner.ends_with("\x1b\x1b\\"));
    }

    #[test]
    fn small_pictures_are_scaled_up_to_their_area() {
        // 32 pixels into 40 x 20 cells of 10 x 20 pixels (400 x 400): the picture fills it.
        let e = Encoder {
            protocol: ProtocolType::Sixel,
            cell: FontSize::new(10, 20),
            wrap: false,
        };
        let img = RgbImage::from_pixel(32, 32, image::Rgb([9, 200, 9]));
        let p = e.encode(&img, Rect::new(0, 0, 40, 20), 1).unwrap();
        assert_eq!((p.size().width, p.size().height), (40, 20));
    }

    #[test]
    fn sixel_outside_tmux_is_the_plain_sequence() {
        let data = sixel_data(false);
        assert!(!data.contains("tmux;") && data.contains("\x1bP") && data.ends_with("\x1b\\"));
    }

    #[test]
    fn the_status_line_names_the_method_and_the_fix() {
        let facts = Facts {
            tmux: Some(Tmux {
                attached: true,
                ..Tmux::default()
            }),
            ..Facts::default()
        };
        let (gfx, status) = Graphics::from_facts(GraphicsMode::Auto, &facts);
        assert!(matches!(gfx, Graphics::HalfBlocks));
        assert_eq!(
            status,
            format!("graphics: halfblocks — for sixel/kitty in tmux run `{PASSTHROUGH_HINT}`")
        );
        let (gfx, status) = Graphics::from_facts(GraphicsMode::Sixel, &Facts::default());
        assert_eq!(
            (gfx.name(), status.as_str()),
            ("sixel".into(), "graphics: sixel")
        );
    }
}
