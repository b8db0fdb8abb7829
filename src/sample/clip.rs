//! The sample world's tiny random CLIP checkpoint (`clip-tiny/`), in the Hugging Face layout.
//!
//! OpenAI geometry where it is cheap (224 px images, 16 px patches, 77-token context, CLIP
//! mean/std and bicubic resize) with tiny widths, so `glint --batch score --method clip` runs
//! offline. The text tower uses `gelu` and the vision tower `quick_gelu` so both activations are
//! exercised. Weights are seeded per tensor name and non-trivial (norms `1 + 0.1·N`, biases
//! `0.02·N`) so the parity fixture catches a misread tensor.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{Device, Tensor};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use super::tokenizer_gen::SAMPLE_CORPUS;
use crate::util::rng::SeededRng;

/// Folder name of the tiny CLIP inside the sample world.
pub const CLIP_DIR: &str = "clip-tiny";
/// Start-of-text token.
pub const SOT_TOKEN: &str = "<|startoftext|>";
/// End-of-text token (also CLIP's pad and unknown token).
pub const EOT_TOKEN: &str = "<|endoftext|>";
/// BPE merges kept from training; the vocabulary is 512 byte symbols + merges + 2 specials.
pub const CLIP_MERGES: usize = 256;

const HIDDEN: usize = 32;
const MLP: usize = 64;
const LAYERS: usize = 2;
const HEADS: usize = 2;
const PROJECTION: usize = 16;
const IMAGE: usize = 224;
const PATCH: usize = 16;
const CONTEXT: usize = 77;
/// `ln(1 / 0.07)`, transformers' `logit_scale_init_value`.
const LOGIT_SCALE: f32 = 2.6592;

/// CLIP's word splitter, as transformers' `CLIPTokenizer` builds it.
const SPLIT_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Captions in CLIP's style, added to the shared sample corpus.
const CAPTIONS: &str = "\
a photo of a red circle
a photo of a blue square
a picture of a green triangle
an image of a yellow star
a drawing of shapes on a white background
a red cross and a cyan circle
a magenta square next to an orange ring
";

/// GPT-2's byte-to-symbol table in CLIP's vocabulary order (printable bytes first).
fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut out: Vec<char> = (0..256u32)
        .filter(|&b| printable(b))
        .filter_map(char::from_u32)
        .collect();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable(b) {
            out.extend(char::from_u32(256 + n));
            n += 1;
        }
    }
    out
}

/// The tokenizer.json skeleton around a vocabulary and merge list.
fn tokenizer_json(vocab: &[String], merges: &[(String, String)]) -> Value {
    let n = vocab.len();
    let (sot, eot) = (n, n + 1);
    let mut map = serde_json::Map::new();
    for (i, tok) in vocab.iter().enumerate() {
        map.insert(tok.clone(), json!(i));
    }
    map.insert(SOT_TOKEN.into(), json!(sot));
    map.insert(EOT_TOKEN.into(), json!(eot));
    let added = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": true, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(sot, SOT_TOKEN), added(eot, EOT_TOKEN)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN}, "behavior": "Removed",
             "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
             "use_regex": true}
        ]},
        "post_processor": {"type": "RobertaProcessing", "sep": [EOT_TOKEN, eot],
                           "cls": [SOT_TOKEN, sot], "trim_offsets": false,
                           "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": EOT_TOKEN,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": Value::Object(map),
                  "merges": merges.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>()}
    })
}

/// Split the corpus into words of byte symbols (the last one suffixed `</w>`), with counts.
///
/// The skeleton tokenizer (no merges) does the normalising and splitting, so the words are
/// exactly what the finished tokenizer will see.
fn corpus_words(skeleton: &Tokenizer) -> Result<BTreeMap<Vec<String>, usize>> {
    let mut words = BTreeMap::new();
    for line in SAMPLE_CORPUS.lines().chain(CAPTIONS.lines()) {
        let enc = skeleton
            .encode(line, false)
            .map_err(|e| anyhow!("sample CLIP tokenizer: cannot split {line:?}: {e}"))?;
        let mut word = Vec::new();
        for tok in enc.get_tokens() {
            word.push(tok.clone());
            if tok.ends_with("</w>") {
                *words.entry(std::mem::take(&mut word)).or_insert(0) += 1;
            }
        }
    }
    Ok(words)
}

/// Learn up to `n` merges: the most frequent adjacent pair each round, ties broken by the
/// pair's text so the result never depends on hash order.
fn learn_merges(mut words: BTreeMap<Vec<String>, usize>, n: usize) -> Vec<(String, String)> {
    let mut merges = Vec::with_capacity(n);
    while merges.len() < n {
        let mut pairs: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (word, count) in &words {
            for w in word.windows(2) {
                *pairs.entry((w[0].as_str(), w[1].as_str())).or_insert(0) += count;
            }
        }
        // First maximum in ascending pair order.
        let Some(((a, b), _)) = pairs.into_iter().fold(
            None,
            |best: Option<((&str, &str), usize)>, (p, c)| match best {
                Some((_, bc)) if bc >= c => best,
                _ => Some((p, c)),
            },
        ) else {
            break;
        };
        let (a, b) = (a.to_string(), b.to_string());
        let joined = format!("{a}{b}");
        words = words
            .into_iter()
            .fold(BTreeMap::new(), |mut acc, (word, count)| {
                let mut out = Vec::with_capacity(word.len());
                let mut i = 0;
                while i < word.len() {
                    if i + 1 < word.len() && word[i] == a && word[i + 1] == b {
                        out.push(joined.clone());
                        i += 2;
                    } else {
                        out.push(word[i].clone());
                        i += 1;
                    }
                }
                *acc.entry(out).or_insert(0) += count;
                acc
            });
        merges.push((a, b));
    }
    merges
}

/// Build the tiny CLIP BPE; identical on every run.
pub fn build_clip_tokenizer() -> Result<Tokenizer> {
    let symbols = byte_symbols();
    let mut vocab: Vec<String> = symbols.iter().map(|c| c.to_string()).collect();
    vocab.extend(symbols.iter().map(|c| format!("{c}</w>")));
    let skeleton: Tokenizer = tokenizer_json(&vocab, &[])
        .to_string()
        .parse()
        .map_err(|e| anyhow!("sample CLIP tokenizer: bad skeleton: {e}"))?;
    let merges = learn_merges(corpus_words(&skeleton)?, CLIP_MERGES);
    if merges.len() < CLIP_MERGES {
        bail!(
            "sample CLIP tokenizer: the corpus allows {} merges, need {CLIP_MERGES}",
            merges.len()
        );
    }
    for (a, b) in &merges {
        let tok = format!("{a}{b}");
        if !vocab.contains(&tok) {
            vocab.push(tok);
        }
    }
    tokenizer_json(&vocab, &merges)
        .to_string()
        .parse()
        .map_err(|e| anyhow!("sample CLIP tokenizer: cannot load the result: {e}"))
}

/// The tiny CLIP's `config.json` for a vocabulary of `vocab` ids ending in SOT, EOT.
pub fn clip_config(vocab: usize) -> Value {
    let eot = vocab - 1;
    json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": PROJECTION,
        "logit_scale_init_value": 2.6592,
        "initializer_factor": 1.0,
        "dtype": "float32",
        "text_config": {
            "model_type": "clip_text_model",
            "vocab_size": vocab, "hidden_size": HIDDEN, "intermediate_size": MLP,
            "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "max_position_embeddings": CONTEXT, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
            "projection_dim": PROJECTION,
            "bos_token_id": vocab - 2, "eos_token_id": eot, "pad_token_id": eot
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": HIDDEN, "intermediate_size": MLP, "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS, "num_channels": 3, "image_size": IMAGE,
            "patch_size": PATCH, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
            "projection_dim": PROJECTION
        }
    })
}

/// `preprocessor_config.json` of OpenAI CLIP at 224 px.
pub fn clip_preprocessor() -> Value {
    json!({
        "image_processor_type": "CLIPImageProcessor",
        "processor_class": "CLIPProcessor",
        "crop_size": {"height": IMAGE, "width": IMAGE},
        "size": {"shortest_edge": IMAGE},
        "do_center_crop": true, "do_convert_rgb": true, "do_normalize": true,
        "do_rescale": true, "do_resize": true,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "rescale_factor": 0.00392156862745098,
        "resample": 3
    })
}

/// Every tensor name of the tiny CLIP with its shape.
fn tensor_shapes(vocab: usize) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut push = |name: String, shape: &[usize]| out.push((name, shape.to_vec()));
    for tower in ["text_model", "vision_model"] {
        for i in 0..LAYERS {
            let l = format!("{tower}.encoder.layers.{i}");
            for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                push(format!("{l}.self_attn.{p}.weight"), &[HIDDEN, HIDDEN]);
                push(format!("{l}.self_attn.{p}.bias"), &[HIDDEN]);
            }
            push(format!("{l}.mlp.fc1.weight"), &[MLP, HIDDEN]);
            push(format!("{l}.mlp.fc1.bias"), &[MLP]);
            push(format!("{l}.mlp.fc2.weight"), &[HIDDEN, MLP]);
            push(format!("{l}.mlp.fc2.bias"), &[HIDDEN]);
            for n in ["layer_norm1", "layer_norm2"] {
                push(format!("{l}.{n}.weight"), &[HIDDEN]);
                push(format!("{l}.{n}.bias"), &[HIDDEN]);
            }
        }
    }
    let grid = IMAGE / PATCH;
    push(
        "text_model.embeddings.token_embedding.weight".into(),
        &[vocab, HIDDEN],
    );
    push(
        "text_model.embeddings.position_embedding.weight".into(),
        &[CONTEXT, HIDDEN],
    );
    push("vision_model.embeddings.class_embedding".into(), &[HIDDEN]);
    push(
        "vision_model.embeddings.patch_embedding.weight".into(),
        &[HIDDEN, 3, PATCH, PATCH],
    );
    push(
        "vision_model.embeddings.position_embedding.weight".into(),
        &[grid * grid + 1, HIDDEN],
    );
    for n in [
        "text_model.final_layer_norm",
        "vision_model.pre_layrnorm",
        "vision_model.post_layernorm",
    ] {
        push(format!("{n}.weight"), &[HIDDEN]);
        push(format!("{n}.bias"), &[HIDDEN]);
    }
    push("text_projection.weight".into(), &[PROJECTION, HIDDEN]);
    push("visual_projection.weight".into(), &[PROJECTION, HIDDEN]);
    out
}

/// Draw one tensor: norms near one, small biases, weights scaled by their fan-in.
fn draw(seed: u64, name: &str, shape: &[usize]) -> Result<Tensor> {
    let mut rng = SeededRng::for_name(seed, &format!("{CLIP_DIR}:{name}"));
    let count: usize = shape.iter().product();
    let is_norm = name.contains("norm") || name.contains("layrnorm");
    let (base, std) = if name.ends_with(".bias") {
        (0.0, 0.02)
    } else if is_norm {
        (1.0, 0.1)
    } else if name.contains("position_embedding") {
        (0.0, 0.1)
    } else if name.contains("token_embedding") || name.ends_with("class_embedding") {
        (0.0, 0.5)
    } else {
        let fan_in: usize = shape[1..].iter().product();
        (0.0, (fan_in.max(1) as f64).powf(-0.5))
    };
    let data: Vec<f32> = (0..count)
        .map(|_| (base + std * rng.normal()) as f32)
        .collect();
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

/// Write the tiny CLIP (config, weights, tokenizer, processor config) into `dir`.
pub fn write_clip_tiny(dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let tokenizer = build_clip_tokenizer()?;
    let vocab = tokenizer.get_vocab_size(true);
    let tok_text = tokenizer
        .to_string(true)
        .map_err(|e| anyhow!("sample CLIP tokenizer: cannot serialise: {e}"))?;
    let tok_path = dir.join("tokenizer.json");
    std::fs::write(&tok_path, tok_text)
        .with_context(|| format!("{}: cannot write", tok_path.display()))?;
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({
            "tokenizer_class": "CLIPTokenizer",
            "bos_token": SOT_TOKEN, "eos_token": EOT_TOKEN, "pad_token": EOT_TOKEN,
            "unk_token": EOT_TOKEN, "model_max_length": CONTEXT, "do_lower_case": true,
            "clean_up_tokenization_spaces": false
        }),
    )?;
    write_json(&dir.join("config.json"), &clip_config(vocab))?;
    write_json(&dir.join("preprocessor_config.json"), &clip_preprocessor())?;

    let mut tensors = HashMap::new();
    for (name, shape) in tensor_shapes(vocab) {
        tensors.insert(name.clone(), draw(seed, &name, &shape)?);
    }
    tensors.insert(
        "logit_scale".to_string(),
        Tensor::new(LOGIT_SCALE, &Device::Cpu)?,
    );
    let path = dir.join("model.safetensors");
    crate::util::weights_file::save_pt(tensors.iter().map(|(k, t)| (k.as_str(), t)), &path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::ClipScorer;

    #[test]
    fn byte_table_matches_gpt2() {
        let s = byte_symbols();
        assert_eq!(s.len(), 256);
        assert_eq!((s[0], s[93], s[94]), ('!', '~', '¡'));
        // Space (byte 32) is the 33rd non-printable byte, so it maps to U+0120 'Ġ'.
        assert_eq!(s[188 + 32], 'Ġ');
        let unique: std::collections::HashSet<char> = s.iter().copied().collect();
        assert_eq!(unique.len(), 256);
    }

    #[test]
    fn merges_take_the_most_frequent_pair_then_the_smallest() {
        let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let words = BTreeMap::from([(w("l o w</w>"), 3), (w("l o t</w>"), 2), (w("a b</w>"), 3)]);
        let merges = learn_merges(words, 3);
        let m = |a: &str, b: &str| (a.to_string(), b.to_string());
        // (l, o) occurs 5 times; then (a, b</w>) and (lo, w</w>) tie at 3 and "a" sorts first.
        assert_eq!(merges, [m("l", "o"), m("a", "b</w>"), m("lo", "w</w>")]);
    }

    #[test]
    fn tokenizer_is_deterministic_and_clip_shaped() {
        let a = build_clip_tokenizer().unwrap();
        let b = build_clip_tokenizer().unwrap();
        let same = a.to_string(true).unwrap() == b.to_string(true).unwrap();
        assert!(same, "two builds of the CLIP tokenizer differ");
        let n = a.get_vocab_size(true);
        assert_eq!(a.token_to_id(SOT_TOKEN), Some(n as u32 - 2));
        assert_eq!(a.token_to_id(EOT_TOKEN), Some(n as u32 - 1));
        let enc = a.encode("A Photo of a  RED circle!", true).unwrap();
        let ids = enc.get_ids();
        assert_eq!(ids.first(), Some(&(n as u32 - 2)));
        assert_eq!(ids.last(), Some(&(n as u32 - 1)));
        // Lowercased, and every word ends in a </w> token.
        let toks = enc.get_tokens();
        assert!(toks.contains(&"red</w>".to_string()), "{toks:?}");
        assert!(toks.iter().all(|t| !t.chars().any(char::is_uppercase)));
        // Bytes never seen in training still encode without unknowns.
        let odd = a.encode("ü ß 東", true).unwrap();
        assert!(!odd.get_ids()[1..odd.len() - 1].contains(&(n as u32 - 1)));
    }

    #[test]
    fn written_folder_is_small_loads_and_is_reproducible() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_clip_tiny(da.path(), 0).unwrap();
        write_clip_tiny(db.path(), 0).unwrap();
        let mut total = 0;
        for name in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "preprocessor_config.json",
        ] {
            let fa = std::fs::read(da.path().join(name)).unwrap();
            let same = fa == std::fs::read(db.path().join(name)).unwrap();
            assert!(same, "{name} differs between runs");
            total += fa.len();
        }
        assert!(total < 1 << 20, "clip-tiny is {total} bytes");
        let scorer = ClipScorer::load_dir(da.path(), &Device::Cpu).unwrap();
        assert!((scorer.logit_scale() - LOGIT_SCALE.exp()).abs() < 1e-4);
    }
}
