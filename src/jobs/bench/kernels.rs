//! On-device check of glint's decoder-layer kernels against candle's composed ops, computed in
//! f32 from the same inputs on the same card, at the shapes of the benchmark's model.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use serde::Serialize;

/// Relative error (max |fused - reference| / max |reference|) of each kernel.
#[derive(Debug, Clone, Serialize)]
pub struct KernelCheck {
    /// Dtype the kernels ran in.
    pub dtype: String,
    /// RMSNorm with its weight.
    pub rms_norm: f64,
    /// Residual add fused with the next RMSNorm (the larger of the sum's and the norm's error).
    pub add_rms_norm: f64,
    /// SwiGLU over the fused gate/up projection.
    pub silu_mul: f64,
    /// q/k/v split with rotary embedding (the largest of the three outputs' errors).
    pub qkv_rope: f64,
}

/// Shapes of one decoder layer.
#[derive(Debug, Clone, Copy)]
pub struct LayerShape {
    /// Rows (tokens).
    pub rows: usize,
    /// Hidden size.
    pub hidden: usize,
    /// MLP width.
    pub inter: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head size.
    pub head_dim: usize,
}

/// Max |a - b| / max |b|, both read as f32.
pub fn rel_error(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (a, b) = (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?);
    let diff = (a - &b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f32>()?;
    Ok(f64::from(diff) / f64::from(scale).max(1e-12))
}

/// Composed f32 RMSNorm with weight: the reference for the fused kernel.
pub fn reference_rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let var = x.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
    Ok(x.broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(&w.to_dtype(DType::F32)?)?)
}

/// Composed f32 SwiGLU over `[.., 2 * inter]`.
pub fn reference_silu_mul(gate_up: &Tensor) -> Result<Tensor> {
    let gu = gate_up.to_dtype(DType::F32)?;
    let inter = gu.dim(candle_core::D::Minus1)? / 2;
    let g = gu.narrow(candle_core::D::Minus1, 0, inter)?.silu()?;
    Ok((g * gu.narrow(candle_core::D::Minus1, inter, inter)?)?)
}

/// Composed f32 split of `[b, t, (h + 2 kv) d]` into rotated q, k and plain v (`[b, heads, t, d]`).
pub fn reference_qkv_rope(
    qkv: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    offset: usize,
    shape: &LayerShape,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, t, _) = qkv.dims3()?;
    let qkv = qkv.to_dtype(DType::F32)?;
    let d = shape.head_dim;
    let (cos, sin) = (
        cos.narrow(0, offset, t)?.to_dtype(DType::F32)?,
        sin.narrow(0, offset, t)?.to_dtype(DType::F32)?,
    );
    let split = |start: usize, n: usize| -> Result<Tensor> {
        Ok(qkv
            .narrow(2, start * d, n * d)?
            .reshape((b, t, n, d))?
            .transpose(1, 2)?
            .contiguous()?)
    };
    let q = candle_nn::rotary_emb::rope_slow(&split(0, shape.heads)?, &cos, &sin)?;
    let k = candle_nn::rotary_emb::rope_slow(&split(shape.heads, shape.kv_heads)?, &cos, &sin)?;
    let v = split(shape.heads + shape.kv_heads, shape.kv_heads)?;
    Ok((q, k, v))
}

/// Run every kernel once on random inputs of `shape` and compare; `None` off CUDA.
pub fn check(device: &Device, dtype: DType, shape: &LayerShape) -> Result<Option<KernelCheck>> {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        return cuda_check(device, dtype, shape).map(Some);
    }
    let _ = (device, dtype, shape);
    Ok(None)
}

#[cfg(feature = "cuda")]
fn cuda_check(device: &Device, dtype: DType, shape: &LayerShape) -> Result<KernelCheck> {
    use crate::kernels::layer;

    let rand = |dims: &[usize], std: f32| -> Result<Tensor> {
        Ok(Tensor::randn(0f32, std, dims, device)?.to_dtype(dtype)?)
    };
    let (rows, h) = (shape.rows, shape.hidden);
    let eps = 1e-5;
    let x = rand(&[1, rows, h], 1.0)?;
    let delta = rand(&[1, rows, h], 0.5)?;
    let w = (rand(&[h], 0.1)? + 1.0)?;
    let rms_norm = rel_error(
        &layer::rms_norm(&x, &w, eps)?,
        &reference_rms_norm(&x, &w, eps)?,
    )?;

    let (sum, normed) = layer::add_rms_norm(&x, &delta, &w, eps)?;
    let ref_sum = (x.to_dtype(DType::F32)? + delta.to_dtype(DType::F32)?)?;
    let add_rms_norm =
        rel_error(&sum, &ref_sum)?.max(rel_error(&normed, &reference_rms_norm(&sum, &w, eps)?)?);

    let gu = rand(&[1, rows, 2 * shape.inter], 2.0)?;
    let silu_mul = rel_error(&layer::silu_mul(&gu)?, &reference_silu_mul(&gu)?)?;

    let d = shape.head_dim;
    let width = (shape.heads + 2 * shape.kv_heads) * d;
    let qkv = rand(&[1, rows, width], 1.0)?;
    let max_pos = rows + 7;
    let angles = (Tensor::arange(0u32, (max_pos * d / 2) as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((max_pos, d / 2))?
        * 0.01)?;
    let (cos, sin) = (
        angles.cos()?.to_dtype(dtype)?,
        angles.sin()?.to_dtype(dtype)?,
    );
    let heads = layer::HeadShape {
        heads: shape.heads,
        kv_heads: shape.kv_heads,
        head_dim: d,
    };
    let offset = 7;
    let rope = layer::Rope {
        cos: &cos,
        sin: &sin,
        offset,
    };
    let got = layer::split_heads(&qkv, None, Some(rope), heads)?;
    let want = reference_qkv_rope(&qkv, &cos, &sin, offset, shape)?;
    let qkv_rope = rel_error(&got.0, &want.0)?
        .max(rel_error(&got.1, &want.1)?)
        .max(rel_error(&got.2, &want.2)?);
    Ok(KernelCheck {
        dtype: format!("{dtype:?}"),
        rms_norm,
        add_rms_norm,
        silu_mul,
        qkv_rope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_agree_with_candles_fused_ops_on_the_host() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (3, 16), &dev).unwrap();
        let w = (Tensor::randn(0f32, 0.1, 16, &dev).unwrap() + 1.0).unwrap();
        let fused = candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap();
        let composed = reference_rms_norm(&x, &w, 1e-5).unwrap();
        assert!(rel_error(&composed, &fused).unwrap() < 1e-5);

        let shape = LayerShape {
            rows: 5,
            hidden: 16,
            inter: 8,
            heads: 4,
            kv_heads: 2,
            head_dim: 4,
        };
        let qkv = Tensor::randn(0f32, 1.0, (1, 5, 32), &dev).unwrap();
        let angles = (Tensor::arange(0u32, 16, &dev)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .reshape((8, 2))
            .unwrap()
            * 0.3)
            .unwrap();
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        let (q, k, v) = reference_qkv_rope(&qkv, &cos, &sin, 2, &shape).unwrap();
        assert_eq!(q.dims(), [1, 4, 5, 4]);
        assert_eq!(k.dims(), [1, 2, 5, 4]);
        // v is the last two heads, untouched; q matches candle's fused rope.
        let v_direct = qkv.narrow(2, 24, 8).unwrap().reshape((1, 5, 2, 4)).unwrap();
        let v_direct = v_direct.transpose(1, 2).unwrap();
        assert!(rel_error(&v, &v_direct).unwrap() == 0.0);
        let q_in = qkv
            .narrow(2, 0, 16)
            .unwrap()
            .reshape((1, 5, 4, 4))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap();
        let fused_q = candle_nn::rotary_emb::rope(
            &q_in,
            &cos.narrow(0, 2, 5).unwrap(),
            &sin.narrow(0, 2, 5).unwrap(),
        )
        .unwrap();
        assert!(rel_error(&q, &fused_q).unwrap() < 1e-6);

        let gu = Tensor::randn(0f32, 1.0, (2, 6), &dev).unwrap();
        let s = reference_silu_mul(&gu).unwrap();
        let want =
            (gu.narrow(1, 0, 3).unwrap().silu().unwrap() * gu.narrow(1, 3, 3).unwrap()).unwrap();
        assert!(rel_error(&s, &want).unwrap() == 0.0);
    }
}
