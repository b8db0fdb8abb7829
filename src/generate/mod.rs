//! Autoregressive generation with a KV cache, optional steering, streaming and cancellation.
//!
//! The prompt is embedded once ([`PreparedPrompt`]); its plain prefill (KV cache and first
//! logits) is kept and cloned for every run whose steering leaves the prompt alone, so a
//! decode-only edit or an unsteered rerun costs no second prefill. Steering enters through the
//! layer tap ([`SteerEdit`]), at every call of the run; its effect is totalled in
//! [`Generation::edits`] and turned into warnings when an edit changed nothing.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::kv_cache::KvCache;
use crate::model::llava_next::{ImageInput, SeqToken, SequenceMap};
use crate::model::tap::{ForwardOptions, Tap, TapEdit};
use crate::model::tokenizer::StreamDecoder;
use crate::sae::intervene::{EditStats, Intervention, SteerEdit};
use crate::session::Session;

mod cancel;
mod sampling;
mod spec;
#[cfg(test)]
mod tests;

pub use cancel::{CancelToken, Cancellation};
use sampling::Sampler;
pub use sampling::Sampling;
pub use spec::{
    DEFAULT_MODE, DEFAULT_STRENGTH, DEFAULT_UNIT, FeatureStrength, Steering, StrengthUnit,
};

/// Settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens generated (an end token counts).
    pub max_new_tokens: usize,
    /// Token choice.
    pub sampling: Sampling,
    /// End tokens; `None` uses the tokenizer's and generation_config's, `Some(vec![])` never stops early.
    pub stop_ids: Option<Vec<u32>>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 512,
            sampling: Sampling::Greedy,
            stop_ids: None,
        }
    }
}

/// What a generation streams as it goes; the callback's `Break` stops it.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenEvent {
    /// The prompt has been run.
    Prefilled {
        /// Prompt positions.
        positions: usize,
        /// Seconds the prefill took (0 when a cached plain prefill was reused).
        seconds: f64,
    },
    /// One new token (the end token is not streamed).
    Token {
        /// 0-based index among generated tokens.
        index: usize,
        /// Token id.
        id: u32,
        /// Newly completed text; empty while a character is split across tokens.
        text: String,
    },
    /// The run ended; `tail` is text held back for an incomplete character.
    Finished {
        /// Remaining text.
        tail: String,
        /// Why it ended.
        stop: StopReason,
    },
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end token was produced.
    EndToken,
    /// `max_new_tokens` were produced.
    MaxTokens,
    /// The model's position limit was reached.
    ContextFull,
    /// The cancel counter moved.
    Cancelled,
    /// The stream callback asked to stop.
    Stopped,
}

/// The result of one generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated ids, without the end token.
    pub ids: Vec<u32>,
    /// Their text, special tokens dropped.
    pub text: String,
    /// Why it ended.
    pub stop: StopReason,
    /// Prompt positions.
    pub prompt_positions: usize,
    /// Seconds spent on the prompt.
    pub prefill_seconds: f64,
    /// Seconds spent on decode steps.
    pub decode_seconds: f64,
    /// Decode forwards run.
    pub decode_steps: usize,
    /// The steering's totals, when steered.
    pub edits: Option<EditStats>,
    /// Warnings for the user (steering that did nothing, …).
    pub warnings: Vec<String>,
}

impl Generation {
    /// Decode forwards per second.
    pub fn tokens_per_second(&self) -> f64 {
        if self.decode_seconds > 0.0 {
            self.decode_steps as f64 / self.decode_seconds
        } else {
            0.0
        }
    }
}

/// A prompt embedded once, with its plain prefill kept for reuse.
pub struct PreparedPrompt {
    /// Ids as given to the model (one placeholder per image).
    pub ids: Vec<u32>,
    /// The image shown, if any.
    pub image: Option<PathBuf>,
    /// What each position holds (image vs text).
    pub map: SequenceMap,
    embeds: Tensor,
    plain: OnceLock<(KvCache, Tensor)>,
}

impl PreparedPrompt {
    /// A chat prompt around `text`, with an optional image.
    pub fn new(session: &Session, text: &str, image: Option<&Path>) -> Result<Self> {
        let ids = session.prompt_ids(Some(text), image.is_some())?;
        Self::from_ids(session, ids, image)
    }

    /// Ids as they are (a raw prompt), with an optional image for their `<image>` placeholder.
    pub fn from_ids(session: &Session, ids: Vec<u32>, image: Option<&Path>) -> Result<Self> {
        let prepared = match image {
            Some(path) => Some(session.image_prep().prepare(path)?),
            None => None,
        };
        let images: Vec<ImageInput<'_>> = prepared
            .iter()
            .map(|p| ImageInput {
                pixel_values: &p.pixel_values,
                layout: &p.layout,
            })
            .collect();
        let (embeds, map) = session.model.model.embed_sequence(&ids, &images)?;
        Ok(Self {
            ids,
            image: image.map(Path::to_path_buf),
            map,
            embeds,
            plain: OnceLock::new(),
        })
    }

    /// Prompt positions (images expanded).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the prompt is empty (never true for a built prompt).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Image positions in the prompt.
    pub fn image_positions(&self) -> usize {
        self.map
            .tokens
            .iter()
            .filter(|t| matches!(t, SeqToken::Image { .. }))
            .count()
    }
}

/// Generate from `prompt`, steered by `steering` when given; events stream to `on_event`.
pub fn generate(
    session: &Session,
    prompt: &PreparedPrompt,
    steering: Option<&Intervention>,
    opts: &GenerateOptions,
    cancel: &dyn Cancellation,
    on_event: &mut dyn FnMut(TokenEvent) -> ControlFlow<()>,
) -> Result<Generation> {
    let Some(iv) = steering else {
        return generate_with_edit(session, prompt, None, false, opts, cancel, on_event);
    };
    let mut edit = SteerEdit::new(&session.sae, iv, &prompt.map)?;
    let result = generate_with_edit(
        session,
        prompt,
        Some(&mut edit),
        iv.rewrites_prompt(),
        opts,
        cancel,
        on_event,
    );
    // A residual the edit made non-finite explains what fails after it (NaN logits) better
    // than that failure does, so the edit's own check speaks first.
    let stats = edit.into_stats()?;
    let mut generation = result?;
    generation.warnings.extend(stats.warnings());
    generation.edits = Some(stats);
    Ok(generation)
}

/// [`generate`] with any tap edit; `rewrites_prompt` says whether it may change the prompt's residuals.
pub fn generate_with_edit(
    session: &Session,
    prompt: &PreparedPrompt,
    mut edit: Option<&mut dyn TapEdit>,
    rewrites_prompt: bool,
    opts: &GenerateOptions,
    cancel: &dyn Cancellation,
    on_event: &mut dyn FnMut(TokenEvent) -> ControlFlow<()>,
) -> Result<Generation> {
    let model = &session.model.model;
    // A bare config with random weights has no tokenizer: ids only, no text, no end tokens.
    let tok = session.model.tokenizer.as_ref();
    let stop_ids = opts
        .stop_ids
        .clone()
        .or_else(|| tok.map(|t| t.eos_ids().to_vec()))
        .unwrap_or_default();
    let max_pos = session.model.config.text_config.max_position_embeddings;
    let mut out = Generation {
        ids: Vec::new(),
        text: String::new(),
        stop: StopReason::Cancelled,
        prompt_positions: prompt.len(),
        prefill_seconds: 0.0,
        decode_seconds: 0.0,
        decode_steps: 0,
        edits: None,
        warnings: Vec::new(),
    };
    if cancel.is_cancelled() {
        let _ = on_event(TokenEvent::Finished {
            tail: String::new(),
            stop: out.stop,
        });
        return Ok(out);
    }
    let t0 = Instant::now();
    let (mut cache, mut logits) = if rewrites_prompt && edit.is_some() {
        let mut cache = KvCache::new();
        let fwd = model.forward(
            &prompt.embeds,
            0,
            Some(&mut cache),
            ForwardOptions::last_logits(tap(session.layer, edit.as_deref_mut())),
        )?;
        (cache, fwd.logits.context("the prefill returned no logits")?)
    } else {
        let plain = match prompt.plain.get() {
            Some(p) => p,
            None => {
                let mut cache = KvCache::new();
                let fwd = model.forward(
                    &prompt.embeds,
                    0,
                    Some(&mut cache),
                    ForwardOptions::last_logits(None),
                )?;
                let _ = prompt
                    .plain
                    .set((cache, fwd.logits.context("the prefill returned no logits")?));
                prompt
                    .plain
                    .get()
                    .context("the plain prefill was not kept")?
            }
        };
        (plain.0.try_clone()?, plain.1.clone())
    };
    // Accelerators run the prefill asynchronously: wait for it here, or its time would be
    // counted as the first decode step's.
    logits.device().synchronize()?;
    out.prefill_seconds = t0.elapsed().as_secs_f64();
    let _ = on_event(TokenEvent::Prefilled {
        positions: prompt.len(),
        seconds: out.prefill_seconds,
    });
    let mut sampler = Sampler::new(opts.sampling);
    let mut stream = tok.map(StreamDecoder::new);
    let t1 = Instant::now();
    out.stop = loop {
        if out.ids.len() >= opts.max_new_tokens {
            break StopReason::MaxTokens;
        }
        let id = sampler
            .next(&logits)
            .with_context(|| format!("choosing token {}", out.ids.len()))?;
        if stop_ids.contains(&id) {
            break StopReason::EndToken;
        }
        out.ids.push(id);
        let text = match stream.as_mut() {
            Some(s) => s.push(id)?.unwrap_or_default(),
            None => String::new(),
        };
        if on_event(TokenEvent::Token {
            index: out.ids.len() - 1,
            id,
            text,
        })
        .is_break()
        {
            break StopReason::Stopped;
        }
        if out.ids.len() >= opts.max_new_tokens {
            break StopReason::MaxTokens;
        }
        if cancel.is_cancelled() {
            break StopReason::Cancelled;
        }
        let pos = prompt.len() + out.ids.len() - 1;
        if pos >= max_pos {
            break StopReason::ContextFull;
        }
        let embeds = model.embed_ids(&[id])?;
        let fwd = model.forward(
            &embeds,
            pos,
            Some(&mut cache),
            ForwardOptions::last_logits(tap(session.layer, edit.as_deref_mut())),
        )?;
        logits = fwd.logits.context("a decode step returned no logits")?;
        out.decode_steps += 1;
    };
    out.decode_seconds = t1.elapsed().as_secs_f64();
    out.text = match tok {
        Some(t) => t.decode(&out.ids, true)?,
        None => String::new(),
    };
    let tail = match stream {
        Some(s) => s.finish()?.unwrap_or_default(),
        None => String::new(),
    };
    let _ = on_event(TokenEvent::Finished {
        tail,
        stop: out.stop,
    });
    Ok(out)
}

/// The tap for an optional edit.
fn tap<'a, 'b: 'a>(layer: usize, edit: Option<&'a mut (dyn TapEdit + 'b)>) -> Option<Tap<'a>> {
    edit.map(|e| Tap::edit(layer, e))
}
