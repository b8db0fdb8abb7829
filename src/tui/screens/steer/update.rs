//! Keys, typed lines and model events of the steering screen. Pure like the rest of `update`:
//! generation and preset files are effects carried out by the runner.

use std::path::PathBuf;

use super::preset::Preset;
use super::state::{
    DEFAULT_PRESET_FILE, SteerInput, SteerRow, SteerState, Stream, cycle, parse_row, parse_strength,
};
use super::{SteerEffect, SteerMsg};
use crate::engine::{ModelError, Side, SteerEvent, SteerRequest};
use crate::generate::StrengthUnit;
use crate::sae::intervene::{Direction, Mode, Phase, TokenScope};
use crate::tui::app::{App, Effect, Prompt, Screen};
use crate::tui::keymap::Action;
use crate::tui::update::step;

impl App {
    /// Apply a keymap action on the steering screen.
    pub(crate) fn steer_action(&mut self, a: Action) -> Vec<Effect> {
        let len = self.steer.rows.len();
        let ask = |input: SteerInput, text: String| Some((Prompt::Steer(input), text));
        match a {
            Action::Up => self.steer.sel = step(self.steer.sel, len, -1),
            Action::Down => self.steer.sel = step(self.steer.sel, len, 1),
            Action::First => self.steer.sel = 0,
            Action::Last => self.steer.sel = len.saturating_sub(1),
            Action::AddRow => self.prompt = ask(SteerInput::AddRow, String::new()),
            Action::EditPrompt => self.prompt = ask(SteerInput::Prompt, self.steer.prompt.clone()),
            Action::EditImage => {
                self.prompt = ask(
                    SteerInput::Image,
                    self.steer.image.clone().unwrap_or_default(),
                )
            }
            Action::MaxTokens => {
                self.prompt = ask(SteerInput::MaxTokens, self.steer.max_new_tokens.to_string())
            }
            Action::SavePreset => self.prompt = ask(SteerInput::SavePreset, String::new()),
            Action::PageDown | Action::PageUp => {
                let half = (self.size.1 / 4).max(1);
                let delta = if a == Action::PageDown { half } else { 0 };
                self.steer_scroll(delta, half - delta);
            }
            Action::LoadPreset => self.prompt = ask(SteerInput::LoadPreset, String::new()),
            Action::Regenerate => return self.steer_restart(),
            Action::DeleteRow => {
                return match self.steer.remove_selected() {
                    Some(r) => {
                        self.message = Some((format!("feature {} removed", r.feature), false));
                        self.steer_restart()
                    }
                    None => self.no_row(),
                };
            }
            Action::TypeStrength | Action::Open => {
                let Some(r) = self.steer.selected() else {
                    return self.no_row();
                };
                let text = match r.unit {
                    StrengthUnit::Max => format!("{}x", r.strength),
                    StrengthUnit::Raw => r.strength.to_string(),
                };
                self.prompt = ask(SteerInput::Strength, text);
            }
            _ => return self.steer_edit(a),
        }
        vec![]
    }

    /// Edits of the selected row; each restarts the generations.
    fn steer_edit(&mut self, a: Action) -> Vec<Effect> {
        let max = self
            .steer
            .selected()
            .and_then(|r| self.row(r.feature))
            .map(|r| r.max);
        let Some(r) = self.steer.selected_mut() else {
            return match a {
                Action::StrengthUp
                | Action::StrengthDown
                | Action::StrengthUpCoarse
                | Action::StrengthDownCoarse
                | Action::CycleMode
                | Action::CycleUnit
                | Action::CyclePhase
                | Action::CycleTokens
                | Action::CycleDirection => self.no_row(),
                _ => vec![],
            };
        };
        let (fine, coarse) = r.steps();
        match a {
            Action::StrengthUp => r.nudge(fine),
            Action::StrengthDown => r.nudge(-fine),
            Action::StrengthUpCoarse => r.nudge(coarse),
            Action::StrengthDownCoarse => r.nudge(-coarse),
            Action::CycleMode => {
                let before = r.scope;
                r.mode = cycle(Mode::ALL, r.mode);
                r.scope.phase = r.mode.default_phase();
                if r.scope.check().is_err() {
                    r.scope.tokens = TokenScope::All;
                }
                // Say what changed besides the mode, or the phase moves without a word.
                let mut also = Vec::new();
                if r.scope.phase != before.phase {
                    also.push(format!("phase {} → {}", before.phase, r.scope.phase));
                }
                if r.scope.tokens != before.tokens {
                    also.push(format!("tokens {} → {}", before.tokens, r.scope.tokens));
                }
                let text = match also.is_empty() {
                    true => format!("feature {}: mode {}", r.feature, r.mode),
                    false => format!(
                        "feature {}: mode {} ({}, its default; p changes it)",
                        r.feature,
                        r.mode,
                        also.join(", ")
                    ),
                };
                self.message = Some((text, false));
            }
            Action::CycleUnit => {
                // Keep the raw value the model sees when the feature's max is known.
                let (unit, strength) = match (r.unit, max) {
                    (StrengthUnit::Max, Some(m)) => (StrengthUnit::Raw, r.strength * m),
                    (StrengthUnit::Raw, Some(m)) if m > 0.0 => (StrengthUnit::Max, r.strength / m),
                    (StrengthUnit::Max, _) => (StrengthUnit::Raw, r.strength),
                    (StrengthUnit::Raw, _) => (StrengthUnit::Max, r.strength),
                };
                r.unit = unit;
                r.strength = strength;
                r.nudge(0.0);
            }
            Action::CyclePhase => loop {
                r.scope.phase = cycle(Phase::ALL, r.scope.phase);
                if r.scope.check().is_ok() {
                    break;
                }
            },
            Action::CycleTokens => loop {
                r.scope.tokens = cycle(TokenScope::ALL, r.scope.tokens);
                if r.scope.check().is_ok() {
                    break;
                }
            },
            Action::CycleDirection => r.direction = cycle(Direction::ALL, r.direction),
            _ => return vec![],
        }
        self.steer_restart()
    }

    /// Scroll both generation panes `down` lines, then `up` lines (never above the top; the
    /// panes stop at their last line when drawn).
    pub(crate) fn steer_scroll(&mut self, down: u16, up: u16) {
        let st = &mut self.steer;
        st.scroll = st.scroll.saturating_add(down).saturating_sub(up);
    }

    fn no_row(&mut self) -> Vec<Effect> {
        self.message = Some((
            "no steering row: press a to add one, or S on a feature".into(),
            false,
        ));
        vec![]
    }

    /// Add the feature the current screen points at (feature shown, image or table selection).
    pub(crate) fn steer_add_current(&mut self) -> Vec<Effect> {
        let id = match self.screen {
            Screen::Feature => self.feature.id,
            Screen::Image => self.image.features.get(self.image.sel).map(|f| f.0),
            Screen::Features => self.selected_row().map(|r| r.id),
            _ => None,
        };
        let Some(id) = id else {
            self.message = Some(("no feature to steer here".into(), false));
            return vec![];
        };
        if let Some(i) = self.steer.rows.iter().position(|r| r.feature == id) {
            self.steer.sel = i;
            self.message = Some((
                format!("feature {id} is already a steering row (4 shows it)"),
                false,
            ));
            return vec![];
        }
        let row = SteerRow::default_for(id);
        self.steer.upsert(row);
        self.message = Some((
            format!(
                "feature {id} added to steering ({} {}) · 4 opens the panel",
                row.mode,
                row.strength_text()
            ),
            false,
        ));
        self.steer_restart()
    }

    /// A typed line of the steering screen was entered.
    pub(crate) fn steer_input(&mut self, input: SteerInput, text: String) -> Vec<Effect> {
        let text = text.trim().to_string();
        match input {
            SteerInput::Prompt if text.is_empty() => {
                self.message = Some(("the prompt is empty; kept the old one".into(), true));
            }
            SteerInput::Prompt => {
                self.steer.prompt = text;
                return self.steer_restart();
            }
            SteerInput::Image => {
                self.steer.image = (!text.is_empty()).then_some(text);
                return self.steer_restart();
            }
            SteerInput::AddRow => match parse_row(&text) {
                Ok(row) => match self.out_of_range(row.feature) {
                    Some(why) => self.message = Some((why, true)),
                    None => {
                        self.steer.upsert(row);
                        self.message = Some((
                            format!(
                                "feature {} added to steering ({} {})",
                                row.feature,
                                row.mode,
                                row.strength_text()
                            ),
                            false,
                        ));
                        return self.steer_restart();
                    }
                },
                Err(e) => self.message = Some((format!("{e:#}"), true)),
            },
            SteerInput::Strength => match (parse_strength(&text), self.steer.selected_mut()) {
                (Ok((s, unit)), Some(r)) => {
                    r.strength = s;
                    r.unit = unit;
                    return self.steer_restart();
                }
                (Err(e), _) => self.message = Some((format!("{e:#}"), true)),
                (_, None) => return self.no_row(),
            },
            SteerInput::MaxTokens => match text.parse::<usize>() {
                Ok(n) if (1..=4096).contains(&n) => {
                    self.steer.max_new_tokens = n;
                    return self.steer_restart();
                }
                _ => {
                    self.message =
                        Some((format!("{text:?}: give a token count from 1 to 4096"), true))
                }
            },
            SteerInput::LoadPreset if text.is_empty() => {}
            SteerInput::SavePreset => {
                let preset = Preset::of(&self.steer);
                let path = if text.is_empty() {
                    PathBuf::from(DEFAULT_PRESET_FILE)
                } else {
                    PathBuf::from(text)
                };
                return vec![Effect::Steer(SteerEffect::SavePreset { path, preset })];
            }
            SteerInput::LoadPreset => {
                return vec![Effect::Steer(SteerEffect::LoadPreset(PathBuf::from(text)))];
            }
        }
        vec![]
    }

    /// Send the current settings as a new request; older requests' events are ignored from now.
    pub(crate) fn steer_restart(&mut self) -> Vec<Effect> {
        let mut edits = Vec::with_capacity(self.steer.rows.len());
        for r in &self.steer.rows {
            match r.spec(self.row(r.feature).map(|x| x.max)) {
                Ok(s) => edits.push(s),
                Err(e) => {
                    self.message = Some((format!("{e:#}"), true));
                    return vec![];
                }
            }
        }
        let st = &mut self.steer;
        st.ticket += 1;
        st.pending = true;
        st.error = None;
        st.scroll = 0;
        let request = SteerRequest {
            ticket: st.ticket,
            prompt: st.prompt.clone(),
            image: None,
            edits,
            max_new_tokens: st.max_new_tokens,
            sampling: st.sampling,
        };
        vec![Effect::Steer(SteerEffect::Generate {
            request,
            image: st.image.clone(),
        })]
    }

    /// A result for the steering screen.
    pub(crate) fn steer_event(&mut self, msg: SteerMsg) -> Vec<Effect> {
        match msg {
            SteerMsg::Gen(ev) => return self.steer_stream(ev),
            SteerMsg::PresetSaved { path, result } => {
                self.message = Some(match result {
                    Ok(()) => (format!("preset saved to {}", path.display()), false),
                    Err(e) => (e, true),
                });
            }
            SteerMsg::PresetLoaded { path, result } => match result {
                Ok(p) => {
                    if let Some(why) = p.rows.iter().find_map(|r| self.out_of_range(r.feature)) {
                        self.message = Some((format!("preset {}: {why}", path.display()), true));
                        return vec![];
                    }
                    let rows = match p.rows.len() {
                        1 => "1 row".to_string(),
                        n => format!("{n} rows"),
                    };
                    p.apply(&mut self.steer);
                    self.message =
                        Some((format!("preset {} loaded: {rows}", path.display()), false));
                    return self.steer_restart();
                }
                Err(e) => self.message = Some((e, true)),
            },
        }
        vec![]
    }

    fn steer_stream(&mut self, ev: SteerEvent) -> Vec<Effect> {
        let st = &mut self.steer;
        if ev.ticket() != st.ticket {
            // An older request's tail end: nothing on screen changes.
            self.dirty = false;
            return vec![];
        }
        let ticket = st.ticket;
        fn side_of(st: &mut SteerState, side: Side) -> &mut Stream {
            match side {
                Side::Default => &mut st.default,
                Side::Steered => &mut st.steered,
            }
        }
        match ev {
            SteerEvent::Started { side, cached, .. } => {
                *side_of(st, side) = Stream {
                    ticket,
                    cached,
                    ..Default::default()
                };
                if side == Side::Steered {
                    st.warnings.clear();
                }
            }
            SteerEvent::Token { side, id, text, .. } => side_of(st, side).tokens.push((id, text)),
            SteerEvent::Finished {
                side,
                stop,
                tail,
                tokens_per_second,
                warnings,
                ..
            } => {
                let s = side_of(st, side);
                s.stop = Some(stop);
                s.tail = tail;
                s.rate = tokens_per_second;
                if side == Side::Steered {
                    st.warnings = warnings;
                }
            }
            SteerEvent::Ended { result, .. } => {
                st.pending = false;
                match result {
                    Ok(()) | Err(ModelError::Superseded) => {}
                    Err(ModelError::Cancelled) => {
                        self.message = Some(("steering cancelled".into(), false))
                    }
                    Err(e) => {
                        // The actor's own failures say which side failed; the rest need saying.
                        let text = match e {
                            ModelError::Failed(why) => why,
                            other => format!("steering: {other}"),
                        };
                        st.error = Some(text.clone());
                        self.message = Some((text, true));
                    }
                }
            }
        }
        vec![]
    }
}
