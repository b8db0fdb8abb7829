//! Which SAE latents drive an answer: attribution patching for every active latent at once.
//!
//! For an item (image, prompt, answer token, baseline token) the metric is
//! `M = logit(answer) − logit(baseline)` at the last position. The SAE is spliced in at the
//! tap with its reconstruction error as a constant, so the patched model computes exactly what
//! the plain one does ([`patch`]). One forward with differentiable ops above the tap and one
//! backward give `∂M/∂z` for every active (position, latent); `z · ∂M/∂z` is the first-order
//! effect of zero-ablating that activation. The original system spends two forwards and a
//! backward per latent on the same question (seed-spec §6.4).
//!
//! Per latent the attributions are summed over positions, split into image and text tokens,
//! and kept per image token so each latent has a patch map over every tile ([`aggregate`]).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::model::anyres::ImageLayout;
use crate::model::load::LoadedModel;
use crate::model::tap::{ForwardOptions, LogitPositions, Tap, Until};
use crate::sae::Sae;
use crate::session::Session;

pub mod aggregate;
pub mod patch;
pub mod prepare;
#[cfg(test)]
mod tests;

pub use aggregate::{LatentAttribution, Part, filter_json, sort_by, top_latents};
pub use patch::{CodeChange, HostCodes};
pub use prepare::{PreparedItem, TokenChoice};

/// One item of the original's probing JSON: `{prompt, answer, baseline, image}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionItem {
    /// Fully formatted prompt with one `<image>` (or plain user text with [`AttributeOptions::chat`]).
    pub prompt: String,
    /// Token whose logit counts for the answer: a vocabulary string or text of one token.
    pub answer: String,
    /// Token whose logit counts against it.
    pub baseline: String,
    /// Image file shown with the prompt.
    #[serde(default)]
    pub image: Option<PathBuf>,
}

/// How items are read and run.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeOptions {
    /// Wrap `prompt` in the model's chat template (the original expects it formatted already).
    pub chat: bool,
    /// Largest image accepted, in pixels.
    pub max_pixels: u64,
    /// Also run the plain model (no SAE) to report its metric next to the patched one.
    pub check_plain: bool,
}

impl Default for AttributeOptions {
    fn default() -> Self {
        Self {
            chat: false,
            max_pixels: 40_000_000,
            check_plain: true,
        }
    }
}

/// Wall seconds of the stages of one item.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timing {
    /// Tokenizing, image preprocessing, vision tower and embedding.
    pub prepare_s: f64,
    /// Plain forward (no SAE), when run.
    pub plain_s: f64,
    /// Patched forward with differentiable ops.
    pub forward_s: f64,
    /// Backward plus gathering `∂M/∂z` from the decoder rows.
    pub backward_s: f64,
}

/// Everything one item's attribution gives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributionResult {
    /// The answer token.
    pub answer: TokenChoice,
    /// The baseline token.
    pub baseline: TokenChoice,
    /// `M` of the plain model, when run.
    pub plain_metric: Option<f64>,
    /// `M` with the SAE spliced in (equal to the plain one up to rounding).
    pub patched_metric: f64,
    /// Sequence positions.
    pub positions: usize,
    /// Image positions among them.
    pub image_positions: usize,
    /// Active (position, latent) pairs attributed.
    pub active_pairs: usize,
    /// Mean over positions of `‖h − decode(z)‖ / ‖h‖` at the tap.
    pub sae_rel_error: f64,
    /// Geometry of the image, for drawing the latents' `image_map`s.
    pub layout: Option<ImageLayout>,
    /// Every latent active anywhere, sorted by total attribution, largest first.
    pub latents: Vec<LatentAttribution>,
    /// Stage timings.
    pub timing: Timing,
}

impl AttributionResult {
    /// Latents sorted by `part` (signed, largest first; or by magnitude).
    pub fn ranked(&self, part: Part, by_abs: bool) -> Vec<LatentAttribution> {
        let mut list = self.latents.clone();
        sort_by(&mut list, part, by_abs);
        list
    }
}

/// `∂M/∂z` for every slot of every position, from one forward and one backward.
#[derive(Debug, Clone)]
pub struct LatentGradients {
    /// The codes `z`.
    pub codes: HostCodes,
    /// `∂M/∂z` `[T][k]` aligned with `codes`; `None` when no gradient reached the tap.
    pub grads: Option<Vec<Vec<f64>>>,
    /// `M` of the patched forward.
    pub metric: f64,
    /// Mean relative norm of the SAE error at the tap.
    pub rel_error: f64,
    /// Forward seconds.
    pub forward_s: f64,
    /// Backward (and gather) seconds.
    pub backward_s: f64,
}

/// A model, its SAE and the tapped layer: runs the forwards attribution needs.
pub struct Attributor<'a> {
    model: &'a LoadedModel,
    sae: &'a Sae,
    layer: usize,
}

impl<'a> Attributor<'a> {
    /// Attribute through `sae` spliced in after decoder layer `layer` of `model`.
    pub fn new(model: &'a LoadedModel, sae: &'a Sae, layer: usize) -> Self {
        Self { model, sae, layer }
    }

    /// The session's model, SAE and layer.
    pub fn from_session(session: &'a Session) -> Self {
        Self::new(&session.model, &session.sae, session.layer)
    }

    /// Tokenize and embed `item`.
    pub fn prepare(&self, item: &AttributionItem, opts: &AttributeOptions) -> Result<PreparedItem> {
        PreparedItem::new(self.model, item, opts)
    }

    /// `M` of the plain model (no SAE), with the fast fused ops.
    pub fn plain_metric(&self, item: &PreparedItem) -> Result<f64> {
        let out =
            self.model
                .model
                .forward(&item.embeds, 0, None, ForwardOptions::last_logits(None))?;
        self.metric_of(out.logits, item)
    }

    /// `M` with the SAE spliced in and its codes changed by `change` (the error node kept).
    pub fn metric(
        &self,
        item: &PreparedItem,
        change: &CodeChange,
        differentiable: bool,
    ) -> Result<f64> {
        let mut edit = patch::CodeEdit::new(self.sae, change);
        let out = self.model.model.forward(
            &item.embeds,
            0,
            None,
            ForwardOptions {
                tap: Some(Tap::edit(self.layer, &mut edit)),
                until: Until::Logits(LogitPositions::Last),
                differentiable,
            },
        )?;
        if edit.touched == 0 && *change != CodeChange::Keep {
            bail!("{change:?} matches no active latent at the tap; nothing was changed");
        }
        self.metric_of(out.logits, item)
    }

    fn metric_of(&self, logits: Option<candle_core::Tensor>, item: &PreparedItem) -> Result<f64> {
        let logits = logits.context("the forward returned no logits")?;
        let m = patch::logit_diff(&logits, item.answer.id, item.baseline.id)?;
        Ok(m.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
    }

    /// One patched forward and one backward: `∂M/∂z` of every active latent.
    ///
    /// With `differentiable: false` the fused ops above the tap record no backward, so no
    /// gradient reaches the tap and `grads` is `None`.
    pub fn gradients(&self, item: &PreparedItem, differentiable: bool) -> Result<LatentGradients> {
        let t0 = Instant::now();
        let mut edit = patch::GradPatch::new(self.sae);
        let out = self.model.model.forward(
            &item.embeds,
            0,
            None,
            ForwardOptions {
                tap: Some(Tap::edit(self.layer, &mut edit)),
                until: Until::Logits(LogitPositions::Last),
                differentiable,
            },
        )?;
        let logits = out.logits.context("the forward returned no logits")?;
        let metric = patch::logit_diff(&logits, item.answer.id, item.baseline.id)?;
        let metric_value = metric
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
        let forward_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let (node, codes) = match (edit.node.take(), edit.codes.take()) {
            (Some(n), Some(c)) => (n, c),
            _ => bail!("the forward never reached the tap at layer {}", self.layer),
        };
        let store = metric.backward()?;
        let grads = match store.get(node.as_tensor()) {
            Some(g) => Some(patch::latent_grads(self.sae, &codes.indices, g)?),
            None => None,
        };
        Ok(LatentGradients {
            codes: patch::host_codes(&codes)?,
            grads,
            metric: metric_value,
            rel_error: edit.rel_error,
            forward_s,
            backward_s: t1.elapsed().as_secs_f64(),
        })
    }

    /// Attribute a prepared item: plain metric (optional), one forward, one backward.
    pub fn run(&self, item: &PreparedItem, check_plain: bool) -> Result<AttributionResult> {
        let t0 = Instant::now();
        let plain_metric = if check_plain {
            Some(self.plain_metric(item)?)
        } else {
            None
        };
        let plain_s = t0.elapsed().as_secs_f64();
        let g = self.gradients(item, true)?;
        let grads = g.grads.as_deref().context(
            "no gradient reached the SAE at the tap: an op above it records no backward",
        )?;
        let (latents, active_pairs) = aggregate::aggregate(&item.map, &g.codes, grads)?;
        Ok(AttributionResult {
            answer: item.answer.clone(),
            baseline: item.baseline.clone(),
            plain_metric,
            patched_metric: g.metric,
            positions: item.len(),
            image_positions: item.map.image_positions(0).len(),
            active_pairs,
            sae_rel_error: g.rel_error,
            layout: item.layout.clone(),
            latents,
            timing: Timing {
                prepare_s: 0.0,
                plain_s,
                forward_s: g.forward_s,
                backward_s: g.backward_s,
            },
        })
    }
}

/// Attribute `item` with the session's model and SAE.
pub fn attribute(
    session: &Session,
    item: &AttributionItem,
    opts: &AttributeOptions,
) -> Result<AttributionResult> {
    let t0 = Instant::now();
    let attributor = Attributor::from_session(session);
    let prepared = attributor.prepare(item, opts)?;
    let prepare_s = t0.elapsed().as_secs_f64();
    let mut result = attributor.run(&prepared, opts.check_plain)?;
    result.timing.prepare_s = prepare_s;
    Ok(result)
}
