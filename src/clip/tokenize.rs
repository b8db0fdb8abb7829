//! CLIP text tokenisation: `tokenizer.json` with `<|startoftext|>` … `<|endoftext|>`, cut to the context.

use std::path::Path;

use anyhow::{Result, anyhow};
use tokenizers::Tokenizer;

/// A CLIP tokenizer bound to the text tower's context length.
pub struct ClipTokenizer {
    inner: Tokenizer,
    context: usize,
}

impl ClipTokenizer {
    /// Load `tokenizer.json`; `context` is `text_config.max_position_embeddings`.
    pub fn from_file(path: &Path, context: usize) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| {
            anyhow!(
                "{}: cannot load the CLIP tokenizer: {e}; expected a Hugging Face tokenizer.json",
                path.display()
            )
        })?;
        // Length handling is ours (see `encode`), whatever the file asks for.
        inner
            .with_truncation(None)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        inner.with_padding(None);
        Ok(Self { inner, context })
    }

    /// Ids with start and end tokens, keeping the first `context` ids of longer texts.
    ///
    /// torchmetrics' `CLIPScore` tokenises without truncation and then slices to 77 ids, so an
    /// over-long text loses its end token; this does the same to score texts as the original.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| anyhow!("CLIP tokenizer failed on {text:?}: {e}"))?;
        let mut ids = enc.get_ids().to_vec();
        ids.truncate(self.context);
        Ok(ids)
    }

    /// Context length (`max_position_embeddings`).
    pub fn context(&self) -> usize {
        self.context
    }
}
