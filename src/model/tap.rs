//! The layer tap: where a forward pass reads, edits or stops at the residual stream.

use candle_core::{Result, Tensor};

/// Positions a forward call covers, so an edit knows which tokens it is looking at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapSite {
    /// Absolute position of the first token of this call (0 for a prefill).
    pub start: usize,
    /// Number of positions in this call.
    pub len: usize,
}

impl TapSite {
    /// Whether this call is a prompt prefill (several positions from the start).
    pub fn is_prefill(&self) -> bool {
        self.start == 0
    }
}

/// Something that may replace the residual after the tapped layer (steering, attribution).
pub trait TapEdit {
    /// Return `Some(new residual)` to replace `residual` (`[b, t, hidden]`), or `None` to keep it.
    fn edit(&mut self, residual: &Tensor, site: &TapSite) -> Result<Option<Tensor>>;
}

/// A tap after decoder layer `layer` (the output of `model.layers.{layer}`).
pub struct Tap<'a> {
    /// Zero-based decoder layer whose output is tapped.
    pub layer: usize,
    /// Optional edit applied to that output before later layers see it.
    pub edit: Option<&'a mut dyn TapEdit>,
}

impl<'a> Tap<'a> {
    /// A read-only tap.
    pub fn read(layer: usize) -> Self {
        Self { layer, edit: None }
    }

    /// A tap that edits the residual.
    pub fn edit(layer: usize, edit: &'a mut dyn TapEdit) -> Self {
        Self {
            layer,
            edit: Some(edit),
        }
    }
}

/// Which positions get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitPositions {
    /// Only the last position (generation).
    Last,
    /// Every position (attribution, scoring).
    All,
}

/// How far a forward runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Stop right after the tapped layer; later layers and the head are skipped.
    Tap,
    /// Run to the head and return logits.
    Logits(LogitPositions),
}

/// Options of one forward call.
pub struct ForwardOptions<'a> {
    /// The tap, if any.
    pub tap: Option<Tap<'a>>,
    /// How far to run.
    pub until: Until,
    /// Use ops that record a backward (slower; for attribution): in the layers after the tap
    /// when there is one, in every layer otherwise.
    pub differentiable: bool,
}

impl<'a> ForwardOptions<'a> {
    /// Run to the tap at `layer` and stop (caching, probing, training).
    pub fn to_tap(layer: usize) -> Self {
        Self {
            tap: Some(Tap::read(layer)),
            until: Until::Tap,
            differentiable: false,
        }
    }

    /// Run to the head for the last position, with an optional tap.
    pub fn last_logits(tap: Option<Tap<'a>>) -> Self {
        Self {
            tap,
            until: Until::Logits(LogitPositions::Last),
            differentiable: false,
        }
    }
}

/// What a forward call returns.
#[derive(Debug, Default)]
pub struct ForwardOutput {
    /// Residual after the tapped layer, before any edit: `[b, t, hidden]`.
    pub tapped: Option<Tensor>,
    /// Logits in f32 (f64 for f64 models): `[b, 1, vocab]` (last) or `[b, t, vocab]` (all).
    pub logits: Option<Tensor>,
}
