//! State of the image screen: the image, the actor's analysis, the feature list and the patch
//! cursor over the high-resolution map.

use image::RgbImage;

use crate::engine::Analysis;
use crate::model::anyres::{ImageToken, TokenKind};
use crate::tui::data::Picture;

/// Which part of the image screen takes the arrows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFocus {
    /// The feature list.
    #[default]
    List,
    /// The patch cursor.
    Grid,
}

/// The image screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageState {
    /// Latest request.
    pub ticket: u64,
    /// Caption (dataset id or file name).
    pub label: String,
    /// The image, once read.
    pub rgb: Option<RgbImage>,
    /// The actor's analysis, once done.
    pub analysis: Option<Analysis>,
    /// The analysis's image tokens in sequence order (base view, then high-res rows).
    pub tokens: Vec<ImageToken>,
    /// Features firing on the image: (feature, max, tokens).
    pub features: Vec<(u32, f32, usize)>,
    /// Selected feature in `features`.
    pub sel: usize,
    /// Patch cursor (row, col) in the unpadded high-resolution map, which covers every tile.
    pub cursor: (u16, u16),
    /// Focused pane.
    pub focus: ImageFocus,
    /// The selected feature's heatmap on this image.
    pub picture: Option<Picture>,
    /// Waiting for the actor.
    pub pending: bool,
}

/// One image token under the cursor and the features firing there.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenHere {
    /// Index among the image tokens.
    pub index: u16,
    /// The token (kind, tile, grid position, pixel rect).
    pub token: ImageToken,
    /// Features firing at it, strongest first.
    pub features: Vec<(u32, f32)>,
}

impl ImageState {
    /// Rows and columns of the high-resolution map (0 x 0 before the analysis).
    pub fn map_size(&self) -> (u16, u16) {
        self.analysis.as_ref().map_or((0, 0), |a| {
            let (h, w) = a.layout.unpadded();
            (h as u16, w as u16)
        })
    }

    /// Index of the high-resolution token at map cell (row, col).
    fn highres_index(&self, row: u16, col: u16) -> Option<usize> {
        let a = self.analysis.as_ref()?;
        let (h, w) = self.map_size();
        (row < h && col < w).then(|| {
            // Each high-res row ends with a newline token, hence the `w + 1` stride.
            a.layout.base_tokens() + usize::from(row) * (usize::from(w) + 1) + usize::from(col)
        })
    }

    /// The high-resolution token under the cursor and the base-view token at the same spot.
    pub fn tokens_at_cursor(&self) -> Vec<TokenHere> {
        let Some(a) = &self.analysis else {
            return vec![];
        };
        let here = |i: usize| {
            self.tokens.get(i).map(|t| TokenHere {
                index: i as u16,
                token: *t,
                features: a.at_token(i as u16),
            })
        };
        let (r, c) = self.cursor;
        let Some(hi) = self.highres_index(r, c).and_then(here) else {
            return here(0).into_iter().collect();
        };
        let base = hi.token.rect.and_then(|p| {
            let (cx, cy) = ((p.x0 + p.x1) / 2.0, (p.y0 + p.y1) / 2.0);
            self.token_at_pixel(TokenKind::Base, cx, cy)
        });
        base.and_then(here).into_iter().chain([hi]).collect()
    }

    /// Index of the token of `kind` whose pixel rect holds (x, y) of the original image.
    pub fn token_at_pixel(&self, kind: TokenKind, x: f32, y: f32) -> Option<usize> {
        self.tokens.iter().position(|t| {
            t.kind == kind
                && t.rect
                    .is_some_and(|p| x >= p.x0 && x < p.x1 && y >= p.y0 && y < p.y1)
        })
    }

    /// Put the cursor on the high-resolution cell nearest to (x, y) of the original image (the
    /// cell holding it, unless the point lies in the sliver unpadding cut off).
    pub fn cursor_to_pixel(&mut self, x: f32, y: f32) -> bool {
        let dist = |t: &ImageToken| {
            t.rect.map_or(f32::INFINITY, |p| {
                let dx = (p.x0 - x).max(x - p.x1).max(0.0);
                let dy = (p.y0 - y).max(y - p.y1).max(0.0);
                dx * dx + dy * dy
            })
        };
        let best = self
            .tokens
            .iter()
            .filter(|t| t.kind == TokenKind::HighRes)
            .min_by(|a, b| dist(a).total_cmp(&dist(b)));
        match best {
            Some(t) => {
                self.cursor = (t.row, t.col);
                true
            }
            None => false,
        }
    }
}
