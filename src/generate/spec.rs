//! The steering a user asks for, in their units, resolved to raw values for the tap.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::sae::intervene::{Direction, Intervention, Mode, Scope, TokenScope};
use crate::util::choice::choice;

/// The mode of a steering edit that names only its feature, in every front end: the original
/// system's (its "clamp" of K = 50 is glint's `replace` at raw 50).
pub const DEFAULT_MODE: Mode = Mode::Replace;
/// The strength of a steering edit that names only its feature, in [`DEFAULT_UNIT`].
pub const DEFAULT_STRENGTH: f32 = 50.0;
/// The unit of [`DEFAULT_STRENGTH`].
pub const DEFAULT_UNIT: StrengthUnit = StrengthUnit::Raw;

/// Units of a steering strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrengthUnit {
    /// Raw activation units (α for `add`).
    Raw,
    /// Multiples of the feature's largest cached activation.
    Max,
}

choice!(StrengthUnit, "strength unit" { Raw => "raw", Max => "max" });

impl StrengthUnit {
    /// `strength` in raw activation units, given the feature's cached max activation (needed,
    /// and `None` without it, for `max`).
    pub fn to_raw(self, strength: f32, max: Option<f32>) -> Option<f32> {
        match self {
            StrengthUnit::Raw => Some(strength),
            StrengthUnit::Max => max.map(|m| strength * m),
        }
    }
}

/// One feature and its strength, in the spec's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureStrength {
    /// Latent index.
    pub feature: u32,
    /// Strength in [`Steering::unit`].
    pub strength: f32,
}

/// What a user asks for: features, strengths, mode and scope (saved as JSON, edited by the TUI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Steering {
    /// How the residual changes.
    pub mode: Mode,
    /// Features edited together.
    pub features: Vec<FeatureStrength>,
    /// Unit of every strength.
    pub unit: StrengthUnit,
    /// Decoder vector for `add`.
    pub direction: Direction,
    /// Positions edited.
    pub scope: Scope,
}

impl Steering {
    /// Raw strengths, the raw decoder direction, the mode's default phase, all tokens.
    pub fn new(mode: Mode, features: &[(u32, f32)]) -> Self {
        Self {
            mode,
            features: features
                .iter()
                .map(|&(feature, strength)| FeatureStrength { feature, strength })
                .collect(),
            unit: StrengthUnit::Raw,
            direction: Direction::Raw,
            scope: Scope {
                phase: mode.default_phase(),
                tokens: TokenScope::All,
            },
        }
    }

    /// Raw values, looking up each feature's cached max activation when the unit is `max`.
    pub fn resolve(
        &self,
        max_act: &mut dyn FnMut(u32) -> Result<Option<f32>>,
    ) -> Result<Intervention> {
        let mut edits = Vec::with_capacity(self.features.len());
        for fs in &self.features {
            let max = match self.unit {
                StrengthUnit::Raw => None,
                StrengthUnit::Max => max_act(fs.feature)?,
            };
            let value = self.unit.to_raw(fs.strength, max).with_context(|| {
                format!(
                    "feature {}: no cached max activation (it never fired in the store); \
                     give the strength in raw units",
                    fs.feature
                )
            })?;
            edits.push((fs.feature, value));
        }
        Ok(Intervention {
            mode: self.mode,
            edits,
            direction: self.direction,
            scope: self.scope,
        })
    }

    /// A one-line summary, e.g. `clamp f12=5×max (phase both, all tokens)`.
    pub fn describe(&self) -> String {
        let unit = if self.unit == StrengthUnit::Max {
            "×max"
        } else {
            ""
        };
        let feats: Vec<String> = self
            .features
            .iter()
            .map(|f| format!("f{}={}{unit}", f.feature, f.strength))
            .collect();
        let dir = if self.mode == Mode::Add {
            format!(", {} direction", self.direction)
        } else {
            String::new()
        };
        format!(
            "{} {} (phase {}, {} tokens{dir})",
            self.mode,
            feats.join(" "),
            self.scope.phase,
            self.scope.tokens
        )
    }
}
