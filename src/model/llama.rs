//! The Llama language model of LLaVA-NeXT, with a tap after one decoder layer.
//!
//! One forward serves every use: reading the residual after layer L (caching, training,
//! probing), stopping right there when nothing later is needed, and letting an edit replace
//! that residual (steering, attribution). A `differentiable` switch swaps candle's fused rope,
//! softmax and RMSNorm, which record no backward, for composed versions that do.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::config::TextConfig;
use super::kv_cache::KvCache;
use super::linear::stacked_linear;
use super::tap::{ForwardOptions, ForwardOutput, LogitPositions, TapSite, Until};
use crate::kernels::softmax::{KeyMask, key_alignment, masked_softmax, pad_keys};

/// The dtype for the numerically sensitive steps (norms, attention scores, logits): f32, as
/// transformers does for half-precision models, and f64 for f64 models so that finite-difference
/// checks of gradients resolve far below f32's epsilon.
pub(crate) fn accumulate_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// Which implementation of the layer's ops one forward uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpPath {
    /// Composed candle ops that record a backward (differentiable forwards, `GLINT_FUSED=0`).
    Composed,
    /// candle's fused rope and RMSNorm with glint's masked softmax.
    Fused,
    /// glint's CUDA kernels for the norms, SwiGLU and the rotary split as well.
    #[cfg(feature = "cuda")]
    Cuda,
}

impl OpPath {
    fn choose(differentiable: bool, device: &Device) -> Self {
        if differentiable || crate::kernels::fused_disabled() {
            return Self::Composed;
        }
        #[cfg(feature = "cuda")]
        if device.is_cuda() {
            return Self::Cuda;
        }
        let _ = device;
        Self::Fused
    }
}

/// RMSNorm computed in f32 as transformers does, whatever the model dtype (f64 for f64 models on
/// the differentiable path).
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor, path: OpPath) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if path == OpPath::Cuda {
            return crate::kernels::layer::rms_norm(x, &self.weight, self.eps);
        }
        let differentiable = path == OpPath::Composed;
        let dtype = x.dtype();
        // candle's fused kernel has no f64 version: f64 precision comes with the composed path.
        let work = if differentiable {
            accumulate_dtype(dtype)
        } else {
            DType::F32
        };
        let xf = x.to_dtype(work)?;
        let normed = if differentiable {
            let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
            xf.broadcast_div(&(var + self.eps)?.sqrt()?)?
        } else {
            let ones = Tensor::ones(xf.dim(D::Minus1)?, DType::F32, xf.device())?;
            candle_nn::ops::rms_norm(&xf.contiguous()?, &ones, self.eps as f32)?
        };
        normed.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }

    /// `x + delta` and its norm (one kernel on CUDA).
    fn add_forward(&self, x: &Tensor, delta: &Tensor, path: OpPath) -> Result<(Tensor, Tensor)> {
        #[cfg(feature = "cuda")]
        if path == OpPath::Cuda {
            return crate::kernels::layer::add_rms_norm(x, delta, &self.weight, self.eps);
        }
        let sum = (x + delta)?;
        let normed = self.forward(&sum, path)?;
        Ok((sum, normed))
    }
}

/// Precomputed rotary tables (the `rotate_half` convention of Hugging Face Llama).
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(cfg: &TextConfig, dtype: DType, device: &Device) -> Result<Self> {
        let dim = cfg.head_dim();
        let max = cfg.max_position_embeddings;
        let inv: Vec<f32> = (0..dim / 2)
            // f32 throughout, as transformers computes the inverse frequencies.
            .map(|i| 1.0f32 / (cfg.rope_base() as f32).powf((2 * i) as f32 / dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(max * dim / 2);
        let mut sin = Vec::with_capacity(max * dim / 2);
        for pos in 0..max {
            for f in &inv {
                let angle = (pos as f32 * f) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let shape = (max, dim / 2);
        Ok(Self {
            cos: Tensor::from_vec(cos, shape, device)?.to_dtype(dtype)?,
            sin: Tensor::from_vec(sin, shape, device)?.to_dtype(dtype)?,
        })
    }

    /// Rotate `[b, heads, t, d]` at absolute positions `offset..offset+t`.
    fn apply(&self, x: &Tensor, offset: usize, path: OpPath) -> Result<Tensor> {
        let t = x.dim(2)?;
        let max = self.cos.dim(0)?;
        if offset + t > max {
            candle_core::bail!(
                "sequence of {} positions exceeds max_position_embeddings {max}",
                offset + t
            );
        }
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.sin.narrow(0, offset, t)?;
        if path == OpPath::Composed {
            candle_nn::rotary_emb::rope_slow(x, &cos, &sin)
        } else {
            candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
        }
    }
}

/// Self-attention with the q, k and v projections fused into one matmul.
struct Attention {
    qkv: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let parts = [
            ("q_proj", nh * hd),
            ("k_proj", nkv * hd),
            ("v_proj", nkv * hd),
        ];
        let o = if cfg.attention_bias {
            candle_nn::linear(nh * hd, h, vb.pp("o_proj"))?
        } else {
            candle_nn::linear_no_bias(nh * hd, h, vb.pp("o_proj"))?
        };
        Ok(Self {
            qkv: stacked_linear(h, &parts, cfg.attention_bias, &vb)?,
            o,
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
        })
    }

    /// q `[b, heads, t, d]`, k and v `[b, kv_heads, t, d]`, q and k rotated.
    fn project(
        &self,
        x: &Tensor,
        offset: usize,
        rotary: &Rotary,
        path: OpPath,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        let qkv = self.qkv.forward(x)?;
        #[cfg(feature = "cuda")]
        if path == OpPath::Cuda {
            let shape = crate::kernels::layer::HeadShape {
                heads: self.heads,
                kv_heads: self.kv_heads,
                head_dim: self.head_dim,
            };
            let rope = crate::kernels::layer::Rope {
                cos: &rotary.cos,
                sin: &rotary.sin,
                offset,
            };
            return crate::kernels::layer::split_heads(&qkv, None, Some(rope), shape);
        }
        let hd = self.head_dim;
        let split = |start: usize, n: usize| -> Result<Tensor> {
            qkv.narrow(2, start * hd, n * hd)?
                .reshape((b, t, n, hd))?
                .transpose(1, 2)
        };
        let q = rotary.apply(&split(0, self.heads)?, offset, path)?;
        let k = rotary.apply(&split(self.heads, self.kv_heads)?, offset, path)?;
        let v = split(self.heads + self.kv_heads, self.kv_heads)?.contiguous()?;
        Ok((q, k, v))
    }

    fn forward(
        &self,
        x: &Tensor,
        offset: usize,
        rotary: &Rotary,
        cache: Option<(&mut KvCache, usize)>,
        mask: &AttentionMask,
        path: OpPath,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (q, mut k, mut v) = self.project(x, offset, rotary, path)?;
        if let Some((cache, layer)) = cache {
            // The additive mask covers exactly the cached keys; the fused softmax masks
            // padding itself, so its keys come padded for aligned matmuls.
            let align = if mask.additive.is_some() {
                1
            } else {
                key_alignment(x.device())
            };
            (k, v) = cache.append(layer, &k, &v, align)?;
        }
        let groups = self.heads / self.kv_heads;
        let dtype = q.dtype();
        let scale = (self.head_dim as f64).powf(-0.5);
        let ctx = match &mask.additive {
            Some(additive) => {
                let (k, v) = (repeat_kv(&k, groups)?, repeat_kv(&v, groups)?);
                let work = accumulate_dtype(dtype);
                let scores = (q.matmul(&k.t()?)? * scale)?
                    .to_dtype(work)?
                    .broadcast_add(&additive.to_dtype(work)?)?;
                let probs = if path == OpPath::Composed {
                    candle_nn::ops::softmax(&scores, D::Minus1)?
                } else {
                    candle_nn::ops::softmax_last_dim(&scores)?
                };
                probs.to_dtype(dtype)?.matmul(&v)?
            }
            None => {
                // Grouped-query attention without copying keys: each kv head's query heads
                // stacked as rows (row r is query r % t, which the masked softmax expects).
                let (k, v) = pad_keys(&k, &v, key_alignment(q.device()))?;
                let q = q
                    .contiguous()?
                    .reshape((b, self.kv_heads, groups * t, self.head_dim))?;
                let probs = masked_softmax(&q.matmul(&k.t()?)?, scale as f32, mask.keys)?;
                probs
                    .matmul(&v)?
                    .reshape((b, self.heads, t, self.head_dim))?
            }
        };
        let ctx = ctx
            .transpose(1, 2)?
            .reshape((b, t, self.heads * self.head_dim))?;
        self.o.forward(&ctx)
    }
}

/// Repeat each key/value head `n` times along the head axis (grouped-query attention).
fn repeat_kv(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (b, h, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, h, n, t, d))?
        .reshape((b, h * n, t, d))
}

/// The causal mask of one forward: applied inside the fused softmax (which also has a backward),
/// or as an additive tensor before candle's softmax with `GLINT_FUSED=0`.
struct AttentionMask {
    keys: KeyMask,
    additive: Option<Tensor>,
}

impl AttentionMask {
    fn new(t: usize, past: usize, composed: bool, device: &Device) -> Result<Self> {
        let additive = if composed && t > 1 {
            Some(causal_mask(t, past + t, device)?)
        } else if composed {
            Some(Tensor::zeros((1, past + t), DType::F32, device)?)
        } else {
            None
        };
        Ok(Self {
            keys: KeyMask::Causal { t_q: t, past },
            additive,
        })
    }
}

/// Additive causal mask for `t` new queries against `kv_len` keys (the last `t` are the queries).
fn causal_mask(t: usize, kv_len: usize, device: &Device) -> Result<Tensor> {
    let past = (kv_len - t) as u32;
    let rows = Tensor::arange(past, past + t as u32, device)?.reshape((t, 1))?;
    let cols = Tensor::arange(0u32, kv_len as u32, device)?.reshape((1, kv_len))?;
    let future = cols.broadcast_gt(&rows)?;
    let zeros = Tensor::zeros((t, kv_len), DType::F32, device)?;
    let neg = Tensor::full(f32::NEG_INFINITY, (t, kv_len), device)?;
    future.where_cond(&neg, &zeros)
}

/// SwiGLU MLP with the gate and up projections fused into one matmul.
struct Mlp {
    gate_up: Linear,
    down: Linear,
    inter: usize,
}

impl Mlp {
    fn load(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let down = if cfg.mlp_bias {
            candle_nn::linear(i, h, vb.pp("down_proj"))?
        } else {
            candle_nn::linear_no_bias(i, h, vb.pp("down_proj"))?
        };
        Ok(Self {
            gate_up: stacked_linear(h, &[("gate_proj", i), ("up_proj", i)], cfg.mlp_bias, &vb)?,
            down,
            inter: i,
        })
    }

    fn forward(&self, x: &Tensor, path: OpPath) -> Result<Tensor> {
        let gu = self.gate_up.forward(x)?;
        #[cfg(feature = "cuda")]
        if path == OpPath::Cuda {
            return self.down.forward(&crate::kernels::layer::silu_mul(&gu)?);
        }
        let _ = path;
        let g = gu.narrow(D::Minus1, 0, self.inter)?.silu()?;
        let u = gu.narrow(D::Minus1, self.inter, self.inter)?;
        self.down.forward(&(g * u)?)
    }
}

struct DecoderLayer {
    input_norm: RmsNorm,
    attn: Attention,
    post_norm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn load(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            input_norm: RmsNorm::load(h, eps, vb.pp("input_layernorm"))?,
            attn: Attention::load(cfg, vb.pp("self_attn"))?,
            post_norm: RmsNorm::load(h, eps, vb.pp("post_attention_layernorm"))?,
            mlp: Mlp::load(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(
        &self,
        x: &Residual,
        offset: usize,
        rotary: &Rotary,
        cache: Option<(&mut KvCache, usize)>,
        mask: &AttentionMask,
        path: OpPath,
    ) -> Result<Residual> {
        let (x, h) = match &x.pending {
            Some(delta) => self.input_norm.add_forward(&x.base, delta, path)?,
            None => (x.base.clone(), self.input_norm.forward(&x.base, path)?),
        };
        let a = self.attn.forward(&h, offset, rotary, cache, mask, path)?;
        let (x, h) = self.post_norm.add_forward(&x, &a, path)?;
        Ok(Residual {
            base: x,
            pending: Some(self.mlp.forward(&h, path)?),
        })
    }
}

/// The residual stream between decoder layers: `base + pending`, the MLP's output left unadded
/// so the next layer's norm can fuse the add (one pass over the stream instead of two).
struct Residual {
    base: Tensor,
    pending: Option<Tensor>,
}

impl Residual {
    fn new(x: Tensor) -> Self {
        Self {
            base: x,
            pending: None,
        }
    }

    /// The stream as one tensor.
    fn materialize(self) -> Result<Tensor> {
        match self.pending {
            Some(delta) => self.base + delta,
            None => Ok(self.base),
        }
    }
}

/// Llama decoder stack with embedding, final norm and head.
pub struct Llama {
    embed: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Tensor,
    rotary: Rotary,
    cfg: TextConfig,
}

impl Llama {
    /// Load from a `language_model` prefix (`model.*` + `lm_head`); `tie` reuses the embedding.
    pub fn load(cfg: &TextConfig, tie: bool, vb: VarBuilder) -> Result<Self> {
        let m = vb.pp("model");
        let embed = m.get((cfg.vocab_size, cfg.hidden_size), "embed_tokens.weight")?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(cfg, m.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if tie {
            embed.clone()
        } else {
            vb.get((cfg.vocab_size, cfg.hidden_size), "lm_head.weight")?
        };
        Ok(Self {
            rotary: Rotary::new(cfg, embed.dtype(), embed.device())?,
            norm: RmsNorm::load(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?,
            embed,
            layers,
            lm_head,
            cfg: cfg.clone(),
        })
    }

    /// The configuration this model was built from.
    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// Embeddings `[n, hidden]` of token ids.
    pub fn embed_ids(&self, ids: &[u32]) -> Result<Tensor> {
        let ids = Tensor::new(ids, self.embed.device())?;
        self.embed.index_select(&ids, 0)
    }

    /// The unembedding matrix `[vocab, hidden]`.
    pub fn lm_head(&self) -> &Tensor {
        &self.lm_head
    }

    /// Run `[b, t, hidden]` embeddings at positions `offset..` through the stack.
    pub fn forward(
        &self,
        embeds: &Tensor,
        offset: usize,
        mut cache: Option<&mut KvCache>,
        opts: ForwardOptions<'_>,
    ) -> Result<ForwardOutput> {
        let ForwardOptions {
            tap,
            until,
            differentiable,
        } = opts;
        let n = self.layers.len();
        if let Some(tap) = &tap
            && tap.layer >= n
        {
            candle_core::bail!(
                "tap layer {} is out of range: the model has {n} layers (0..{})",
                tap.layer,
                n - 1
            );
        }
        if matches!(until, Until::Tap) && tap.is_none() {
            candle_core::bail!("a forward that stops at the tap needs a tap");
        }
        if let Some(c) = cache.as_deref_mut() {
            c.ensure_layers(n);
        }
        let t = embeds.dim(1)?;
        let past = cache.as_deref().map(|c| c.len()).unwrap_or(0);
        // Gradients are only wanted above the tap (the edit there is what gets differentiated),
        // so layers up to it keep the fast path even in a differentiable forward.
        let fast = OpPath::choose(false, embeds.device());
        let split_at = tap.as_ref().map_or(0, |tp| tp.layer + 1);
        let path_of = |i: usize| {
            if differentiable && i >= split_at {
                OpPath::Composed
            } else {
                fast
            }
        };
        let additive = crate::kernels::fused_disabled();
        let mask = AttentionMask::new(t, past, additive, embeds.device())?;
        let mut tap = tap;
        let mut tapped = None;
        let mut stream = Residual::new(embeds.clone());
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| (c, i));
            stream = layer.forward(&stream, offset, &self.rotary, slot, &mask, path_of(i))?;
            if let Some(tp) = tap.as_mut()
                && tp.layer == i
            {
                let mut x = stream.materialize()?;
                if let Some(edit) = tp.edit.as_deref_mut()
                    && let Some(new) = edit.edit(
                        &x,
                        &TapSite {
                            start: offset,
                            len: t,
                        },
                    )?
                {
                    tapped = Some(std::mem::replace(&mut x, new));
                } else {
                    tapped = Some(x.clone());
                }
                if matches!(until, Until::Tap) {
                    return Ok(ForwardOutput {
                        tapped,
                        logits: None,
                    });
                }
                stream = Residual::new(x);
            }
        }
        let x = stream.materialize()?;
        let Until::Logits(which) = until else {
            candle_core::bail!("the forward was asked to stop at a tap it never reached")
        };
        let x = match which {
            LogitPositions::Last => x.narrow(1, t - 1, 1)?,
            LogitPositions::All => x,
        };
        let x = self.norm.forward(&x, path_of(n))?;
        let logits = x
            .broadcast_matmul(&self.lm_head.t()?)?
            .to_dtype(accumulate_dtype(x.dtype()))?;
        Ok(ForwardOutput {
            tapped,
            logits: Some(logits),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_allows_past_and_self_only() {
        let m = causal_mask(2, 3, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m[0], vec![0.0, 0.0, f32::NEG_INFINITY]);
        assert_eq!(m[1], vec![0.0, 0.0, 0.0]);
    }
}
