//! Self-attention: the stacked q/k/v projection, the KV cache, grouped-query attention as one
//! flash-attention kernel (CUDA, half precision), through the masked softmax, or with candle's
//! composed ops (`GLINT_FUSED=0`).

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::super::config::TextConfig;
use super::super::kv_cache::KvCache;
use super::super::linear::stacked_linear;
use super::ops::{OpPath, Rotary, accumulate_dtype};
use crate::kernels::softmax::{KeyMask, key_alignment, masked_softmax, pad_keys};

/// Self-attention with the q, k and v projections fused into one matmul.
pub(super) struct Attention {
    qkv: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub(super) fn load(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
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

    pub(super) fn forward(
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
        let flash = self.flash(path, q.dtype());
        if let Some((cache, layer)) = cache {
            // The additive mask covers exactly the cached keys, and flash attention reads any
            // count; the fused softmax masks padding itself, so its keys come padded for
            // aligned matmuls.
            let align = if mask.additive.is_some() || flash {
                1
            } else {
                key_alignment(x.device())
            };
            (k, v) = cache.append(layer, &k, &v, align)?;
        }
        #[cfg(feature = "cuda")]
        if flash {
            let scale = (self.head_dim as f32).powf(-0.5);
            let ctx = crate::kernels::attention::flash_attention(&q, &k, &v, mask.keys, scale)?;
            return self
                .o
                .forward(&ctx.reshape((b, t, self.heads * self.head_dim))?);
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

    /// Whether this forward runs attention as one kernel (CUDA, half precision, no backward).
    fn flash(&self, path: OpPath, dtype: DType) -> bool {
        #[cfg(feature = "cuda")]
        if path == OpPath::Cuda {
            return crate::kernels::attention::supported(dtype, self.head_dim);
        }
        let _ = (path, dtype);
        false
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
pub(super) struct AttentionMask {
    keys: KeyMask,
    additive: Option<Tensor>,
}

impl AttentionMask {
    pub(super) fn new(t: usize, past: usize, composed: bool, device: &Device) -> Result<Self> {
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
