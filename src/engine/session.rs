//! The real engine: LLaVA-NeXT to the tap, then the SAE over the image tokens.

use anyhow::{Context, Result};
use candle_core::DType;

use super::actor::{Control, Engine};
use super::messages::{Analysis, AttribRequest, Job, ModelError, SteerEvent, SteerRequest};
use super::steer::{SteerCache, run_steer};
use crate::attribute::{AttributeOptions, AttributionResult};
use crate::dashboard::{FeaturePage, PageRequest, feature_page};
use crate::session::Session;
use crate::session::encode::{encode_image_tokens, image_acts_of_all_positions};

/// An [`Engine`] over a loaded [`Session`].
pub struct SessionEngine {
    session: Session,
    steer: SteerCache,
}

impl SessionEngine {
    /// Wrap a session (load it on the model thread, inside [`super::ModelHandle::spawn`]).
    pub fn new(session: Session) -> Self {
        Self {
            session,
            steer: SteerCache::default(),
        }
    }

    fn analyze(
        &self,
        image: &std::path::Path,
        prompt: Option<&str>,
        ctl: &mut Control<'_>,
    ) -> Result<Option<Analysis>> {
        let s = &self.session;
        if ctl.step("tokenizing", 0, 3).is_err() {
            return Ok(None);
        }
        let ids = s.prompt_ids(prompt, true)?;
        if ctl.step("forward to the tap", 1, 3).is_err() {
            return Ok(None);
        }
        let run = s.run_to_tap(ids, Some(image))?;
        let layout = run.layout.clone().context("the sequence has no image")?;
        if ctl.step("SAE encode", 2, 3).is_err() {
            return Ok(None);
        }
        let codes = encode_image_tokens(&s.sae, &run)?;
        let acts = codes.acts;
        Ok(Some(Analysis {
            image: image.to_path_buf(),
            layout,
            acts,
        }))
    }
}

impl Engine for SessionEngine {
    fn run(&mut self, job: &Job, ctl: &mut Control<'_>) -> Result<Analysis, ModelError> {
        match job {
            Job::Analyze { image, prompt } => match self.analyze(image, prompt.as_deref(), ctl) {
                Ok(Some(a)) => Ok(a),
                Ok(None) => Err(ModelError::Cancelled),
                Err(e) => Err(ModelError::Failed(format!("{}: {e:#}", image.display()))),
            },
        }
    }

    fn steer(
        &mut self,
        req: &SteerRequest,
        ctl: &Control<'_>,
        emit: &mut dyn FnMut(SteerEvent),
    ) -> Result<(), ModelError> {
        run_steer(&self.session, &mut self.steer, req, ctl, emit)
    }

    fn page(&mut self, req: &PageRequest, ctl: &Control<'_>) -> Result<FeaturePage, ModelError> {
        ctl.step("logit lens and neighbours", 0, 1)?;
        let mut step = |done: usize, total: usize| -> anyhow::Result<()> {
            ctl.step("co-firing over its top images", done as u32, total as u32)
                .map_err(anyhow::Error::from)
        };
        feature_page(&self.session, req, &mut step).map_err(|e| match e.downcast::<ModelError>() {
            Ok(stopped) => stopped,
            Err(e) => ModelError::Failed(format!("feature {} page: {e:#}", req.feature)),
        })
    }

    fn attribute(
        &mut self,
        req: &AttribRequest,
        ctl: &Control<'_>,
    ) -> Result<AttributionResult, ModelError> {
        ctl.step("forward and backward", 0, 1)?;
        let (item, chat) = req.item();
        let opts = AttributeOptions {
            chat,
            max_pixels: self.session.max_pixels,
            check_plain: false,
        };
        crate::attribute::attribute(&self.session, &item, &opts)
            .map_err(|e| ModelError::Failed(format!("attribution: {e:#}")))
    }
}

/// `(image token, feature, value)` of every scored image token of a probe.
pub fn probe_image_acts(probe: &crate::jobs::probe::Probe) -> Result<Vec<(u16, u32, f32)>> {
    let layout = probe
        .run
        .layout
        .as_ref()
        .context("the probe has no image")?;
    let values = probe.codes.values.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let indices = probe.codes.indices.to_vec2::<u32>()?;
    Ok(image_acts_of_all_positions(
        &probe.run.map,
        layout,
        &values,
        &indices,
    ))
}
