//! The sample world's tokenizer: a small byte-level BPE trained on a built-in English corpus,
//! with Llama-3 / llava-hf special tokens, written as a Hugging Face tokenizer folder.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::model::tokenizer::LLAMA3_LLAVA_TEMPLATE;

/// Beginning-of-text token (Llama-3 BOS).
pub const BOS_TOKEN: &str = "<|begin_of_text|>";
/// End-of-text token (Llama-3 base EOS).
pub const EOS_TOKEN: &str = "<|end_of_text|>";
/// Start of a chat header.
pub const START_HEADER_TOKEN: &str = "<|start_header_id|>";
/// End of a chat header.
pub const END_HEADER_TOKEN: &str = "<|end_header_id|>";
/// End of turn; the chat EOS, as in llava-hf's Llama-3 configs.
pub const EOT_TOKEN: &str = "<|eot_id|>";
/// Image placeholder, appended after the base vocabulary like llava-hf does.
pub use crate::model::tokenizer::IMAGE_TOKEN;
/// Padding token, appended last like llava-hf does.
pub const PAD_TOKEN: &str = "<pad>";

/// Added special tokens in id order; they follow the trained byte-level vocabulary.
pub const SPECIAL_TOKENS: [&str; 7] = [
    BOS_TOKEN,
    EOS_TOKEN,
    START_HEADER_TOKEN,
    END_HEADER_TOKEN,
    EOT_TOKEN,
    IMAGE_TOKEN,
    PAD_TOKEN,
];

/// Context length recorded in tokenizer_config.json (Llama-3's).
const MODEL_MAX_LENGTH: usize = 8192;
/// 256 byte symbols are always in a byte-level vocabulary.
const BYTE_ALPHABET: usize = 256;

/// The fixed training text: the words the shapes world talks about.
pub const SAMPLE_CORPUS: &str = "\
Describe the image.
What is in this image?
What colour is the circle?
What colour is the square?
What colour is the triangle?
What shape is in the picture?
How many shapes are there in the image?
Is there a red circle in the image?
Is the square bigger than the circle?
Where is the triangle?
The image shows a red circle on a white background.
The image shows a blue square in the top left corner.
The image shows a green triangle in the bottom right corner.
There is a yellow star in the centre of the picture.
There are two circles and one square.
There are three triangles of different colours.
A small purple circle sits next to a large orange square.
A large black square covers most of the image.
The background is grey and the shape is white.
The red circle is above the blue square.
The green triangle is below the yellow circle.
The orange star is to the left of the pink square.
The cyan rectangle is to the right of the brown circle.
Each shape has a solid colour and a thin dark outline.
The picture is simple: one shape, one colour, one background.
This is a photo of a red ball on a table.
This is a drawing of a blue house with a green door.
The sky is blue, the grass is green and the sun is yellow.
Colours: red, orange, yellow, green, blue, indigo, violet, purple, pink, brown, black, white, grey, gray, cyan, magenta.
Shapes: circle, square, triangle, rectangle, star, hexagon, pentagon, diamond, oval, ellipse, line, dot, cross, ring, heart.
Sizes: tiny, small, medium, large, huge, big, little, wide, narrow, tall, short, thin, thick.
Places: top, bottom, left, right, centre, center, middle, corner, edge, above, below, beside, between, inside, outside.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 16 24 32 64 100 128 256 336 512 576 672 1000 2024.
Count the circles: one, two, three, four, five, six, seven, eight, nine, ten.
The first shape is red. The second shape is blue. The third shape is green.
How many red shapes are there? There are 3 red shapes.
How many blue squares are there? There is 1 blue square.
Answer the question about the image in one word.
Answer: red. Answer: blue. Answer: circle. Answer: square. Answer: yes. Answer: no.
Yes, there is a circle. No, there is no triangle.
The user asks a question and the assistant answers it.
The assistant looks at the image and describes what it sees.
I see a bright red circle and a dark blue square.
I can see four shapes: a circle, a square, a triangle and a star.
The circle is round. The square has four equal sides. The triangle has three sides.
A hexagon has six sides and a pentagon has five sides.
The shapes do not overlap, and each one is easy to see.
Some shapes overlap, so part of the blue square is hidden behind the red circle.
The image is 336 pixels wide and 336 pixels high.
The picture was drawn with flat colours and no texture.
Light colours like yellow and white are bright; dark colours like black and navy are dim.
What is the colour of the largest shape? The largest shape is green.
What is the colour of the smallest shape? The smallest shape is pink.
Which shape is closest to the top edge? The star is closest to the top edge.
Which shape is on the left? The triangle is on the left.
Tell me about the colours in this picture.
Please describe the shapes and their positions.
Can you name every shape you see?
Is the image mostly red, green or blue?
The feature responds to red regions and ignores blue ones.
This feature fires on circles but not on squares.
The model reads the image, then writes an answer word by word.
";

/// What the sample model says most: its caption form and every one-word answer on a line of its
/// own, so that each answer word starting a turn is one token (the CLIP fixture's tokenizer
/// reads only [`SAMPLE_CORPUS`]).
const ANSWER_CORPUS: &str = "\
a red circle, a green star and a blue square on a striped background
a yellow triangle and a magenta ring on a checked background
a cyan cross on a shaded background
a blue ring and a red star on a blotchy background
red
green
blue
yellow
magenta
cyan
circle
square
triangle
star
cross
ring
one
two
three
yes
no
red
green
blue
yellow
magenta
cyan
circle
square
triangle
star
cross
ring
one
two
three
yes
no
red
green
blue
yellow
magenta
cyan
circle
square
triangle
star
cross
ring
one
two
three
yes
no
";

/// Ids of the special tokens in a generated sample tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleTokenizerInfo {
    /// Total vocabulary, including added special tokens.
    pub vocab_size: usize,
    /// `<|begin_of_text|>`.
    pub bos_id: u32,
    /// `<|end_of_text|>`.
    pub eos_id: u32,
    /// `<|eot_id|>`.
    pub eot_id: u32,
    /// `<image>`.
    pub image_id: u32,
    /// `<pad>`.
    pub pad_id: u32,
}

/// Trains the sample tokenizer in memory; the result is identical on every run.
pub fn build_sample_tokenizer(vocab_size: usize) -> Result<(Tokenizer, SampleTokenizerInfo)> {
    let min = BYTE_ALPHABET + SPECIAL_TOKENS.len() + 1;
    if vocab_size < min {
        bail!(
            "sample tokenizer: vocab_size {vocab_size} is too small; byte-level BPE needs \
             {BYTE_ALPHABET} byte tokens plus {} specials, so use at least {min}",
            SPECIAL_TOKENS.len()
        );
    }
    let base_size = vocab_size - SPECIAL_TOKENS.len();
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(base_size)
        .min_frequency(0)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();

    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer
        .train(
            &mut trainer,
            SAMPLE_CORPUS.lines().chain(ANSWER_CORPUS.lines()),
        )
        .map_err(|e| anyhow!("sample tokenizer: BPE training failed: {e}"))?;

    // Specials come after the base vocabulary, as in Llama-3 and llava-hf.
    let added = SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true));
    tokenizer
        .add_special_tokens(added)
        .map_err(|e| anyhow!("sample tokenizer: cannot add special tokens: {e}"))?;

    let id = |tok: &str| {
        tokenizer
            .token_to_id(tok)
            .ok_or_else(|| anyhow!("sample tokenizer: special token {tok} was not added"))
    };
    let info = SampleTokenizerInfo {
        vocab_size: tokenizer.get_vocab_size(true),
        bos_id: id(BOS_TOKEN)?,
        eos_id: id(EOS_TOKEN)?,
        eot_id: id(EOT_TOKEN)?,
        image_id: id(IMAGE_TOKEN)?,
        pad_id: id(PAD_TOKEN)?,
    };

    let post = TemplateProcessing::builder()
        .try_single(format!("{BOS_TOKEN} $A"))
        .and_then(|b| b.try_pair(format!("{BOS_TOKEN} $A {BOS_TOKEN}:1 $B:1")))
        .map_err(|e| anyhow!("sample tokenizer: bad post-processor template: {e}"))?
        .special_tokens(vec![(BOS_TOKEN, info.bos_id)])
        .build()
        .map_err(|e| anyhow!("sample tokenizer: cannot build post-processor: {e}"))?;
    tokenizer.with_post_processor(Some(post));
    Ok((tokenizer, info))
}

/// Trains the sample tokenizer and writes `tokenizer.json`, `tokenizer_config.json` (with the
/// chat template) and `special_tokens_map.json` into `out_dir`.
pub fn write_sample_tokenizer(out_dir: &Path, vocab_size: usize) -> Result<SampleTokenizerInfo> {
    let (tokenizer, info) = build_sample_tokenizer(vocab_size)?;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("{}: cannot create directory", out_dir.display()))?;

    let tok_json = tokenizer
        .to_string(true)
        .map_err(|e| anyhow!("sample tokenizer: cannot serialise tokenizer.json: {e}"))?;
    write(out_dir, "tokenizer.json", tok_json)?;

    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS_TOKEN,
        "eos_token": EOT_TOKEN,
        "pad_token": PAD_TOKEN,
        "model_max_length": MODEL_MAX_LENGTH,
        // Rust decode never cleans up spaces; keep Python's decode identical.
        "clean_up_tokenization_spaces": false,
        "chat_template": LLAMA3_LLAVA_TEMPLATE,
        // LLaVA's forward takes no token_type_ids, which the fast tokenizer adds by default.
        "model_input_names": ["input_ids", "attention_mask"],
    });
    write(out_dir, "tokenizer_config.json", pretty(&config)?)?;

    let entry = |content: &str| {
        json!({"content": content, "lstrip": false, "normalized": false, "rstrip": false,
               "single_word": false})
    };
    let map = json!({
        "bos_token": entry(BOS_TOKEN),
        "eos_token": entry(EOT_TOKEN),
        "pad_token": entry(PAD_TOKEN),
    });
    write(out_dir, "special_tokens_map.json", pretty(&map)?)?;
    Ok(info)
}

fn pretty(v: &serde_json::Value) -> Result<String> {
    serde_json::to_string_pretty(v).context("sample tokenizer: cannot serialise JSON")
}

fn write(dir: &Path, name: &str, text: String) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_is_byte_identical_across_runs() {
        let (a, info_a) = build_sample_tokenizer(512).unwrap();
        let (b, info_b) = build_sample_tokenizer(512).unwrap();
        assert_eq!(info_a, info_b);
        assert_eq!(a.to_string(true).unwrap(), b.to_string(true).unwrap());

        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_sample_tokenizer(da.path(), 512).unwrap();
        write_sample_tokenizer(db.path(), 512).unwrap();
        for name in [
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ] {
            let fa = std::fs::read(da.path().join(name)).unwrap();
            let fb = std::fs::read(db.path().join(name)).unwrap();
            assert!(!fa.is_empty());
            assert_eq!(fa, fb, "{name} differs between runs");
        }
        assert!(!da.path().join("generation_config.json").exists());
    }

    #[test]
    fn specials_follow_the_trained_vocabulary_in_order() {
        let (tok, info) = build_sample_tokenizer(512).unwrap();
        assert_eq!(info.vocab_size, 512);
        let base = tok.get_vocab_size(false) as u32;
        assert_eq!(base, 505);
        for (i, s) in SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(tok.token_to_id(s), Some(base + i as u32), "{s}");
        }
        assert_eq!(
            [
                info.bos_id,
                info.eos_id,
                info.eot_id,
                info.image_id,
                info.pad_id
            ],
            [base, base + 1, base + 4, base + 5, base + 6]
        );
    }

    #[test]
    fn encoding_prepends_one_bos_and_splits_specials() {
        let (tok, info) = build_sample_tokenizer(512).unwrap();
        let text =
            "<|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat colour is the circle?";
        let ids = tok.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(ids[0], info.bos_id);
        assert_eq!(ids.iter().filter(|&&i| i == info.bos_id).count(), 1);
        assert_eq!(ids.iter().filter(|&&i| i == info.image_id).count(), 1);
        let plain = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(&ids[1..], &plain[..]);
        assert_eq!(tok.decode(&plain, false).unwrap(), text);
        // A trained vocabulary turns common corpus words into single tokens.
        let q = tok.encode("What colour is the circle?", false).unwrap();
        assert!(q.get_ids().len() <= 8, "{:?}", q.get_tokens());
    }

    #[test]
    fn written_config_names_llava_hf_specials() {
        let dir = tempfile::tempdir().unwrap();
        write_sample_tokenizer(dir.path(), 400).unwrap();
        let text = std::fs::read_to_string(dir.path().join("tokenizer_config.json")).unwrap();
        let cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(cfg["bos_token"], BOS_TOKEN);
        assert_eq!(cfg["eos_token"], EOT_TOKEN);
        assert_eq!(cfg["pad_token"], PAD_TOKEN);
        assert_eq!(cfg["chat_template"], LLAMA3_LLAVA_TEMPLATE);
        let text = std::fs::read_to_string(dir.path().join("special_tokens_map.json")).unwrap();
        let map: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(map["eos_token"]["content"], EOT_TOKEN);
    }

    #[test]
    fn too_small_vocab_is_refused() {
        let err = build_sample_tokenizer(100).unwrap_err();
        assert!(err.to_string().contains("at least 264"), "{err}");
        assert_eq!(build_sample_tokenizer(264).unwrap().1.vocab_size, 264);
    }
}
