//! Feature interventions at the SAE's layer, applied through the model's layer tap.
//!
//! - `replace` (the original system's): the chosen features' pre-activations are set before
//!   top-k at the scoped positions, and the layer output becomes the SAE reconstruction at every
//!   position of every call while attached. The reconstruction error is dropped everywhere, as in
//!   the original, so the edit and the SAE's own damage are mixed.
//! - `clamp` (error-preserving): `h + decode(clamped) − decode(original)`, where `clamped` is the
//!   original top-k code with the features' values set. Other latents keep their values, so this
//!   is exactly `h + Σ_f (K_f − a_f)·W_dec[f]` with `a_f` the feature's top-k activation.
//! - `add`: `h + α·d_f`, `d_f` the raw decoder row or its unit vector (stated by [`Direction`]).

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::Sae;
use crate::model::llava_next::{SeqToken, SequenceMap};
use crate::model::tap::TapSite;
use crate::util::choice::choice;

mod edit;
#[cfg(test)]
mod tests;

pub use edit::SteerEdit;

/// How an intervention changes the residual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Set pre-activations before top-k; the output is the SAE reconstruction (the original's).
    Replace,
    /// Set the feature's code value and add the decoded difference (keeps the SAE error).
    Clamp,
    /// Add a multiple of the feature's decoder direction.
    Add,
}

choice!(Mode, "steering mode" { Replace => "replace", Clamp => "clamp", Add => "add" });

/// Which decoder vector `add` moves along.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// `W_dec[f]` as stored: strength is in activation units.
    Raw,
    /// `W_dec[f] / ‖W_dec[f]‖`: strength is a residual-norm length.
    Unit,
}

choice!(Direction, "direction" { Raw => "raw", Unit => "unit" });

/// Which calls of a generation are edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Prompt positions only.
    Prefill,
    /// Generated positions only (the first new token comes from the prompt, so it is unsteered).
    Decode,
    /// Every position.
    Both,
}

choice!(Phase, "phase" { Prefill => "prefill", Decode => "decode", Both => "both" });

/// Which kinds of position are edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Every position.
    All,
    /// Image positions of the prompt.
    Image,
    /// Text positions (prompt text and every generated token).
    Text,
}

choice!(TokenScope, "token scope" { All => "all", Image => "image", Text => "text" });

impl Mode {
    /// The phase a mode uses when none is given: the original's prefill for `replace`, else both.
    pub fn default_phase(self) -> Phase {
        match self {
            Mode::Replace => Phase::Prefill,
            Mode::Clamp | Mode::Add => Phase::Both,
        }
    }
}

/// Which positions an intervention edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Prompt, generated tokens, or both.
    pub phase: Phase,
    /// Image, text, or all positions.
    pub tokens: TokenScope,
}

impl Scope {
    /// Whether absolute position `pos` is edited; positions past the prompt are generated text.
    pub fn covers(&self, pos: usize, prompt: &SequenceMap) -> bool {
        let (in_prompt, image) = match prompt.tokens.get(pos) {
            Some(SeqToken::Image { .. }) => (true, true),
            Some(SeqToken::Text { .. }) => (true, false),
            None => (false, false),
        };
        let phase = match self.phase {
            Phase::Prefill => in_prompt,
            Phase::Decode => !in_prompt,
            Phase::Both => true,
        };
        let kind = match self.tokens {
            TokenScope::All => true,
            TokenScope::Image => image,
            TokenScope::Text => !image,
        };
        phase && kind
    }

    /// One flag per position of a tap call.
    pub fn mask(&self, site: &TapSite, prompt: &SequenceMap) -> Vec<bool> {
        (site.start..site.start + site.len)
            .map(|p| self.covers(p, prompt))
            .collect()
    }

    /// Positions of the prompt this scope edits.
    pub fn prompt_positions(&self, prompt: &SequenceMap) -> usize {
        (0..prompt.len())
            .filter(|&p| self.covers(p, prompt))
            .count()
    }

    /// Reject scopes that can never select a position.
    pub fn check(&self) -> Result<()> {
        if self.phase == Phase::Decode && self.tokens == TokenScope::Image {
            bail!(
                "scope `image` tokens with phase `decode` selects nothing: generated tokens are text"
            );
        }
        Ok(())
    }
}

/// Features to edit, how, and where; values are raw (already resolved from any ×max units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intervention {
    /// How the residual changes.
    pub mode: Mode,
    /// `(feature, value)`: the latent value for replace and clamp, α for add.
    pub edits: Vec<(u32, f32)>,
    /// Decoder vector for `add` (ignored by the other modes).
    pub direction: Direction,
    /// Positions edited.
    pub scope: Scope,
}

impl Intervention {
    /// Check the features exist, appear once, and the values are finite.
    pub fn validate(&self, sae: &Sae) -> Result<()> {
        if self.edits.is_empty() {
            bail!("the intervention names no feature");
        }
        let n = sae.num_latents();
        for (i, &(f, v)) in self.edits.iter().enumerate() {
            if f as usize >= n {
                bail!(
                    "feature {f} does not exist: the SAE has {n} latents (0..{})",
                    n - 1
                );
            }
            if self.edits[..i].iter().any(|e| e.0 == f) {
                bail!("feature {f} is listed twice; give each feature one strength");
            }
            if !v.is_finite() {
                bail!("feature {f}: strength {v} is not a finite number");
            }
        }
        self.scope.check()
    }

    /// Whether the prompt's residuals differ from an unsteered run (so a plain prefill can't be reused).
    pub fn rewrites_prompt(&self) -> bool {
        self.mode == Mode::Replace || self.scope.phase != Phase::Decode
    }
}

/// What one feature's edit did over a generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeatureEffect {
    /// Latent index.
    pub feature: u32,
    /// Raw value (latent value, or α for add).
    pub value: f32,
    /// Scoped positions where this edit changed the residual.
    pub changed: u64,
    /// `replace` only: scoped positions where the set value lost the top-k and was discarded.
    pub dropped: u64,
    /// `replace` only: sum of the k-th largest edited pre-activation over scoped positions.
    pub kth_sum: f64,
}

/// Totals of an intervention over every tap call of a generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EditStats {
    /// The intervention's mode.
    pub mode: Mode,
    /// Positions the tap saw.
    pub positions: u64,
    /// Positions inside the scope.
    pub in_scope: u64,
    /// Sum over scoped positions of `‖h' − h‖ / ‖h‖`.
    pub rel_change_sum: f64,
    /// One entry per edited feature, in the intervention's order.
    pub features: Vec<FeatureEffect>,
}

impl EditStats {
    /// Empty totals for `iv`.
    pub fn new(iv: &Intervention) -> Self {
        let features = iv
            .edits
            .iter()
            .map(|&(feature, value)| FeatureEffect {
                feature,
                value,
                ..Default::default()
            })
            .collect();
        Self {
            mode: iv.mode,
            positions: 0,
            in_scope: 0,
            rel_change_sum: 0.0,
            features,
        }
    }

    /// Mean relative change of the residual over scoped positions.
    pub fn mean_rel_change(&self) -> f64 {
        self.rel_change_sum / self.in_scope.max(1) as f64
    }

    /// Plain-language warnings for edits that did nothing, or less than asked.
    pub fn warnings(&self) -> Vec<String> {
        if self.positions > 0 && self.in_scope == 0 {
            return vec![
                "steering touched no position: the scope selects nothing in this run \
                         (an image scope without an image, or a decode scope with no decode step)"
                    .into(),
            ];
        }
        let mut out = Vec::new();
        for e in &self.features {
            let (f, v, n) = (e.feature, e.value, self.in_scope);
            match self.mode {
                Mode::Replace if e.dropped == n && n > 0 => out.push(format!(
                    "feature {f}: value {v} never survived top-k at any of {n} positions (the k-th \
                     largest pre-activation averaged {:.3}); raise the strength or use clamp",
                    e.kth_sum / n as f64
                )),
                Mode::Replace if e.dropped > 0 => out.push(format!(
                    "feature {f}: value {v} lost the top-k at {} of {n} positions and was discarded there",
                    e.dropped
                )),
                _ if e.changed == 0 && n > 0 => out.push(format!(
                    "feature {f}: the {} to {v} changed nothing at any of {n} positions",
                    self.mode
                )),
                _ => {}
            }
        }
        out
    }
}
