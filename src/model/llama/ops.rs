//! The layer's numerics: which implementation a forward uses, RMSNorm and rotary embedding.

use candle_core::{D, DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::super::config::TextConfig;

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
pub(super) enum OpPath {
    /// Composed candle ops that record a backward (differentiable forwards, `GLINT_FUSED=0`).
    Composed,
    /// candle's fused rope and RMSNorm with glint's masked softmax.
    Fused,
    /// glint's CUDA kernels for the norms, SwiGLU and the rotary split as well.
    #[cfg(feature = "cuda")]
    Cuda,
}

impl OpPath {
    pub(super) fn choose(differentiable: bool, device: &Device) -> Self {
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
pub(super) struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub(super) fn load(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            eps,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, path: OpPath) -> Result<Tensor> {
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
    pub(super) fn add_forward(
        &self,
        x: &Tensor,
        delta: &Tensor,
        path: OpPath,
    ) -> Result<(Tensor, Tensor)> {
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
pub(super) struct Rotary {
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
}

impl Rotary {
    pub(super) fn new(cfg: &TextConfig, dtype: DType, device: &Device) -> Result<Self> {
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
    pub(super) fn apply(&self, x: &Tensor, offset: usize, path: OpPath) -> Result<Tensor> {
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
