//! `App::update`: the one place state changes. Pure: no I/O, no threads, no clocks; work that
//! needs them is returned as [`Effect`]s for the runner.

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, MouseEventKind};

use super::app::{App, Column, Effect, Event, ImageFocus, ImageSource, Prompt, Screen};
use super::data::{Picture, field_at};
use super::keymap::{Action, Key, Lookup};
use super::ui::feature::grid_cols;
use crate::engine::ModelError;
use crate::explain::overlay::OverlayStyle;

fn step(pos: usize, len: usize, delta: isize) -> usize {
    if len == 0 {
        return 0;
    }
    pos.saturating_add_signed(delta).min(len - 1)
}

impl App {
    /// Apply one event; returns the work it asks for.
    pub fn update(&mut self, event: Event) -> Vec<Effect> {
        self.dirty = true;
        match event {
            Event::Key(k) => self.on_key(k),
            Event::Mouse(m) => match m.kind {
                MouseEventKind::ScrollDown => self.on_action(Action::Down),
                MouseEventKind::ScrollUp => self.on_action(Action::Up),
                _ => {
                    self.dirty = false;
                    vec![]
                }
            },
            Event::Resize(w, h) => {
                self.size = (w, h);
                vec![]
            }
            Event::Tick(status) => {
                self.ticks += 1;
                // Redraw on a tick only when something moves (spinner, progress).
                self.dirty = status.busy.is_some() || status != self.actor;
                self.actor = status;
                vec![]
            }
            Event::FeatureLoaded { id, result } => {
                if self.feature.id == Some(id) {
                    match result {
                        Ok(d) => self.feature.detail = Some(d),
                        Err(e) => self.message = Some((format!("feature {id}: {e}"), true)),
                    }
                }
                vec![]
            }
            Event::ImageLoaded { ticket, result } => {
                if ticket == self.image.ticket {
                    match result {
                        Ok(img) => self.image.rgb = Some(img),
                        Err(e) => self.message = Some((e, true)),
                    }
                    self.refresh_picture();
                }
                vec![]
            }
            Event::Analyzed { ticket, result } => {
                if ticket == self.image.ticket {
                    self.image.pending = false;
                    match result {
                        Ok(a) => {
                            self.image.features = a.features();
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
                }
                vec![]
            }
        }
    }

    fn on_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if k.kind == KeyEventKind::Release {
            self.dirty = false;
            return vec![];
        }
        if let Some((prompt, mut text)) = self.prompt.take() {
            match k.code {
                KeyCode::Enter => return self.submit_prompt(prompt, text.trim().to_string()),
                KeyCode::Esc => return vec![],
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) => text.push(c),
                _ => {}
            }
            self.prompt = Some((prompt, text));
            return vec![];
        }
        let Some(key) = Key::from_event(&k) else {
            return vec![];
        };
        self.pending_keys.push(key);
        match self.keymap.lookup(self.screen.mode(), &self.pending_keys) {
            Lookup::Prefix => vec![],
            Lookup::Action(a) => {
                self.pending_keys.clear();
                self.on_action(a)
            }
            Lookup::None => {
                // A chord that went nowhere: try the last key alone.
                let retry = self.pending_keys.len() > 1;
                self.pending_keys.clear();
                // Any key closes the help, bound or not.
                self.help = false;
                if retry { self.on_key(k) } else { vec![] }
            }
        }
    }

    /// Apply one keymap action.
    pub fn on_action(&mut self, a: Action) -> Vec<Effect> {
        self.dirty = true;
        if self.help {
            // Any key closes the help; quit still quits.
            self.help = false;
            return if a == Action::Quit {
                vec![Effect::Quit]
            } else {
                vec![]
            };
        }
        match a {
            Action::Quit => return vec![Effect::Quit],
            Action::Help => self.help = true,
            Action::Back => return self.back(),
            Action::Features => self.screen = Screen::Features,
            Action::Feature if self.feature.id.is_some() => self.screen = Screen::Feature,
            Action::Feature => return self.open_selected(),
            Action::Image if self.image.ticket > 0 => self.screen = Screen::Image,
            Action::Image => {
                self.message = Some(("no image yet: press o to open one".into(), false))
            }
            Action::Search => self.prompt = Some((Prompt::Search, self.features.search.clone())),
            Action::FilterDensity => self.prompt = Some((Prompt::Density, String::new())),
            Action::Jump => self.prompt = Some((Prompt::Jump, String::new())),
            Action::OpenImage => self.prompt = Some((Prompt::OpenImage, String::new())),
            Action::ToggleStyle => {
                self.style = if self.mask_style() {
                    OverlayStyle::default()
                } else {
                    OverlayStyle::DarkenMask
                };
            }
            _ => {
                return match self.screen {
                    Screen::Features => self.features_action(a),
                    Screen::Feature => self.feature_action(a),
                    Screen::Image => self.image_action(a),
                };
            }
        }
        vec![]
    }

    fn back(&mut self) -> Vec<Effect> {
        if self.feature.full {
            self.feature.full = false;
        } else if self.image.pending || self.actor.busy.is_some() {
            self.image.pending = false;
            self.message = Some(("cancelled".into(), false));
            return vec![Effect::CancelModel];
        } else if self.screen != Screen::Features {
            self.screen = Screen::Features;
        } else if !self.features.search.is_empty() || self.features.density.is_some() {
            self.features.search.clear();
            self.features.density = None;
            self.refresh_view();
        }
        vec![]
    }

    fn page(&self) -> isize {
        self.size.1.saturating_sub(6).max(1) as isize
    }

    fn features_action(&mut self, a: Action) -> Vec<Effect> {
        let len = self.features.view.len();
        let sel = self.features.sel;
        let page = self.page();
        self.features.sel = match a {
            Action::Up => step(sel, len, -1),
            Action::Down => step(sel, len, 1),
            Action::PageUp => step(sel, len, -page),
            Action::PageDown => step(sel, len, page),
            Action::First => 0,
            Action::Last => len.saturating_sub(1),
            Action::Open | Action::Right => return self.open_selected(),
            Action::SortNext | Action::SortReverse => {
                let (col, desc) = self.features.sort;
                self.features.sort = if a == Action::SortNext {
                    // Numbers read best largest-first; id and text ascending.
                    let next = (col + 1) % Column::ALL.len();
                    (
                        next,
                        !matches!(Column::ALL[next], Column::Id | Column::Explanation),
                    )
                } else {
                    (col, !desc)
                };
                self.refresh_view();
                sel
            }
            _ => sel,
        };
        vec![]
    }

    fn open_feature(&mut self, id: u32) -> Vec<Effect> {
        self.screen = Screen::Feature;
        if self.feature.id == Some(id) && self.feature.detail.is_some() {
            return vec![];
        }
        self.feature.id = Some(id);
        self.feature.detail = None;
        self.feature.sel = 0;
        self.feature.full = false;
        vec![Effect::LoadFeature(id)]
    }

    fn open_selected(&mut self) -> Vec<Effect> {
        match self.selected_row().map(|r| r.id) {
            Some(id) => self.open_feature(id),
            None => {
                self.message = Some(("no feature selected".into(), false));
                vec![]
            }
        }
    }

    fn feature_action(&mut self, a: Action) -> Vec<Effect> {
        let len = self.feature.detail.as_ref().map_or(0, |d| d.examples.len());
        let cols = grid_cols(self.size.0) as isize;
        let sel = self.feature.sel;
        self.feature.sel = match a {
            Action::Left => step(sel, len, -1),
            Action::Right => step(sel, len, 1),
            Action::Up => step(sel, len, -cols),
            Action::Down => step(sel, len, cols),
            Action::First => 0,
            Action::Last => len.saturating_sub(1),
            Action::Open => {
                self.feature.full = !self.feature.full && len > 0;
                sel
            }
            Action::PageDown | Action::PageUp => {
                // Next / previous feature in the table's order.
                let delta = if a == Action::PageDown { 1 } else { -1 };
                let v = self.features.view.len();
                self.features.sel = step(self.features.sel, v, delta);
                return self.open_selected();
            }
            _ => sel,
        };
        vec![]
    }

    fn image_action(&mut self, a: Action) -> Vec<Effect> {
        let grid = self
            .image
            .analysis
            .as_ref()
            .map_or(0, |x| x.layout.grid_side as usize);
        match (self.image.focus, a) {
            (_, Action::FocusNext) => {
                self.image.focus = match self.image.focus {
                    ImageFocus::List => ImageFocus::Grid,
                    ImageFocus::Grid => ImageFocus::List,
                }
            }
            (ImageFocus::Grid, Action::Up | Action::Down | Action::Left | Action::Right) => {
                let (r, c) = self.image.cursor;
                let (r, c) = (usize::from(r), usize::from(c));
                let (r, c) = match a {
                    Action::Up => (step(r, grid, -1), c),
                    Action::Down => (step(r, grid, 1), c),
                    Action::Left => (r, step(c, grid, -1)),
                    _ => (r, step(c, grid, 1)),
                };
                self.image.cursor = (r as u16, c as u16);
            }
            (ImageFocus::List, Action::Up | Action::Down | Action::First | Action::Last) => {
                let len = self.image.features.len();
                self.image.sel = match a {
                    Action::Up => step(self.image.sel, len, -1),
                    Action::Down => step(self.image.sel, len, 1),
                    Action::First => 0,
                    _ => len.saturating_sub(1),
                };
                self.refresh_picture();
            }
            (_, Action::Open) => {
                if let Some(&(f, _, _)) = self.image.features.get(self.image.sel) {
                    return self.open_feature(f);
                }
            }
            _ => {}
        }
        vec![]
    }

    /// Features firing at the patch under the cursor (base view token).
    pub fn features_at_cursor(&self) -> Vec<(u32, f32)> {
        let Some(a) = &self.image.analysis else {
            return vec![];
        };
        let g = a.layout.grid_side as u16;
        let (r, c) = self.image.cursor;
        a.at_token(r * g + c)
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

    fn submit_prompt(&mut self, prompt: Prompt, text: String) -> Vec<Effect> {
        match prompt {
            Prompt::Search => {
                self.features.search = text;
                self.screen = Screen::Features;
                self.refresh_view();
            }
            Prompt::Density => {
                self.features.density = match parse_range(&text) {
                    Ok(r) => r,
                    Err(e) => {
                        self.message = Some((e, true));
                        return vec![];
                    }
                };
                self.screen = Screen::Features;
                self.refresh_view();
            }
            Prompt::Jump => match text.trim_start_matches('#').parse::<u32>() {
                Ok(id) if self.row(id).is_some() => {
                    if !self
                        .features
                        .view
                        .iter()
                        .any(|&i| self.features.rows[i].id == id)
                    {
                        self.features.search.clear();
                        self.features.density = None;
                        self.refresh_view();
                    }
                    let rows = &self.features.rows;
                    self.features.sel = self
                        .features
                        .view
                        .iter()
                        .position(|&i| rows[i].id == id)
                        .unwrap_or(0);
                    return self.open_feature(id);
                }
                Ok(id) => {
                    self.message = Some((format!("feature {id} never fired in this store"), true))
                }
                Err(_) => self.message = Some((format!("{text:?} is not a feature number"), true)),
            },
            Prompt::OpenImage if text.is_empty() => {}
            Prompt::OpenImage => {
                let source = match text.parse::<u32>() {
                    Ok(i) => ImageSource::Dataset(i),
                    Err(_) => ImageSource::Path(PathBuf::from(&text)),
                };
                let im = &mut self.image;
                im.ticket += 1;
                im.label = match &source {
                    ImageSource::Dataset(i) => format!("image {i}"),
                    ImageSource::Path(p) => p
                        .file_name()
                        .map_or(text.clone(), |n| n.to_string_lossy().into_owned()),
                };
                im.rgb = None;
                im.analysis = None;
                im.features.clear();
                im.picture = None;
                im.cursor = (0, 0);
                im.pending = true;
                self.screen = Screen::Image;
                return vec![Effect::Analyze {
                    ticket: im.ticket,
                    source,
                }];
            }
        }
        vec![]
    }
}

/// Parse `min..max` (either side may be empty); empty text clears the filter.
pub fn parse_range(text: &str) -> Result<Option<(f64, f64)>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let bad = || format!("{text:?}: write a density range like 0.001..0.1, ..0.05 or 0.01..");
    let (lo, hi) = text.split_once("..").ok_or_else(bad)?;
    let num = |s: &str, d: f64| {
        if s.trim().is_empty() {
            Ok(d)
        } else {
            s.trim().parse::<f64>().map_err(|_| bad())
        }
    };
    Ok(Some((num(lo, 0.0)?, num(hi, f64::INFINITY)?)))
}
