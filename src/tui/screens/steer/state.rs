//! The steering panel's state: prompt, rows, the two streams, and the strength arithmetic.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::engine::SteerSpec;
use crate::generate::{
    DEFAULT_MODE, DEFAULT_STRENGTH, DEFAULT_UNIT, Sampling, StopReason, StrengthUnit,
};
use crate::sae::intervene::{Direction, Mode, Scope, TokenScope};

/// Prompt used until the user types one.
pub const DEFAULT_PROMPT: &str = "Describe what you see.";
/// File a preset is saved to when no name is typed.
pub const DEFAULT_PRESET_FILE: &str = "steer.toml";
/// Tokens generated per side unless the user or a preset says otherwise.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 48;

/// One steering row as the user sees and edits it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SteerRow {
    /// Latent index.
    pub feature: u32,
    /// How the residual changes.
    pub mode: Mode,
    /// Strength in `unit`.
    pub strength: f32,
    /// `raw`, or `max` (× the feature's cached max activation).
    pub unit: StrengthUnit,
    /// Positions edited.
    pub scope: Scope,
    /// Decoder vector for `add`.
    #[serde(default = "raw_direction")]
    pub direction: Direction,
}

fn raw_direction() -> Direction {
    Direction::Raw
}

impl SteerRow {
    /// A row with the mode's default phase over all tokens.
    pub fn new(feature: u32, mode: Mode, strength: f32, unit: StrengthUnit) -> Self {
        Self {
            feature,
            mode,
            strength,
            unit,
            scope: Scope {
                phase: mode.default_phase(),
                tokens: TokenScope::All,
            },
            direction: Direction::Raw,
        }
    }

    /// A row of `feature` with the steering every front end starts from (`glint --batch steer`'s
    /// defaults).
    pub fn default_for(feature: u32) -> Self {
        Self::new(feature, DEFAULT_MODE, DEFAULT_STRENGTH, DEFAULT_UNIT)
    }

    /// The fine and coarse strength steps of this row's unit.
    pub fn steps(&self) -> (f32, f32) {
        match self.unit {
            StrengthUnit::Max => (0.1, 1.0),
            StrengthUnit::Raw => (1.0, 10.0),
        }
    }

    /// Move the strength by `delta`, rounded so repeated steps and unit round trips do not drift.
    pub fn nudge(&mut self, delta: f32) {
        self.strength = round_significant(self.strength + delta);
    }

    /// The strength with its unit, e.g. `2.5×max` or `40`.
    pub fn strength_text(&self) -> String {
        match self.unit {
            StrengthUnit::Max => format!("{}×max", self.strength),
            StrengthUnit::Raw => format!("{}", self.strength),
        }
    }

    /// The raw value for the model, given the feature's cached max (needed for `max` units).
    pub fn spec(&self, max: Option<f32>) -> Result<SteerSpec> {
        let value = self.unit.to_raw(self.strength, max).with_context(|| {
            format!(
                "feature {}: no cached max activation in this store; press u for raw units",
                self.feature
            )
        })?;
        Ok(SteerSpec {
            feature: self.feature,
            mode: self.mode,
            value,
            direction: self.direction,
            scope: self.scope,
        })
    }
}

/// `x` rounded to six significant digits: far below any step, far above f32's rounding noise,
/// and independent of the magnitude (raw strengths of small features are small numbers).
fn round_significant(x: f32) -> f32 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let x = f64::from(x);
    let scale = 10f64.powi(5 - x.abs().log10().floor() as i32);
    ((x * scale).round() / scale) as f32
}

/// Parse a typed strength: `2.5x` (or `2.5×`, `2.5xmax`) is × the cached max, a bare number is raw.
pub fn parse_strength(text: &str) -> Result<(f32, StrengthUnit)> {
    let t = text.trim().to_ascii_lowercase();
    let (num, unit) = match t
        .strip_suffix("xmax")
        .or_else(|| t.strip_suffix("×max"))
        .or_else(|| t.strip_suffix('x'))
        .or_else(|| t.strip_suffix('×'))
    {
        Some(n) => (n.trim(), StrengthUnit::Max),
        None => (
            t.strip_suffix("raw").unwrap_or(&t).trim(),
            StrengthUnit::Raw,
        ),
    };
    match num.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok((v, unit)),
        _ => bail!("{text:?} is not a strength: write a number (raw) or e.g. 2.5x (× the max)"),
    }
}

/// Parse a typed row: `FEATURE [MODE] [STRENGTH]`, e.g. `12`, `12 add 40`, `7 replace 3x`.
pub fn parse_row(text: &str) -> Result<SteerRow> {
    let mut parts = text.split_whitespace();
    let Some(first) = parts.next() else {
        bail!("type a feature number, optionally a mode and a strength: 12 clamp 3x");
    };
    let feature = first
        .trim_start_matches('#')
        .parse::<u32>()
        .with_context(|| format!("{first:?} is not a feature number"))?;
    let mut row = SteerRow::default_for(feature);
    for part in parts {
        if let Ok(mode) = part.parse::<Mode>() {
            row.mode = mode;
            row.scope.phase = mode.default_phase();
        } else {
            let (s, u) = parse_strength(part).with_context(|| {
                format!("{part:?} is neither a mode (replace, clamp, add) nor a strength")
            })?;
            row.strength = s;
            row.unit = u;
        }
    }
    Ok(row)
}

/// What a typed line on the steering screen is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteerInput {
    /// The prompt text.
    Prompt,
    /// The image (file path or dataset index; empty clears).
    Image,
    /// A new row.
    AddRow,
    /// The selected row's strength.
    Strength,
    /// Tokens generated per side.
    MaxTokens,
    /// File to save the preset to.
    SavePreset,
    /// File to load a preset from.
    LoadPreset,
}

impl SteerInput {
    /// Label shown before the typed text.
    pub fn label(self) -> &'static str {
        match self {
            SteerInput::Prompt => "steering prompt: ",
            SteerInput::Image => "image (file path or dataset index, empty for none): ",
            SteerInput::AddRow => "add feature (12 = replace 50; 12 add 40; 7 clamp 3x): ",
            SteerInput::Strength => "strength (number = raw, 2.5x = × cached max): ",
            SteerInput::MaxTokens => "max new tokens per side: ",
            SteerInput::SavePreset => "save preset to (.toml or .json; Enter alone: steer.toml): ",
            SteerInput::LoadPreset => "load preset from (.toml or .json): ",
        }
    }
}

/// One side's streamed text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stream {
    /// The request this text belongs to (older text is shown dimmed until replaced).
    pub ticket: u64,
    /// `(token id, text)` as streamed.
    pub tokens: Vec<(u32, String)>,
    /// Text held back for an incomplete character, once finished.
    pub tail: String,
    /// Why it ended, once it has.
    pub stop: Option<StopReason>,
    /// Decode tokens per second.
    pub rate: f64,
    /// Replayed from the previous run of the same prompt.
    pub cached: bool,
}

impl Stream {
    /// The whole text so far.
    pub fn text(&self) -> String {
        let mut s: String = self.tokens.iter().map(|t| t.1.as_str()).collect();
        s.push_str(&self.tail);
        s
    }
}

/// The steering screen.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerState {
    /// The user prompt.
    pub prompt: String,
    /// Image as typed: a file path or a dataset index.
    pub image: Option<String>,
    /// Steering rows, applied together.
    pub rows: Vec<SteerRow>,
    /// Selected row.
    pub sel: usize,
    /// Tokens generated per side.
    pub max_new_tokens: usize,
    /// Token choice for both sides.
    pub sampling: Sampling,
    /// Latest request sent (0: none yet).
    pub ticket: u64,
    /// Waiting for the latest request to end.
    pub pending: bool,
    /// The unsteered text.
    pub default: Stream,
    /// The steered text.
    pub steered: Stream,
    /// Warnings of the latest steered run.
    pub warnings: Vec<String>,
    /// Why the latest request failed, if it did.
    pub error: Option<String>,
    /// Lines the two generation panes are scrolled by.
    pub scroll: u16,
}

impl Default for SteerState {
    fn default() -> Self {
        Self {
            prompt: DEFAULT_PROMPT.into(),
            image: None,
            rows: Vec::new(),
            sel: 0,
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            sampling: Sampling::Greedy,
            ticket: 0,
            pending: false,
            default: Stream::default(),
            steered: Stream::default(),
            warnings: Vec::new(),
            error: None,
            scroll: 0,
        }
    }
}

impl SteerState {
    /// The selected row.
    pub fn selected(&self) -> Option<&SteerRow> {
        self.rows.get(self.sel)
    }

    /// The selected row, for editing.
    pub fn selected_mut(&mut self) -> Option<&mut SteerRow> {
        self.rows.get_mut(self.sel)
    }

    /// Add `row`, or replace the row of the same feature; selects it.
    pub fn upsert(&mut self, row: SteerRow) {
        match self.rows.iter().position(|r| r.feature == row.feature) {
            Some(i) => {
                self.rows[i] = row;
                self.sel = i;
            }
            None => {
                self.rows.push(row);
                self.sel = self.rows.len() - 1;
            }
        }
    }

    /// Remove the selected row.
    pub fn remove_selected(&mut self) -> Option<SteerRow> {
        if self.sel >= self.rows.len() {
            return None;
        }
        let row = self.rows.remove(self.sel);
        self.sel = self.sel.min(self.rows.len().saturating_sub(1));
        Some(row)
    }
}

/// The next value of a closed list, wrapping.
pub fn cycle<T: Copy + PartialEq>(all: &[T], now: T) -> T {
    let i = all.iter().position(|v| *v == now).unwrap_or(0);
    all[(i + 1) % all.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::intervene::Phase;

    #[test]
    fn strengths_parse_with_units_and_reject_junk() {
        assert_eq!(parse_strength("2.5x").unwrap(), (2.5, StrengthUnit::Max));
        assert_eq!(parse_strength(" 3×max ").unwrap(), (3.0, StrengthUnit::Max));
        assert_eq!(parse_strength("-40").unwrap(), (-40.0, StrengthUnit::Raw));
        assert_eq!(parse_strength("7raw").unwrap(), (7.0, StrengthUnit::Raw));
        let e = parse_strength("lots").unwrap_err().to_string();
        assert!(e.contains("\"lots\"") && e.contains("2.5x"), "{e}");
        assert!(parse_strength("nan").is_err());
    }

    #[test]
    fn rows_parse_feature_mode_and_strength_in_any_order() {
        let r = parse_row("12").unwrap();
        assert_eq!(
            (r.feature, r.mode, r.strength, r.unit),
            (12, DEFAULT_MODE, DEFAULT_STRENGTH, DEFAULT_UNIT)
        );
        assert_eq!((r.mode, r.strength_text()), (Mode::Replace, "50".into()));
        let r = parse_row("#7 3x replace").unwrap();
        assert_eq!(
            (r.feature, r.mode, r.strength, r.unit, r.scope.phase),
            (7, Mode::Replace, 3.0, StrengthUnit::Max, Phase::Prefill)
        );
        let r = parse_row("5 add 40").unwrap();
        assert_eq!(
            (r.mode, r.strength, r.unit),
            (Mode::Add, 40.0, StrengthUnit::Raw)
        );
        assert!(parse_row("").is_err());
        let e = format!("{:#}", parse_row("5 boost").unwrap_err());
        assert!(e.contains("neither a mode"), "{e}");
    }

    #[test]
    fn steps_round_and_specs_resolve_units() {
        let mut r = SteerRow::new(3, Mode::Clamp, 1.0, StrengthUnit::Max);
        for _ in 0..3 {
            r.nudge(r.steps().0);
        }
        assert_eq!(r.strength, 1.3);
        assert_eq!(r.strength_text(), "1.3×max");
        assert_eq!(r.spec(Some(10.0)).unwrap().value, 13.0);
        let e = r.spec(None).unwrap_err().to_string();
        assert!(e.contains("feature 3") && e.contains("raw units"), "{e}");
        r.unit = StrengthUnit::Raw;
        assert_eq!(r.spec(None).unwrap().value, 1.3);
        assert_eq!(r.steps(), (1.0, 10.0));
    }

    #[test]
    fn rounding_keeps_six_significant_digits_at_any_magnitude() {
        assert_eq!(round_significant(2.1000001), 2.1);
        assert_eq!(round_significant(2.1 * 0.0123), 0.02583);
        assert_eq!(round_significant(-1234.5678), -1234.57);
        assert_eq!(round_significant(0.0), 0.0);
        assert!(round_significant(f32::NAN).is_nan());
    }

    #[test]
    fn upsert_replaces_a_feature_and_remove_keeps_the_selection_valid() {
        let mut s = SteerState::default();
        s.upsert(SteerRow::new(1, Mode::Clamp, 1.0, StrengthUnit::Raw));
        s.upsert(SteerRow::new(2, Mode::Add, 1.0, StrengthUnit::Raw));
        s.upsert(SteerRow::new(1, Mode::Replace, 5.0, StrengthUnit::Raw));
        assert_eq!(s.rows.len(), 2);
        assert_eq!((s.sel, s.rows[0].mode), (0, Mode::Replace));
        s.sel = 1;
        assert_eq!(s.remove_selected().map(|r| r.feature), Some(2));
        assert_eq!(s.sel, 0);
        s.remove_selected();
        assert_eq!((s.rows.len(), s.sel, s.remove_selected()), (0, 0, None));
        assert_eq!(cycle(Mode::ALL, Mode::Add), Mode::Replace);
    }
}
