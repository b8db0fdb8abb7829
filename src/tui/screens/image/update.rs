//! The image screen: opening an image through the model actor, the feature list, and the patch
//! cursor, which walks the high-resolution map (every tile) and names the base-view token at
//! the same spot.

use std::path::PathBuf;

use image::RgbImage;

use crate::engine::{Analysis, ModelError};
use crate::tui::app::{App, Effect, ImageFocus, ImageSource, Screen, TokenHere};
use crate::tui::data::{Picture, field_at};
use crate::tui::keymap::Action;
use crate::tui::update::step;

impl App {
    pub(crate) fn image_action(&mut self, a: Action) -> Vec<Effect> {
        match (self.image.focus, a) {
            (_, Action::FocusNext) => {
                self.image.focus = match self.image.focus {
                    ImageFocus::List => ImageFocus::Grid,
                    ImageFocus::Grid => ImageFocus::List,
                }
            }
            (_, Action::Open) => return self.open_image_feature(),
            (ImageFocus::Grid, _) => self.move_cursor(a),
            (ImageFocus::List, Action::Up | Action::Down | Action::First | Action::Last) => {
                let len = self.image.features.len();
                let sel = match a {
                    Action::Up => step(self.image.sel, len, -1),
                    Action::Down => step(self.image.sel, len, 1),
                    Action::First => 0,
                    _ => len.saturating_sub(1),
                };
                self.select_image_feature(sel);
            }
            _ => {}
        }
        vec![]
    }

    /// Arrows move one cell, page keys a base-view cell's worth, first / last to the corners.
    fn move_cursor(&mut self, a: Action) {
        let (h, w) = self.image.map_size();
        let (h, w) = (usize::from(h), usize::from(w));
        let big = self
            .image
            .analysis
            .as_ref()
            .map_or(1, |x| x.layout.grid_side as isize);
        let (r, c) = self.image.cursor;
        let (r, c) = (usize::from(r), usize::from(c));
        let (r, c) = match a {
            Action::Up => (step(r, h, -1), c),
            Action::Down => (step(r, h, 1), c),
            Action::Left => (r, step(c, w, -1)),
            Action::Right => (r, step(c, w, 1)),
            Action::PageUp => (step(r, h, -big), c),
            Action::PageDown => (step(r, h, big), c),
            Action::First => (0, 0),
            Action::Last => (h.saturating_sub(1), w.saturating_sub(1)),
            _ => (r, c),
        };
        self.image.cursor = (r as u16, c as u16);
    }

    pub(crate) fn select_image_feature(&mut self, i: usize) {
        self.image.sel = i;
        self.refresh_picture();
    }

    pub(crate) fn open_image_feature(&mut self) -> Vec<Effect> {
        match self.image.features.get(self.image.sel) {
            Some(&(f, _, _)) => self.open_feature(f),
            None => vec![],
        }
    }

    /// The tokens under the patch cursor (base view, then high resolution) and what fires there.
    pub fn features_at_cursor(&self) -> Vec<TokenHere> {
        self.image.tokens_at_cursor()
    }

    /// The open-image prompt: a dataset index or a file path.
    pub(crate) fn open_image(&mut self, text: &str) -> Vec<Effect> {
        if text.is_empty() {
            return vec![];
        }
        let source = match text.parse::<u32>() {
            Ok(i) => ImageSource::Dataset(i),
            Err(_) => ImageSource::Path(PathBuf::from(text)),
        };
        let im = &mut self.image;
        im.ticket += 1;
        im.label = match &source {
            ImageSource::Dataset(i) => format!("image {i}"),
            ImageSource::Path(p) => p
                .file_name()
                .map_or(text.to_string(), |n| n.to_string_lossy().into_owned()),
        };
        im.rgb = None;
        im.analysis = None;
        im.tokens.clear();
        im.features.clear();
        im.picture = None;
        im.cursor = (0, 0);
        im.pending = true;
        self.screen = Screen::Image;
        vec![Effect::Analyze {
            ticket: im.ticket,
            source,
        }]
    }

    pub(crate) fn on_image_loaded(
        &mut self,
        ticket: u64,
        result: Result<RgbImage, String>,
    ) -> Vec<Effect> {
        if ticket == self.image.ticket {
            match result {
                Ok(img) => self.image.rgb = Some(img),
                Err(e) => self.message = Some((e, true)),
            }
            self.refresh_picture();
        }
        vec![]
    }

    pub(crate) fn on_analyzed(
        &mut self,
        ticket: u64,
        result: Result<Analysis, ModelError>,
    ) -> Vec<Effect> {
        if ticket != self.image.ticket {
            return vec![];
        }
        self.image.pending = false;
        match result {
            Ok(a) => {
                self.image.features = a.features();
                self.image.tokens = a.layout.tokens();
                self.image.analysis = Some(a);
                self.image.sel = 0;
                self.message = Some((
                    format!(
                        "{}: {} features fire",
                        self.image.label,
                        self.image.features.len()
                    ),
                    false,
                ));
            }
            Err(ModelError::Superseded) => {}
            Err(e) => {
                self.message = Some((
                    format!("{}: {e}", self.image.label),
                    e != ModelError::Cancelled,
                ))
            }
        }
        self.refresh_picture();
        vec![]
    }

    fn refresh_picture(&mut self) {
        let im = &mut self.image;
        im.picture = match (&im.rgb, &im.analysis) {
            (Some(rgb), Some(a)) => {
                let acts = im
                    .features
                    .get(im.sel)
                    .map(|f| a.feature_acts(f.0))
                    .unwrap_or_default();
                let field = field_at(&a.layout, &acts, rgb.width(), rgb.height());
                Some(Picture {
                    label: im.label.clone(),
                    rgb: rgb.clone(),
                    field,
                    missing: None,
                })
            }
            _ => None,
        };
    }
}
