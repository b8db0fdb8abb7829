//! The Llama language model of LLaVA-NeXT, with a tap after one decoder layer.
//!
//! One forward serves every use: reading the residual after layer L (caching, training,
//! probing), stopping right there when nothing later is needed, and letting an edit replace
//! that residual (steering, attribution). A `differentiable` forward swaps the fused rope and
//! RMSNorm, which record no backward, for composed versions in the layers after the tap (the
//! masked softmax has its own backward).

mod attention;
mod ops;

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::config::TextConfig;
use super::kv_cache::KvCache;
use super::linear::stacked_linear;
use super::tap::{ForwardOptions, ForwardOutput, LogitPositions, TapSite, Until};
use attention::{Attention, AttentionMask};
pub(crate) use ops::accumulate_dtype;
use ops::{OpPath, RmsNorm, Rotary};
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
    /// The final norm and the unembedding of hidden states `[.., hidden]` (the forward's tail).
    fn head(&self, x: &Tensor, path: OpPath) -> Result<Tensor> {
        let x = self.norm.forward(x, path)?;
        x.broadcast_matmul(&self.lm_head.t()?)?
            .to_dtype(accumulate_dtype(x.dtype()))
    }

    /// Logits of `rows` `[n, hidden]` read as final hidden states: the final norm, then the
    /// unembedding (what a direction in the residual stream writes into the vocabulary).
    pub fn head_logits(&self, rows: &Tensor) -> Result<Tensor> {
        let rows = rows.to_dtype(self.embed.dtype())?.unsqueeze(0)?;
        self.head(&rows, OpPath::Composed)?.squeeze(0)
    }

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
        let logits = self.head(&x, path_of(n))?;
        Ok(ForwardOutput {
            tapped,
            logits: Some(logits),
        })
    }
}
