//! How pictures reach the terminal: our half blocks, or kitty / sixel / iTerm2 through
//! ratatui-image, chosen once at start.
//!
//! Protocol images are encoded once per (picture, rect) and cached, so a steady screen costs no
//! encoding; the cache is cleared when it grows past a screenful of pictures.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use image::{DynamicImage, RgbImage};
use ratatui::Frame;
use ratatui::layout::{Rect, Size};
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{Image, Resize};

use super::heatmap::{HalfBlocks, fitted_rect};

/// Requested graphics mode (`--graphics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphicsMode {
    /// Ask the terminal; half blocks inside tmux or when nothing better answers.
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

/// Draws pictures with the chosen method.
pub enum Graphics {
    /// Half-block cells (tests, tmux, plain SSH).
    HalfBlocks,
    /// A terminal image protocol.
    Protocol {
        /// The ratatui-image picker (font size and protocol).
        picker: Picker,
        /// Encoded images by (picture hash, rect).
        cache: HashMap<(u64, Rect), Protocol>,
    },
}

impl Graphics {
    /// Pick the method; call after entering the alternate screen, before reading events.
    pub fn detect(mode: GraphicsMode) -> Graphics {
        let in_tmux = std::env::var_os("TMUX").is_some();
        if mode == GraphicsMode::Halfblocks || (mode == GraphicsMode::Auto && in_tmux) {
            return Graphics::HalfBlocks;
        }
        let mut picker = match Picker::from_query_stdio() {
            Ok(p) => p,
            Err(_) if mode == GraphicsMode::Auto => return Graphics::HalfBlocks,
            // A forced protocol without a font-size answer: assume a common 10x20 cell.
            Err(_) => Picker::halfblocks(),
        };
        let forced = match mode {
            GraphicsMode::Kitty => Some(ProtocolType::Kitty),
            GraphicsMode::Sixel => Some(ProtocolType::Sixel),
            GraphicsMode::Iterm2 => Some(ProtocolType::Iterm2),
            _ => None,
        };
        if let Some(p) = forced {
            picker.set_protocol_type(p);
        }
        if picker.protocol_type() == ProtocolType::Halfblocks {
            return Graphics::HalfBlocks;
        }
        Graphics::Protocol {
            picker,
            cache: HashMap::new(),
        }
    }

    /// Name for the status line.
    pub fn name(&self) -> String {
        match self {
            Graphics::HalfBlocks => "halfblocks".into(),
            Graphics::Protocol { picker, .. } => {
                format!("{:?}", picker.protocol_type()).to_lowercase()
            }
        }
    }

    /// Draw `img` fitted into `area`; returns the rect the picture took.
    pub fn draw(&mut self, frame: &mut Frame<'_>, area: Rect, img: &RgbImage) -> Rect {
        match self {
            Graphics::HalfBlocks => {
                frame.render_widget(HalfBlocks(img), area);
                fitted_rect(img.width(), img.height(), area)
            }
            Graphics::Protocol { picker, cache } => {
                let mut h = DefaultHasher::new();
                img.as_raw().hash(&mut h);
                img.dimensions().hash(&mut h);
                let key = (h.finish(), area);
                if cache.len() > 64 {
                    cache.clear();
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(key) {
                    let dynimg = DynamicImage::ImageRgb8(img.clone());
                    let size = Size::new(area.width, area.height);
                    match picker.new_protocol(dynimg, size, Resize::Fit(None)) {
                        Ok(p) => {
                            slot.insert(p);
                        }
                        Err(_) => {
                            frame.render_widget(HalfBlocks(img), area);
                            return fitted_rect(img.width(), img.height(), area);
                        }
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
    }
}
