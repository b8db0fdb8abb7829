//! Streaming detokenisation for generation output.

use anyhow::Result;

use super::PromptTokenizer;

/// Incremental detokeniser for streaming generation.
///
/// Byte-level tokens can split a UTF-8 character; text is released only once it decodes without
/// a trailing replacement character, and always as the difference against a decoded prefix so
/// decoders that rewrite spaces stay consistent with a full `decode`.
pub struct StreamDecoder<'a> {
    tok: &'a PromptTokenizer,
    skip_special: bool,
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder that drops special tokens, as shown to a user.
    pub fn new(tok: &'a PromptTokenizer) -> Self {
        Self {
            tok,
            skip_special: true,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// Keep special tokens (such as `<|eot_id|>`) in the streamed text.
    pub fn keep_special(mut self) -> Self {
        self.skip_special = false;
        self
    }

    /// Adds one id; returns the newly completed text, or `None` while a character is incomplete.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let (prefix, text) = self.window()?;
        if text.len() <= prefix.len() || text.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        let chunk = suffix_after(&text, &prefix);
        // Only the window since the last emitted chunk matters; drop older ids.
        self.ids.drain(..self.read_offset);
        self.prefix_offset = 0;
        self.read_offset = self.ids.len();
        Ok(Some(chunk))
    }

    /// Flushes whatever is left (an incomplete character decodes as U+FFFD, as `decode` would).
    pub fn finish(self) -> Result<Option<String>> {
        let (prefix, text) = self.window()?;
        Ok((text.len() > prefix.len()).then(|| suffix_after(&text, &prefix)))
    }

    fn window(&self) -> Result<(String, String)> {
        let prefix = self.tok.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special,
        )?;
        let text = self
            .tok
            .decode(&self.ids[self.prefix_offset..], self.skip_special)?;
        Ok((prefix, text))
    }
}

/// The part of `text` past `prefix`, cut at a character boundary.
fn suffix_after(text: &str, prefix: &str) -> String {
    if let Some(rest) = text.strip_prefix(prefix) {
        return rest.to_owned();
    }
    let cut = (prefix.len()..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[cut..].to_owned()
}
