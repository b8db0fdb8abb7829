//! Mouse events, resolved against the regions the last frame recorded ([`Hit`]): a click selects,
//! a click on what is already selected opens it, the wheel scrolls what is under the pointer.

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use crate::tui::app::{App, Effect, Hit, ImageFocus, Screen};
use crate::tui::keymap::Action;

impl App {
    pub(super) fn on_mouse(&mut self, m: MouseEvent) -> Vec<Effect> {
        let hit = self.hit_at(m.column, m.row);
        match m.kind {
            MouseEventKind::Down(MouseButton::Left) => self.click(m.column, m.row, hit),
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
                let down = m.kind == MouseEventKind::ScrollDown;
                self.scroll(down, hit.map(|h| h.1))
            }
            _ => {
                // Moves and releases change nothing; no redraw for them.
                self.dirty = false;
                vec![]
            }
        }
    }

    fn scroll(&mut self, down: bool, hit: Option<Hit>) -> Vec<Effect> {
        let a = if down { Action::Down } else { Action::Up };
        if self.help {
            return self.on_action(a);
        }
        if self.prompt.is_some() {
            return vec![];
        }
        match (self.screen, hit) {
            (Screen::Feature, _) if self.feature.full => {
                let a = if down { Action::Right } else { Action::Left };
                self.feature_action(a)
            }
            (Screen::Feature, _) => self.feature_action(a),
            (Screen::Image, Some(Hit::Picture)) => {
                self.image.focus = ImageFocus::Grid;
                self.image_action(a)
            }
            (Screen::Image, _) => {
                self.image.focus = ImageFocus::List;
                self.image_action(a)
            }
            (Screen::Steer, Some(Hit::SteerText)) => {
                let (d, u) = if down { (3, 0) } else { (0, 3) };
                self.steer_scroll(d, u);
                vec![]
            }
            _ => self.on_action(a),
        }
    }

    fn click(&mut self, x: u16, y: u16, hit: Option<(Rect, Hit)>) -> Vec<Effect> {
        if self.prompt.is_some() {
            return vec![];
        }
        if self.help {
            self.help = false;
            return vec![];
        }
        let Some((rect, hit)) = hit else {
            self.dirty = false;
            return vec![];
        };
        match hit {
            Hit::Tab(s) => self.show(s),
            Hit::Header(col) => {
                self.sort_by(col);
                vec![]
            }
            Hit::FeatureRow(i) if i == self.features.sel => self.open_selected(),
            Hit::FeatureRow(i) => {
                self.features.sel = i.min(self.features.view.len().saturating_sub(1));
                vec![]
            }
            Hit::Example(i) if i == self.feature.sel => self.toggle_full(),
            Hit::Example(i) => self.select_example(i),
            Hit::Full => self.toggle_full(),
            Hit::Picture => {
                self.image.focus = ImageFocus::Grid;
                let (ow, oh) = self.image.analysis.as_ref().map_or((0.0, 0.0), |a| {
                    (a.layout.original.1 as f32, a.layout.original.0 as f32)
                });
                // The rect is the picture as drawn; the cell centre maps to a point of the image.
                let fx = (f32::from(x - rect.x) + 0.5) / f32::from(rect.width);
                let fy = (f32::from(y - rect.y) + 0.5) / f32::from(rect.height);
                self.image.cursor_to_pixel(fx * ow, fy * oh);
                vec![]
            }
            Hit::ImageFeature(i) if i == self.image.sel => {
                self.image.focus = ImageFocus::List;
                self.open_image_feature()
            }
            Hit::ImageFeature(i) => {
                self.image.focus = ImageFocus::List;
                self.select_image_feature(i);
                vec![]
            }
            Hit::Help | Hit::SteerText => vec![],
        }
    }
}
