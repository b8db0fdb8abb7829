//! The CLIP vision tower and the multimodal projector of LLaVA-NeXT.
//!
//! Only the layers up to the one the projector reads are run: with `vision_feature_layer = -2`
//! the last encoder layer never influences the language model, so it is skipped.

use candle_core::{Module, Result, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};

use super::config::{LlavaNextConfig, VisionConfig};
use super::linear::stacked_linear;
use crate::kernels::softmax::{KeyMask, key_alignment, masked_softmax, pad_keys};

/// Patch, class and position embeddings of the CLIP vision transformer.
struct VisionEmbeddings {
    /// Patch projection as a matrix `[hidden, channels * patch * patch]` (a stride-patch convolution).
    patch_weight: Tensor,
    class_embedding: Tensor,
    position_embedding: Tensor,
    patch: usize,
    channels: usize,
}

impl VisionEmbeddings {
    fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let (c, p, ch) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
        let positions = cfg.grid_side() * cfg.grid_side() + 1;
        let conv = vb.get((c, ch, p, p), "patch_embedding.weight")?;
        Ok(Self {
            patch_weight: conv.reshape((c, ch * p * p))?,
            class_embedding: vb.get(c, "class_embedding")?,
            position_embedding: vb.get((positions, c), "position_embedding.weight")?,
            patch: p,
            channels: ch,
        })
    }

    /// `[views, 3, S, S]` pixels to `[views, 1 + g*g, hidden]` embeddings.
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (views, ch, h, w) = pixels.dims4()?;
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        // Unfold into non-overlapping patches; equal to a convolution with stride = kernel.
        let patches = pixels
            .reshape((views, ch, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((views * gh * gw, self.channels * p * p))?;
        let emb = patches.matmul(&self.patch_weight.t()?)?;
        let hidden = emb.dim(1)?;
        let emb = emb.reshape((views, gh * gw, hidden))?;
        let cls = self
            .class_embedding
            .reshape((1, 1, hidden))?
            .broadcast_as((views, 1, hidden))?;
        let seq = Tensor::cat(&[&cls, &emb], 1)?;
        seq.broadcast_add(&self.position_embedding.unsqueeze(0)?)
    }
}

/// `ln(x)`, through composed ops that record a backward when `differentiable` (candle's fused
/// layer norm records none, so training would stop there).
fn layer_norm(ln: &LayerNorm, x: &Tensor, differentiable: bool) -> Result<Tensor> {
    if !differentiable {
        return ln.forward(x);
    }
    let mean = x.mean_keepdim(candle_core::D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
    let normed = centred.broadcast_div(&(var + ln.eps())?.sqrt()?)?;
    let scaled = normed.broadcast_mul(ln.weight())?;
    match ln.bias() {
        Some(b) => scaled.broadcast_add(b),
        None => Ok(scaled),
    }
}

/// One pre-norm CLIP encoder layer.
struct EncoderLayer {
    ln1: LayerNorm,
    ln2: LayerNorm,
    /// q, k and v projections stacked into one matmul.
    qkv: Linear,
    out: Linear,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    quick_gelu: bool,
}

impl EncoderLayer {
    fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let att = vb.pp("self_attn");
        let mlp = vb.pp("mlp");
        Ok(Self {
            ln1: candle_nn::layer_norm(c, eps, vb.pp("layer_norm1"))?,
            ln2: candle_nn::layer_norm(c, eps, vb.pp("layer_norm2"))?,
            qkv: stacked_linear(
                c,
                &[("q_proj", c), ("k_proj", c), ("v_proj", c)],
                true,
                &att,
            )?,
            out: candle_nn::linear(c, c, att.pp("out_proj"))?,
            fc1: candle_nn::linear(c, cfg.intermediate_size, mlp.pp("fc1"))?,
            fc2: candle_nn::linear(cfg.intermediate_size, c, mlp.pp("fc2"))?,
            heads: cfg.num_attention_heads,
            quick_gelu: cfg.hidden_act == "quick_gelu",
        })
    }

    fn attention(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let hd = c / self.heads;
        let qkv = self.qkv.forward(x)?;
        let split = |i: usize| -> Result<Tensor> {
            qkv.narrow(2, i * c, c)?
                .reshape((b, t, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = (split(0)? * (hd as f64).powf(-0.5))?;
        let (k, v) = (split(1)?, split(2)?);
        let dtype = q.dtype();
        let ctx = if crate::kernels::fused_disabled() {
            let scores = q
                .matmul(&k.t()?)?
                .to_dtype(super::llama::accumulate_dtype(dtype))?;
            candle_nn::ops::softmax_last_dim(&scores)?
                .to_dtype(dtype)?
                .matmul(&v)?
        } else {
            let (k, v) = pad_keys(&k, &v, key_alignment(q.device()))?;
            masked_softmax(&q.matmul(&k.t()?)?, 1.0, KeyMask::First(t))?.matmul(&v)?
        };
        let ctx = ctx.transpose(1, 2)?.reshape((b, t, c))?;
        self.out.forward(&ctx)
    }

    fn forward(&self, x: &Tensor, differentiable: bool) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() && !crate::kernels::fused_disabled() && !differentiable {
            return self.forward_cuda(x);
        }
        let x = (x + self.attention(&layer_norm(&self.ln1, x, differentiable)?)?)?;
        let h = self
            .fc1
            .forward(&layer_norm(&self.ln2, &x, differentiable)?)?;
        let h = if self.quick_gelu {
            (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?
        } else {
            h.gelu_erf()?
        };
        x + self.fc2.forward(&h)?
    }

    /// The same layer with glint's kernels: the q/k/v bias folded into the head split, the
    /// attention scale into the softmax, and every other bias, activation and residual add into
    /// one epilogue kernel after its matmul.
    #[cfg(feature = "cuda")]
    fn forward_cuda(&self, x: &Tensor) -> Result<Tensor> {
        use super::linear::{linear_epilogue, matmul_no_bias};
        use crate::kernels::layer::{Activation, HeadShape, split_heads};

        let (b, t, c) = x.dims3()?;
        let hd = c / self.heads;
        let qkv = matmul_no_bias(&self.qkv, &self.ln1.forward(x)?)?;
        let shape = HeadShape {
            heads: self.heads,
            kv_heads: self.heads,
            head_dim: hd,
        };
        let (q, k, v) = split_heads(&qkv, self.qkv.bias(), None, shape)?;
        let scale = (hd as f32).powf(-0.5);
        let ctx = if crate::kernels::attention::supported(q.dtype(), hd) {
            crate::kernels::attention::flash_attention(&q, &k, &v, KeyMask::All, scale)?
        } else {
            let (k, v) = pad_keys(&k, &v, key_alignment(q.device()))?;
            masked_softmax(&q.matmul(&k.t()?)?, scale, KeyMask::First(t))?
                .matmul(&v)?
                .transpose(1, 2)?
        };
        let ctx = ctx.reshape((b, t, c))?;
        let x = linear_epilogue(&self.out, &ctx, Activation::None, Some(x))?;
        let act = if self.quick_gelu {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        };
        let h = linear_epilogue(&self.fc1, &self.ln2.forward(&x)?, act, None)?;
        linear_epilogue(&self.fc2, &h, Activation::None, Some(&x))
    }
}

/// CLIP vision transformer, truncated at the hidden state LLaVA reads.
pub struct VisionTower {
    embeddings: VisionEmbeddings,
    pre_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    keep_cls: bool,
}

impl VisionTower {
    /// Load from a `vision_tower.vision_model` prefix; only the layers the features need are read.
    pub fn load(cfg: &LlavaNextConfig, vb: VarBuilder) -> Result<Self> {
        let v = &cfg.vision_config;
        let needed = cfg.vision_hidden_state_index();
        let layers = (0..needed)
            .map(|i| EncoderLayer::load(v, vb.pp(format!("encoder.layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: VisionEmbeddings::load(v, vb.pp("embeddings"))?,
            pre_norm: candle_nn::layer_norm(
                v.hidden_size,
                v.layer_norm_eps,
                vb.pp("pre_layrnorm"),
            )?,
            layers,
            keep_cls: cfg.vision_feature_select_strategy == "full",
        })
    }

    /// `[views, 3, S, S]` pixels to the selected hidden state `[views, g*g (+1), hidden]`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        self.forward_with(pixels, false)
    }

    /// [`VisionTower::forward`], recording a backward through every op when `differentiable`
    /// (training).
    pub fn forward_with(&self, pixels: &Tensor, differentiable: bool) -> Result<Tensor> {
        let embedded = self.embeddings.forward(pixels)?;
        let mut x = layer_norm(&self.pre_norm, &embedded, differentiable)?;
        for layer in &self.layers {
            x = layer.forward(&x, differentiable)?;
        }
        if self.keep_cls {
            Ok(x)
        } else {
            let n = x.dim(1)?;
            x.narrow(1, 1, n - 1)
        }
    }
}

/// Two-layer MLP from vision width to language width.
pub struct Projector {
    linear_1: Linear,
    linear_2: Linear,
    act: String,
}

impl Projector {
    /// Load from a `multi_modal_projector` prefix.
    pub fn load(cfg: &LlavaNextConfig, vb: VarBuilder) -> Result<Self> {
        let (vis, txt) = (cfg.vision_config.hidden_size, cfg.text_config.hidden_size);
        let lin = |i, o, vb| {
            if cfg.multimodal_projector_bias {
                candle_nn::linear(i, o, vb)
            } else {
                candle_nn::linear_no_bias(i, o, vb)
            }
        };
        Ok(Self {
            linear_1: lin(vis, txt, vb.pp("linear_1"))?,
            linear_2: lin(txt, txt, vb.pp("linear_2"))?,
            act: cfg.projector_hidden_act.clone(),
        })
    }

    /// Project `[.., vision hidden]` to `[.., text hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.linear_1.forward(x)?;
        let h = match self.act.as_str() {
            "gelu_pytorch_tanh" | "gelu_new" => h.gelu()?,
            "relu" => h.relu()?,
            "silu" => h.silu()?,
            _ => h.gelu_erf()?,
        };
        self.linear_2.forward(&h)
    }
}
