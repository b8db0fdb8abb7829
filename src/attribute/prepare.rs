//! An item made ready to run: prompt ids as the original builds them, answer and baseline
//! resolved to single tokens, and the embedded sequence (vision tower run once).

use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use serde::Serialize;

use super::{AttributeOptions, AttributionItem};
use crate::model::anyres::ImageLayout;
use crate::model::llava_next::{ImageInput, SequenceMap};
use crate::model::load::LoadedModel;
use crate::model::tokenizer::PromptTokenizer;

/// One token the metric reads, with what the user wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenChoice {
    /// The string as given in the item.
    pub text: String,
    /// Its token id.
    pub id: u32,
    /// The vocabulary string of that id.
    pub token: String,
}

/// An item ready for forwards: embeddings are computed once and shared by every run.
pub struct PreparedItem {
    /// Token ids as given to the model (one placeholder for the image).
    pub ids: Vec<u32>,
    /// What each sequence position holds.
    pub map: SequenceMap,
    /// Anyres geometry of the image, if any.
    pub layout: Option<ImageLayout>,
    /// Input embeddings `[1, T, hidden]` in the model dtype.
    pub embeds: Tensor,
    /// Token whose logit the metric adds.
    pub answer: TokenChoice,
    /// Token whose logit the metric subtracts.
    pub baseline: TokenChoice,
}

impl PreparedItem {
    /// Tokenize, preprocess the image and embed the sequence.
    pub fn new(
        model: &LoadedModel,
        item: &AttributionItem,
        opts: &AttributeOptions,
    ) -> Result<Self> {
        let tok = model.tokenizer()?;
        let answer = resolve_token(tok, &item.answer, "answer")?;
        let baseline = resolve_token(tok, &item.baseline, "baseline")?;
        if answer.id == baseline.id {
            bail!(
                "answer {:?} and baseline {:?} are the same token ({}), so the metric is always 0",
                item.answer,
                item.baseline,
                answer.id
            );
        }
        let ids = prompt_ids(tok, &item.prompt, item.image.is_some(), opts.chat)?;
        let prepared = match &item.image {
            Some(path) => Some(load_views(model, path, opts.max_pixels)?),
            None => None,
        };
        let images: Vec<ImageInput<'_>> = prepared
            .iter()
            .map(|p| ImageInput {
                pixel_values: &p.pixel_values,
                layout: &p.layout,
            })
            .collect();
        let image_id = model.config.image_token_index;
        let placeholders = ids.iter().filter(|&&i| i == image_id).count();
        let wanted = usize::from(item.image.is_some());
        if placeholders != wanted {
            bail!(
                "prompt {:?} has {placeholders} `<image>` placeholder(s) for {wanted} image(s); \
                 the original's prompts are fully formatted with one `<image>` (pass --chat to \
                 wrap plain text in the chat template)",
                item.prompt
            );
        }
        let (embeds, map) = model
            .model
            .embed_sequence(&ids, &images)
            .context("embedding the prompt and image")?;
        Ok(Self {
            ids,
            map,
            layout: prepared.map(|p| p.layout),
            embeds,
            answer,
            baseline,
        })
    }

    /// Sequence positions (image expanded).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the sequence is empty (never true for a built item).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn load_views(
    model: &LoadedModel,
    path: &Path,
    max_pixels: u64,
) -> Result<crate::model::preprocess::PreprocessedImage> {
    crate::session::ImagePrep::for_model(model, max_pixels).prepare(path)
}

/// Prompt ids: the chat template around plain text, or the original's fully formatted string.
///
/// The original tokenizes with the tokenizer's specials and drops the first id (the BOS it
/// adds); tokenizing without the post-processor gives the same ids, and keeps a
/// `<|begin_of_text|>` written in the prompt itself.
pub fn prompt_ids(
    tok: &PromptTokenizer,
    prompt: &str,
    with_image: bool,
    chat: bool,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    if chat {
        return tok.chat_prompt_ids(prompt, with_image);
    }
    tok.encode(prompt, false)
}

/// One token for `text`: an exact vocabulary string (the original's `convert_tokens_to_ids`),
/// else the tokenization of `text`, which must be exactly one token.
pub fn resolve_token(tok: &PromptTokenizer, text: &str, what: &str) -> Result<TokenChoice> {
    if text.is_empty() {
        bail!("the {what} is empty: give one token, e.g. \" red\" or its vocabulary form \"Ġred\"");
    }
    let id = match tok.token_to_id(text) {
        Some(id) => id,
        None => {
            let ids = tok.encode(text, false)?;
            match ids.as_slice() {
                [] => bail!("the {what} {text:?} tokenizes to nothing; give one token"),
                [one] => *one,
                many => {
                    let pieces: Vec<String> = many
                        .iter()
                        .map(|&i| tok.id_to_token(i).unwrap_or_else(|| format!("#{i}")))
                        .collect();
                    bail!(
                        "the {what} {text:?} is {} tokens {pieces:?}; the metric reads one token's \
                         logit, so give one of them (e.g. {:?})",
                        many.len(),
                        pieces[0]
                    )
                }
            }
        }
    };
    let token = tok.id_to_token(id).unwrap_or_else(|| format!("#{id}"));
    Ok(TokenChoice {
        text: text.to_string(),
        id,
        token,
    })
}
