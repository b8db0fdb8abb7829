//! The prompt side of LLaVA-NeXT: `tokenizer.json`, the chat template, special-token ids and
//! streaming detokenisation, loaded from a Hugging Face model folder.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use minijinja::{Environment, Value};
use serde_json::Value as Json;
use tokenizers::Tokenizer;

mod stream;
mod template;

pub use stream::StreamDecoder;
pub use template::LLAMA3_LLAVA_TEMPLATE;
use template::{TEMPLATE_NAME, build_env, find_chat_template, read_json};

/// The placeholder that marks where image features are spliced into the sequence.
pub const IMAGE_TOKEN: &str = "<image>";
/// Llama-3's end-of-turn token; generation stops on it even when configs only name `<|end_of_text|>`.
pub const EOT_TOKEN: &str = "<|eot_id|>";

/// A Hugging Face fast tokenizer plus the chat template and special ids LLaVA-NeXT needs.
#[derive(Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    env: Environment<'static>,
    template_origin: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    bos_id: Option<u32>,
    eos_ids: Vec<u32>,
    image_id: u32,
}

impl std::fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("template_origin", &self.template_origin)
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .field("image_id", &self.image_id)
            .finish()
    }
}

impl PromptTokenizer {
    /// Loads `tokenizer.json`, the chat template and special tokens from a model folder.
    pub fn from_dir(dir: &Path, image_token_index: u32) -> Result<Self> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            bail!(
                "{}: not found; the model folder must contain the fast-tokenizer file \
                 tokenizer.json (download it with the model's other files)",
                tok_path.display()
            );
        }
        let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| {
            anyhow!(
                "{}: cannot load ({e}); re-download the file",
                tok_path.display()
            )
        })?;

        let tok_config_path = dir.join("tokenizer_config.json");
        let tok_config = read_json(&tok_config_path)?;
        let special_map = read_json(&dir.join("special_tokens_map.json"))?;
        let gen_config = read_json(&dir.join("generation_config.json"))?;

        let special = |key: &str| {
            [&tok_config, &special_map]
                .into_iter()
                .flatten()
                .find_map(|cfg| cfg.get(key).and_then(token_string))
        };
        let bos_token = special("bos_token");
        let eos_token = special("eos_token");

        let lookup = |token: &Option<String>, key: &str| -> Result<Option<u32>> {
            let Some(token) = token else { return Ok(None) };
            match tokenizer.token_to_id(token) {
                Some(id) => Ok(Some(id)),
                None => bail!(
                    "{}: {key} is {token:?}, which {} does not contain; \
                     the two files come from different tokenizers",
                    tok_config_path.display(),
                    tok_path.display()
                ),
            }
        };
        let gen_ids = |key: &str| gen_config.as_ref().map(|g| json_ids(g.get(key)));
        let bos_id = match lookup(&bos_token, "bos_token")? {
            Some(id) => Some(id),
            None => gen_ids("bos_token_id").and_then(|ids| ids.first().copied()),
        };

        let mut eos_ids = Vec::new();
        let candidates = lookup(&eos_token, "eos_token")?
            .into_iter()
            .chain(gen_ids("eos_token_id").unwrap_or_default())
            .chain(tokenizer.token_to_id(EOT_TOKEN));
        for id in candidates {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }

        let (source, template_origin) = find_chat_template(dir, tok_config.as_ref())?;
        let env = build_env(source, &template_origin)?;

        let out = Self {
            tokenizer,
            env,
            template_origin,
            bos_token,
            eos_token,
            bos_id,
            eos_ids,
            image_id: image_token_index,
        };
        out.check_image_token(&tok_path, image_token_index)?;
        Ok(out)
    }

    fn check_image_token(&self, tok_path: &Path, expected: u32) -> Result<()> {
        let Some(id) = self.token_to_id(IMAGE_TOKEN) else {
            bail!(
                "{}: has no {IMAGE_TOKEN} token; llava-hf tokenizers add it as a special token \
                 (config.json says id {expected}); use the llava-hf conversion of the model",
                tok_path.display()
            );
        };
        if id != expected {
            bail!(
                "{}: {IMAGE_TOKEN} has id {id} but config.json image_token_index is {expected}; \
                 the tokenizer and the model config come from different conversions",
                tok_path.display()
            );
        }
        let ids = self.encode(IMAGE_TOKEN, false)?;
        if ids != [id] {
            bail!(
                "{}: {IMAGE_TOKEN} does not encode as one token (got {ids:?}); \
                 it must be listed in added_tokens as a special token",
                tok_path.display()
            );
        }
        Ok(())
    }

    /// Encodes text; `add_special_tokens` runs the tokenizer's post-processor (BOS for Llama-3).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, add_special_tokens)
            .map_err(|e| anyhow!("tokenizer: cannot encode {text:?}: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids to text, optionally dropping special tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special)
            .map_err(|e| anyhow!("tokenizer: cannot decode {} ids: {e}", ids.len()))
    }

    /// Renders the chat template for one user turn (optional image, then text) with a generation prompt.
    pub fn render_chat(&self, user_text: &str, with_image: bool) -> Result<String> {
        let mut content = Vec::new();
        if with_image {
            content.push(serde_json::json!({"type": "image"}));
        }
        content.push(serde_json::json!({"type": "text", "text": user_text}));
        let messages = serde_json::json!([{"role": "user", "content": content}]);
        let mut pairs = vec![
            ("messages", Value::from(minijinja::value::Serde(messages))),
            ("add_generation_prompt", Value::from(true)),
        ];
        // Absent specials stay undefined (render as ""), as in transformers, rather than "none".
        let specials = [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
        ];
        for (key, token) in specials {
            if let Some(t) = token {
                pairs.push((key, Value::from(t.as_str())));
            }
        }
        let ctx = Value::from_pairs(pairs);
        let template = self.env.get_template(TEMPLATE_NAME)?;
        template
            .render(ctx)
            .with_context(|| format!("{}: chat template failed to render", self.template_origin))
    }

    /// The sequence the original system caches with: `<image>` after BOS, no chat template.
    pub fn cache_prompt_ids(&self) -> Result<Vec<u32>> {
        let ids = self.encode(IMAGE_TOKEN, true)?;
        Ok(self.ensure_bos(ids))
    }

    /// Token ids of the rendered chat prompt for one user turn, starting with exactly one BOS.
    pub fn chat_prompt_ids(&self, user_text: &str, with_image: bool) -> Result<Vec<u32>> {
        let text = self.render_chat(user_text, with_image)?;
        // Like HF processors: a template that writes BOS itself must not get a second one.
        let has_bos_text = self
            .bos_token
            .as_deref()
            .is_some_and(|bos| !bos.is_empty() && text.starts_with(bos));
        let ids = self.encode(&text, !has_bos_text)?;
        Ok(self.ensure_bos(ids))
    }

    /// Position 0 is treated as BOS downstream (it is dropped when caching), so a tokenizer.json
    /// whose post-processor does not add it still gets one here.
    fn ensure_bos(&self, mut ids: Vec<u32>) -> Vec<u32> {
        if let Some(bos) = self.bos_id
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        ids
    }

    /// Id of the `<image>` placeholder (the model config's `image_token_index`).
    pub fn image_token_id(&self) -> u32 {
        self.image_id
    }

    /// Id of the BOS token, if the tokenizer has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Ids that end generation: tokenizer EOS, generation_config EOS ids and `<|eot_id|>`.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Id of a token string (including added tokens).
    pub fn token_to_id(&self, s: &str) -> Option<u32> {
        self.tokenizer.token_to_id(s)
    }

    /// Token string of an id (including added tokens).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    /// Where the chat template came from (a file name or "built-in Llama-3 LLaVA template").
    pub fn template_origin(&self) -> &str {
        &self.template_origin
    }

    /// The underlying Hugging Face tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

/// A special token is written either as a string or as an `AddedToken` object with `content`.
fn token_string(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Object(map) => map.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// generation_config ids are an int or a list of ints.
fn json_ids(v: Option<&Json>) -> Vec<u32> {
    let as_id = |x: &Json| x.as_u64().and_then(|n| u32::try_from(n).ok());
    match v {
        Some(Json::Array(items)) => items.iter().filter_map(as_id).collect(),
        Some(x) => as_id(x).into_iter().collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::tokenizer_gen::{SampleTokenizerInfo, write_sample_tokenizer};
    use tempfile::TempDir;

    const CHAT_WITH_IMAGE: &str = "<|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat is this?\
        <|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";

    fn sample() -> (TempDir, SampleTokenizerInfo) {
        let dir = TempDir::new().unwrap();
        let info = write_sample_tokenizer(dir.path(), 512).unwrap();
        (dir, info)
    }

    fn load(dir: &TempDir, info: &SampleTokenizerInfo) -> PromptTokenizer {
        PromptTokenizer::from_dir(dir.path(), info.image_id).unwrap()
    }

    fn edit_config(dir: &TempDir, f: impl FnOnce(&mut serde_json::Map<String, Json>)) {
        let path = dir.path().join("tokenizer_config.json");
        let mut cfg: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        f(cfg.as_object_mut().unwrap());
        std::fs::write(&path, serde_json::to_string(&cfg).unwrap()).unwrap();
    }

    #[test]
    fn image_token_is_a_single_special_id() {
        let (dir, info) = sample();
        let tok = load(&dir, &info);
        assert_eq!(tok.image_token_id(), info.image_id);
        assert_eq!(tok.token_to_id("<image>"), Some(info.image_id));
        assert_eq!(tok.encode("<image>", false).unwrap(), vec![info.image_id]);
        let ids = tok.encode("a <image> b", false).unwrap();
        assert_eq!(ids.iter().filter(|&&i| i == info.image_id).count(), 1);
        assert_eq!(tok.id_to_token(info.image_id).as_deref(), Some("<image>"));
        assert_eq!(tok.vocab_size(), info.vocab_size);
    }

    #[test]
    fn chat_render_follows_the_llava_hf_llama3_layout() {
        let (dir, info) = sample();
        let tok = load(&dir, &info);
        assert_eq!(tok.template_origin(), "tokenizer_config.json");
        assert_eq!(
            tok.render_chat("What is this?", true).unwrap(),
            CHAT_WITH_IMAGE
        );
        // The llava-hf template puts "\n" before the text even without an image.
        assert_eq!(
            tok.render_chat("Hi", false).unwrap(),
            "<|start_header_id|>user<|end_header_id|>\n\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn chat_ids_start_with_exactly_one_bos() {
        let (dir, info) = sample();
        let tok = load(&dir, &info);
        let ids = tok.chat_prompt_ids("What is this?", true).unwrap();
        assert_eq!(ids[0], info.bos_id);
        assert_eq!(ids.iter().filter(|&&i| i == info.bos_id).count(), 1);
        assert_eq!(ids.iter().filter(|&&i| i == info.image_id).count(), 1);
        let mut expected = vec![info.bos_id];
        expected.extend(tok.encode(CHAT_WITH_IMAGE, false).unwrap());
        assert_eq!(ids, expected);
        let text = tok.decode(&ids, false).unwrap();
        assert_eq!(text, format!("<|begin_of_text|>{CHAT_WITH_IMAGE}"));
    }

    #[test]
    fn template_that_writes_bos_gets_no_second_bos() {
        let (dir, info) = sample();
        let with_bos = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}{% endfor %}";
        std::fs::write(dir.path().join("chat_template.jinja"), with_bos).unwrap();
        let tok = load(&dir, &info);
        assert_eq!(tok.template_origin(), "chat_template.jinja");
        assert_eq!(
            tok.render_chat("x", false).unwrap(),
            "<|begin_of_text|>user"
        );
        let ids = tok.chat_prompt_ids("x", false).unwrap();
        assert_eq!(ids[0], info.bos_id);
        assert_eq!(ids.iter().filter(|&&i| i == info.bos_id).count(), 1);
    }

    #[test]
    fn chat_template_json_takes_precedence() {
        let (dir, info) = sample();
        std::fs::write(dir.path().join("chat_template.jinja"), "jinja").unwrap();
        let doc = serde_json::json!({"chat_template": "from json"});
        std::fs::write(dir.path().join("chat_template.json"), doc.to_string()).unwrap();
        let tok = load(&dir, &info);
        assert_eq!(tok.template_origin(), "chat_template.json");
        assert_eq!(tok.render_chat("x", true).unwrap(), "from json");
    }

    #[test]
    fn builtin_template_is_the_fallback() {
        let (dir, info) = sample();
        edit_config(&dir, |c| {
            c.remove("chat_template");
        });
        let tok = load(&dir, &info);
        assert!(tok.template_origin().starts_with("built-in"));
        assert_eq!(
            tok.render_chat("What is this?", true).unwrap(),
            CHAT_WITH_IMAGE
        );
    }

    #[test]
    fn chat_template_list_form_picks_default() {
        let (dir, info) = sample();
        edit_config(&dir, |c| {
            let list = serde_json::json!([
                {"name": "tool_use", "template": "tools"},
                {"name": "default", "template": LLAMA3_LLAVA_TEMPLATE},
            ]);
            c.insert("chat_template".into(), list);
        });
        let tok = load(&dir, &info);
        assert!(tok.template_origin().contains("default"));
        assert_eq!(
            tok.render_chat("What is this?", true).unwrap(),
            CHAT_WITH_IMAGE
        );

        edit_config(&dir, |c| {
            let list = serde_json::json!([{"name": "tool_use", "template": "tools"}]);
            c.insert("chat_template".into(), list);
        });
        let err = PromptTokenizer::from_dir(dir.path(), info.image_id).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("tokenizer_config.json") && msg.contains("tool_use"),
            "{msg}"
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let (dir, info) = sample();
        let tok = load(&dir, &info);
        let text = "The red circle is above the blue square, and 42 shapes are café-coloured.";
        let ids = tok.encode(text, false).unwrap();
        assert!(
            ids.len() < text.len(),
            "BPE merges should compress: {ids:?}"
        );
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        let with_bos = tok.encode(text, true).unwrap();
        assert_eq!(with_bos[0], info.bos_id);
        assert_eq!(&with_bos[1..], &ids[..]);
        assert_eq!(tok.decode(&with_bos, true).unwrap(), text);
    }

    #[test]
    fn cache_prompt_is_bos_then_image() {
        let (dir, info) = sample();
        let tok = load(&dir, &info);
        assert_eq!(
            tok.cache_prompt_ids().unwrap(),
            vec![info.bos_id, info.image_id]
        );
        assert_eq!(tok.bos_id(), Some(info.bos_id));
    }

    #[test]
    fn stream_decoder_reproduces_decode_across_split_characters() {
        let (dir, info) = sample();
        let tok = load(&dir, &info);
        let text = "café ☕ and 日本 — the red circle 🟥!";
        let mut ids = tok.chat_prompt_ids("Describe it.", true).unwrap();
        ids.extend(tok.encode(text, false).unwrap());
        ids.push(info.eot_id);

        let mut stream = StreamDecoder::new(&tok);
        let mut out = String::new();
        let mut held = 0;
        for &id in &ids {
            match stream.push(id).unwrap() {
                Some(chunk) => out.push_str(&chunk),
                None => held += 1,
            }
        }
        if let Some(rest) = stream.finish().unwrap() {
            out.push_str(&rest);
        }
        assert_eq!(out, tok.decode(&ids, true).unwrap());
        assert!(!out.contains(char::REPLACEMENT_CHARACTER));
        // Specials are skipped and multi-byte characters arrive byte by byte, so some pushes wait.
        assert!(held > 0);

        let mut stream = StreamDecoder::new(&tok).keep_special();
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&stream.push(id).unwrap().unwrap_or_default());
        }
        out.push_str(&stream.finish().unwrap().unwrap_or_default());
        assert_eq!(out, tok.decode(&ids, false).unwrap());
    }

    #[test]
    fn stream_decoder_finish_flushes_an_incomplete_character() {
        let (dir, info) = sample();
        let tok = load(&dir, &info);
        let ids = tok.encode("☕", false).unwrap();
        assert!(ids.len() > 1, "expected ☕ to span byte tokens: {ids:?}");
        let mut stream = StreamDecoder::new(&tok);
        assert_eq!(stream.push(ids[0]).unwrap(), None);
        let rest = stream.finish().unwrap().unwrap();
        assert_eq!(rest, tok.decode(&ids[..1], true).unwrap());
    }

    #[test]
    fn eos_ids_union_configs_and_eot() {
        let (dir, info) = sample();
        assert_eq!(load(&dir, &info).eos_ids(), &[info.eot_id]);
        let gen_cfg = serde_json::json!({"bos_token_id": info.bos_id, "eos_token_id": [info.eos_id, info.eot_id]});
        std::fs::write(
            dir.path().join("generation_config.json"),
            gen_cfg.to_string(),
        )
        .unwrap();
        assert_eq!(load(&dir, &info).eos_ids(), &[info.eot_id, info.eos_id]);

        // Without eos_token in the configs, generation_config's single id and <|eot_id|> remain.
        edit_config(&dir, |c| {
            c.remove("eos_token");
        });
        std::fs::remove_file(dir.path().join("special_tokens_map.json")).unwrap();
        let gen_cfg = serde_json::json!({"eos_token_id": info.eos_id});
        std::fs::write(
            dir.path().join("generation_config.json"),
            gen_cfg.to_string(),
        )
        .unwrap();
        assert_eq!(load(&dir, &info).eos_ids(), &[info.eos_id, info.eot_id]);
    }

    #[test]
    fn special_tokens_map_object_form_is_read() {
        let (dir, info) = sample();
        edit_config(&dir, |c| {
            c.remove("bos_token");
            c.remove("eos_token");
        });
        let tok = load(&dir, &info);
        assert_eq!(tok.bos_id(), Some(info.bos_id));
        assert_eq!(tok.eos_ids(), &[info.eot_id]);
    }

    #[test]
    fn missing_tokenizer_json_is_named() {
        let dir = TempDir::new().unwrap();
        let err = PromptTokenizer::from_dir(dir.path(), 5).unwrap_err();
        assert!(format!("{err:#}").contains("tokenizer.json"), "{err:#}");
    }

    #[test]
    fn image_token_problems_are_reported() {
        let (dir, info) = sample();
        let err = PromptTokenizer::from_dir(dir.path(), info.image_id + 1).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("tokenizer.json") && msg.contains("image_token_index"),
            "{msg}"
        );

        let path = dir.path().join("tokenizer.json");
        let mut doc: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let added = doc["added_tokens"].as_array_mut().unwrap();
        added.retain(|t| t["content"] != "<image>");
        std::fs::write(&path, doc.to_string()).unwrap();
        let err = PromptTokenizer::from_dir(dir.path(), info.image_id).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("tokenizer.json") && msg.contains("has no <image>"),
            "{msg}"
        );
    }

    #[test]
    fn template_helpers_behave_like_transformers() {
        let (dir, info) = sample();
        let template = "{% if messages|length > 1 %}{{ raise_exception('one turn only') }}{% endif %}\n\
            {% for m in messages %}\n  {% generation %}{{ m['role'].upper() }}: \
            {{ m['content'][-1]['text'].strip() }}{% endgeneration %}\n{% endfor %}\n";
        std::fs::write(dir.path().join("chat_template.jinja"), template).unwrap();
        let tok = load(&dir, &info);
        // trim_blocks drops the newline after each block tag (generation is one), lstrip_blocks
        // the indentation before it; expected strings come from jinja2 3.1 with HF's settings.
        assert_eq!(tok.render_chat("  hi  ", false).unwrap(), "USER: hi");

        let lines = "{% for m in messages %}\n  {{ m['role'] }}\n{% endfor %}\n";
        std::fs::write(dir.path().join("chat_template.jinja"), lines).unwrap();
        assert_eq!(
            load(&dir, &info).render_chat("x", false).unwrap(),
            "  user\n"
        );

        let failing = "{{ raise_exception('only user turns') }}";
        std::fs::write(dir.path().join("chat_template.jinja"), failing).unwrap();
        let err = load(&dir, &info).render_chat("x", false).unwrap_err();
        assert!(format!("{err:#}").contains("only user turns"), "{err:#}");
    }
}
