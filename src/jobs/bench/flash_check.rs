//! On-device check of the flash-attention kernel against attention composed in f32 from the same
//! inputs on the same card, at the benchmark model's shapes: the prefill (causal, grouped-query
//! heads), one decoding step over a KV-cache view (a past, keys split across blocks) and the
//! vision tower (every key visible).

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::kernels::softmax::KeyMask;

/// Relative error (max |kernel - reference| / max |reference|) of each attention case.
#[derive(Debug, Clone, Serialize)]
pub struct FlashCheck {
    /// Causal prefill over the whole sequence.
    pub prefill: f64,
    /// One new query per head against the cached positions.
    pub decode: f64,
    /// The vision tower's crops, all keys visible.
    pub vision: f64,
}

/// The attention shapes of the benchmark's model.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShapes {
    /// Sequence length of the prefill.
    pub tokens: usize,
    /// Query heads of the language model.
    pub heads: usize,
    /// Its key/value heads.
    pub kv_heads: usize,
    /// Its head size.
    pub head_dim: usize,
    /// Crops the vision tower encodes at once.
    pub crops: usize,
    /// Tokens of one crop (patches and the class token).
    pub vision_tokens: usize,
    /// Heads of the vision tower.
    pub vision_heads: usize,
    /// Its head size.
    pub vision_head_dim: usize,
}

/// Attention composed in f32: q `[b, heads, t, d]`, k and v `[b, kv_heads, n, d]`, the result
/// as `[b, t, heads, d]` (the kernel's layout).
pub fn reference_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: KeyMask,
    scale: f32,
) -> Result<Tensor> {
    let (b, heads, t, d) = q.dims4()?;
    let (_, kv_heads, n, _) = k.dims4()?;
    let groups = heads / kv_heads;
    let repeat = |x: &Tensor| -> Result<Tensor> {
        Ok(x.to_dtype(DType::F32)?
            .unsqueeze(2)?
            .broadcast_as((b, kv_heads, groups, n, d))?
            .reshape((b, heads, n, d))?)
    };
    let (k, v) = (repeat(k)?, repeat(v)?);
    let q = q.to_dtype(DType::F32)?;
    let scores = (q.matmul(&k.t()?.contiguous()?)? * f64::from(scale))?;
    let additive: Vec<f32> = (0..t * n)
        .map(|x| {
            if x % n < mask.visible(x / n, n) {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let additive = Tensor::from_vec(additive, (t, n), q.device())?;
    let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&additive)?)?;
    Ok(probs.matmul(&v)?.transpose(1, 2)?.contiguous()?)
}

/// Run the kernel on random inputs of `shapes` and compare; `None` off CUDA or for a dtype or
/// head size the kernel does not cover.
pub fn check(
    device: &Device,
    dtype: DType,
    shapes: &AttentionShapes,
) -> Result<Option<FlashCheck>> {
    #[cfg(feature = "cuda")]
    if device.is_cuda()
        && crate::kernels::attention::supported(dtype, shapes.head_dim)
        && crate::kernels::attention::supported(dtype, shapes.vision_head_dim)
    {
        return cuda_check(device, dtype, shapes).map(Some);
    }
    let _ = (device, dtype, shapes);
    Ok(None)
}

#[cfg(feature = "cuda")]
fn cuda_check(device: &Device, dtype: DType, s: &AttentionShapes) -> Result<FlashCheck> {
    use super::kernels::rel_error;
    use crate::kernels::attention::flash_attention;

    // Scores of a few units: peaked enough that the online max matters.
    let rand = |dims: (usize, usize, usize, usize), std: f32| -> Result<Tensor> {
        Ok(Tensor::randn(0f32, std, dims, device)?.to_dtype(dtype)?)
    };
    let compare = |q: &Tensor, k: &Tensor, v: &Tensor, mask: KeyMask, scale: f32| -> Result<f64> {
        let got = flash_attention(q, k, v, mask, scale)?;
        rel_error(&got, &reference_attention(q, k, v, mask, scale)?)
    };
    let (t, d) = (s.tokens, s.head_dim);
    let scale = (d as f32).powf(-0.5);
    let q = rand((1, s.heads, t, d), 2.0)?;
    let k = rand((1, s.kv_heads, t, d), 1.0)?;
    let v = rand((1, s.kv_heads, t, d), 1.0)?;
    let prefill = compare(&q, &k, &v, KeyMask::Causal { t_q: t, past: 0 }, scale)?;

    // A cache buffer with room to spare, viewed up to the filled positions.
    let spare = 64;
    let k_buf = rand((1, s.kv_heads, t + spare, d), 1.0)?;
    let v_buf = rand((1, s.kv_heads, t + spare, d), 1.0)?;
    let (k_view, v_view) = (k_buf.narrow(2, 0, t)?, v_buf.narrow(2, 0, t)?);
    let q1 = rand((1, s.heads, 1, d), 2.0)?;
    let step = KeyMask::Causal {
        t_q: 1,
        past: t - 1,
    };
    let decode = compare(&q1, &k_view, &v_view, step, scale)?;

    let (n, vd) = (s.vision_tokens, s.vision_head_dim);
    let dims = (s.crops, s.vision_heads, n, vd);
    let (qv, kv, vv) = (rand(dims, 2.0)?, rand(dims, 1.0)?, rand(dims, 1.0)?);
    let vision = compare(&qv, &kv, &vv, KeyMask::All, (vd as f32).powf(-0.5))?;
    Ok(FlashCheck {
        prefill,
        decode,
        vision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::softmax::masked_softmax;

    #[test]
    fn reference_matches_the_masked_softmax_path_with_grouped_heads() {
        let dev = Device::Cpu;
        let (heads, kv_heads, t, past, d) = (4usize, 2usize, 3usize, 2usize, 8usize);
        let n = past + t;
        let q = Tensor::randn(0f32, 1.0, (1, heads, t, d), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, kv_heads, n, d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, kv_heads, n, d), &dev).unwrap();
        let mask = KeyMask::Causal { t_q: t, past };
        let got = reference_attention(&q, &k, &v, mask, 0.3).unwrap();
        assert_eq!(got.dims(), [1, t, heads, d]);
        // The model's own path: each kv head's query heads stacked as rows.
        let stacked = q.reshape((1, kv_heads, 2 * t, d)).unwrap();
        let probs = masked_softmax(&stacked.matmul(&k.t().unwrap()).unwrap(), 0.3, mask).unwrap();
        let want = probs
            .matmul(&v)
            .unwrap()
            .reshape((1, heads, t, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        assert!(super::super::kernels::rel_error(&got, &want).unwrap() < 1e-6);
        // Only the first key is visible to the first query with no past.
        let first = reference_attention(&q, &k, &v, KeyMask::Causal { t_q: t, past: 0 }, 0.3)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap();
        let v0 = v.get(0).unwrap().get(0).unwrap().get(0).unwrap();
        assert!(super::super::kernels::rel_error(&first, &v0).unwrap() < 1e-6);
    }
}
