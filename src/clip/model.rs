//! The CLIP network: text and vision transformers and their projections into one space.
//!
//! Weight names follow transformers' `CLIPModel` (`text_model.*`, `vision_model.*`,
//! `text_projection.weight`, `visual_projection.weight`, `logit_scale`).

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};

use super::config::{Activation, ClipConfig, ClipTextConfig, ClipVisionConfig, EncoderSpec};

/// Legacy `eos_token_id` of pre-2023 configs; it switches pooling to the argmax of the ids.
const LEGACY_EOS_ID: i64 = 2;

/// One pre-norm transformer layer (attention then MLP, each with a residual).
struct EncoderLayer {
    norm1: LayerNorm,
    norm2: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    act: Activation,
}

impl EncoderLayer {
    fn load(spec: &EncoderSpec, act: Activation, vb: VarBuilder) -> Result<Self> {
        let (c, m, eps) = (
            spec.hidden_size,
            spec.intermediate_size,
            spec.layer_norm_eps,
        );
        let attn = vb.pp("self_attn");
        Ok(Self {
            norm1: candle_nn::layer_norm(c, eps, vb.pp("layer_norm1"))?,
            norm2: candle_nn::layer_norm(c, eps, vb.pp("layer_norm2"))?,
            q: candle_nn::linear(c, c, attn.pp("q_proj"))?,
            k: candle_nn::linear(c, c, attn.pp("k_proj"))?,
            v: candle_nn::linear(c, c, attn.pp("v_proj"))?,
            out: candle_nn::linear(c, c, attn.pp("out_proj"))?,
            fc1: candle_nn::linear(c, m, vb.pp("mlp.fc1"))?,
            fc2: candle_nn::linear(m, c, vb.pp("mlp.fc2"))?,
            heads: spec.num_attention_heads,
            act,
        })
    }

    /// Self-attention over `[b, t, c]`; `mask` is an additive `[t, t]` bias.
    fn attend(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let hd = c / self.heads;
        let heads = |y: Tensor| -> Result<Tensor> {
            y.reshape((b, t, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        // transformers scales the scores, not q; the two agree to float rounding.
        let q = heads(self.q.forward(x)?)?;
        let k = heads(self.k.forward(x)?)?;
        let v = heads(self.v.forward(x)?)?;
        let mut scores = (q.matmul(&k.t()?)? * (hd as f64).powf(-0.5))?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, c))?;
        self.out.forward(&ctx)
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let x = (x + self.attend(&self.norm1.forward(x)?, mask)?)?;
        let h = self.fc1.forward(&self.norm2.forward(&x)?)?;
        let h = match self.act {
            Activation::QuickGelu => (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?,
            Activation::Gelu => h.gelu_erf()?,
            Activation::GeluTanh => h.gelu()?,
        };
        x + self.fc2.forward(&h)?
    }
}

/// A stack of encoder layers.
struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    fn load(spec: &EncoderSpec, vb: VarBuilder) -> Result<Self> {
        let act = Activation::parse(&spec.hidden_act, "config.json")
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let layers = (0..spec.num_hidden_layers)
            .map(|i| EncoderLayer::load(spec, act, vb.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    fn forward(&self, mut x: Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        for layer in &self.layers {
            x = layer.forward(&x, mask)?;
        }
        Ok(x)
    }
}

/// Position of the pooled token in one id sequence, as transformers' `CLIPTextTransformer`
/// picks it: the first maximal id for legacy configs (`eos_token_id == 2`), else the first
/// `eos_token_id` (position 0 when there is none).
pub fn pooled_position(ids: &[u32], eos_token_id: i64) -> usize {
    if eos_token_id == LEGACY_EOS_ID {
        let mut best = 0;
        for (i, &id) in ids.iter().enumerate() {
            if id > ids[best] {
                best = i;
            }
        }
        best
    } else {
        ids.iter()
            .position(|&id| i64::from(id) == eos_token_id)
            .unwrap_or(0)
    }
}

/// CLIP text transformer up to the pooled, final-normed state.
pub struct TextTransformer {
    token_embedding: Embedding,
    position_embedding: Tensor,
    encoder: Encoder,
    final_norm: LayerNorm,
    eos_token_id: i64,
}

impl TextTransformer {
    fn load(cfg: &ClipTextConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let token_embedding = candle_nn::embedding(cfg.vocab_size, c, emb.pp("token_embedding"))?;
        let position_embedding = emb.get(
            (cfg.max_position_embeddings, c),
            "position_embedding.weight",
        )?;
        Ok(Self {
            token_embedding,
            position_embedding,
            encoder: Encoder::load(&cfg.encoder(), vb.pp("encoder"))?,
            final_norm: candle_nn::layer_norm(c, cfg.layer_norm_eps, vb.pp("final_layer_norm"))?,
            eos_token_id: cfg.eos_token_id,
        })
    }

    /// Pooled states `[n, hidden]` for id sequences of any lengths (each at most the context).
    ///
    /// Shorter sequences are padded on the right; the causal mask keeps padding from reaching
    /// the pooled position, so the result equals running each sequence alone.
    pub fn forward(&self, batch: &[Vec<u32>]) -> Result<Tensor> {
        let device = self.position_embedding.device().clone();
        let t = batch.iter().map(Vec::len).max().unwrap_or(0);
        let ctx = self.position_embedding.dim(0)?;
        if t == 0 || t > ctx {
            candle_core::bail!("text of {t} tokens: expected 1 to {ctx} tokens");
        }
        let mut flat = Vec::with_capacity(batch.len() * t);
        for ids in batch {
            flat.extend_from_slice(ids);
            // Any valid id will do: nothing after the pooled position reaches it.
            flat.extend(std::iter::repeat_n(0, t - ids.len()));
        }
        let ids = Tensor::from_vec(flat, (batch.len(), t), &device)?;
        let x = self
            .token_embedding
            .forward(&ids)?
            .broadcast_add(&self.position_embedding.narrow(0, 0, t)?.unsqueeze(0)?)?;
        let mask = causal_mask(t, x.dtype(), &device)?;
        let x = self.encoder.forward(x, Some(&mask))?;
        let x = self.final_norm.forward(&x)?;
        let rows = batch
            .iter()
            .enumerate()
            .map(|(i, ids)| x.get(i)?.get(pooled_position(ids, self.eos_token_id)))
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&rows, 0)
    }
}

/// Additive `[t, t]` mask: zero on and below the diagonal, -inf above.
fn causal_mask(t: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (t, t), device)?.to_dtype(dtype)
}

/// CLIP vision transformer up to the post-normed class token.
pub struct VisionTransformer {
    /// Patch convolution as a `[hidden, channels * patch * patch]` matrix (stride = kernel).
    patch_weight: Tensor,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_norm: LayerNorm,
    encoder: Encoder,
    post_norm: LayerNorm,
    patch: usize,
    image: usize,
}

impl VisionTransformer {
    fn load(cfg: &ClipVisionConfig, vb: VarBuilder) -> Result<Self> {
        let (c, p, ch) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
        let emb = vb.pp("embeddings");
        let positions = cfg.grid_side() * cfg.grid_side() + 1;
        let conv = emb.get((c, ch, p, p), "patch_embedding.weight")?;
        Ok(Self {
            patch_weight: conv.reshape((c, ch * p * p))?,
            class_embedding: emb.get(c, "class_embedding")?,
            position_embedding: emb.get((positions, c), "position_embedding.weight")?,
            // "pre_layrnorm" is transformers' spelling.
            pre_norm: candle_nn::layer_norm(c, cfg.layer_norm_eps, vb.pp("pre_layrnorm"))?,
            encoder: Encoder::load(&cfg.encoder(), vb.pp("encoder"))?,
            post_norm: candle_nn::layer_norm(c, cfg.layer_norm_eps, vb.pp("post_layernorm"))?,
            patch: p,
            image: cfg.image_size,
        })
    }

    /// `[n, channels, S, S]` pixels to pooled states `[n, hidden]`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (n, ch, h, w) = pixels.dims4()?;
        if h != self.image || w != self.image {
            candle_core::bail!(
                "pixels are {h}x{w}; the vision tower expects {0}x{0}",
                self.image
            );
        }
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        // Non-overlapping patches flattened in (channel, y, x) order, the conv kernel's layout.
        let patches = pixels
            .reshape((n, ch, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((n * gh * gw, ch * p * p))?;
        let emb = patches.matmul(&self.patch_weight.t()?)?;
        let c = emb.dim(1)?;
        let emb = emb.reshape((n, gh * gw, c))?;
        let cls = self
            .class_embedding
            .reshape((1, 1, c))?
            .broadcast_as((n, 1, c))?;
        let x =
            Tensor::cat(&[&cls, &emb], 1)?.broadcast_add(&self.position_embedding.unsqueeze(0)?)?;
        let x = self.encoder.forward(self.pre_norm.forward(&x)?, None)?;
        self.post_norm.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)
    }
}

/// Both towers with their projections and the learned temperature.
pub struct ClipModel {
    /// Text tower.
    pub text: TextTransformer,
    /// Vision tower.
    pub vision: VisionTransformer,
    text_projection: Linear,
    visual_projection: Linear,
    /// Log of the logit temperature (`logit_scale`, exp'd at use).
    pub logit_scale: f32,
}

impl ClipModel {
    /// Build from a VarBuilder rooted at the checkpoint's top level.
    pub fn load(cfg: &ClipConfig, vb: VarBuilder) -> Result<Self> {
        let proj = cfg.projection_dim;
        let logit_scale = vb
            .get_unchecked_dtype("logit_scale", DType::F32)?
            .flatten_all()?
            .get(0)?
            .to_scalar::<f32>()?;
        Ok(Self {
            text: TextTransformer::load(&cfg.text_config, vb.pp("text_model"))?,
            vision: VisionTransformer::load(&cfg.vision_config, vb.pp("vision_model"))?,
            text_projection: candle_nn::linear_no_bias(
                cfg.text_config.hidden_size,
                proj,
                vb.pp("text_projection"),
            )?,
            visual_projection: candle_nn::linear_no_bias(
                cfg.vision_config.hidden_size,
                proj,
                vb.pp("visual_projection"),
            )?,
            logit_scale,
        })
    }

    /// Projected, not normalised, text features `[n, projection_dim]`.
    pub fn text_features(&self, batch: &[Vec<u32>]) -> Result<Tensor> {
        self.text_projection.forward(&self.text.forward(batch)?)
    }

    /// Projected, not normalised, image features `[n, projection_dim]`.
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        self.visual_projection
            .forward(&self.vision.forward(pixels)?)
    }
}

/// Rows divided by their L2 norm.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    x.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_follows_transformers() {
        // Legacy configs take the first maximal id, whatever the EOS is.
        assert_eq!(pooled_position(&[49406, 320, 49407, 49407], 2), 2);
        assert_eq!(pooled_position(&[5, 9, 3, 9], 2), 1);
        // Newer configs take the first EOS, or position 0 when it was truncated away.
        assert_eq!(pooled_position(&[10, 3, 7, 7], 7), 2);
        assert_eq!(pooled_position(&[10, 3, 8], 7), 0);
        // A high non-EOS id does not fool the newer rule.
        assert_eq!(pooled_position(&[10, 900, 7], 7), 2);
    }

    #[test]
    fn causal_mask_blocks_the_future_only() {
        let m = causal_mask(3, DType::F32, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m[0][0], 0.0);
        assert!(m[0][1].is_infinite() && m[0][2].is_infinite() && m[1][2].is_infinite());
        assert_eq!((m[1][0], m[2][1], m[2][2]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn normalised_rows_have_unit_length() {
        let x = Tensor::new(&[[3f32, 4.0], [0.0, -2.0]], &Device::Cpu).unwrap();
        let y = l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![0.6, 0.8], vec![0.0, -1.0]]);
    }
}
