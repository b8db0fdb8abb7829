//! Scale, causal mask and softmax of attention scores in one pass.
//!
//! Attention at 2.9k tokens holds `[heads, t, t]` scores (0.55 GB in bf16 per layer at 32
//! heads). Scaling, casting to f32, adding a broadcast mask, the softmax and the cast back are
//! five passes over that block in candle's generic kernels; this op reads it once and writes
//! the probabilities once, in the scores' dtype, with f32 arithmetic inside (f64 for f64). Its
//! backward needs only the probabilities, so a differentiable forward keeps one `[heads, t, t]`
//! block per layer instead of the composed ops' five.

use candle_core::{CpuStorage, CustomOp1, DType, Error, Layout, Result, Shape, Tensor, WithDType};

/// Which keys each query may attend to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMask {
    /// Every key (the vision tower).
    All,
    /// The first `n` keys only (the rest is alignment padding).
    First(usize),
    /// Keys at or before the query's position. The last-but-one axis holds one or more stacked
    /// runs of `t_q` queries (several query heads sharing a key head), each at absolute
    /// positions `past..past + t_q`; keys at `0..cols`.
    Causal {
        /// Queries per (batch, head).
        t_q: usize,
        /// Positions before the first query (the KV cache length).
        past: usize,
    },
}

impl KeyMask {
    /// Keys `0..visible` may be attended to by row `row` of a block of `cols` keys (rows of
    /// stacked query runs, as [`KeyMask::Causal`] describes).
    pub fn visible(self, row: usize, cols: usize) -> usize {
        match self {
            KeyMask::All => cols,
            KeyMask::First(n) => n.min(cols),
            KeyMask::Causal { t_q, past } => (past + row % t_q + 1).min(cols),
        }
    }
}

/// Keys are padded to a multiple of this on CUDA: with an odd key count (2959 positions, 577 CLIP
/// tokens) cuBLAS falls back to unaligned sm75 kernels for the score and context GEMMs, about 10x
/// below the card's rate. The mask gives the padding probability 0.
pub fn key_alignment(device: &candle_core::Device) -> usize {
    if device.is_cuda() { 8 } else { 1 }
}

/// Pad `[b, h, n, d]` keys and values with zeros along `n` to a multiple of `align`.
pub fn pad_keys(k: &Tensor, v: &Tensor, align: usize) -> Result<(Tensor, Tensor)> {
    let n = k.dim(2)?;
    let pad = (align - n % align.max(1)) % align.max(1);
    if pad == 0 {
        return Ok((k.clone(), v.clone()));
    }
    let grow = |x: &Tensor| -> Result<Tensor> {
        let (b, h, _, d) = x.dims4()?;
        let zeros = Tensor::zeros((b, h, pad, d), x.dtype(), x.device())?;
        Tensor::cat(&[x, &zeros], 2)
    };
    Ok((grow(k)?, grow(v)?))
}

/// `softmax(scale · scores)` over the last axis with `mask` applied; masked keys get 0.
pub fn masked_softmax(scores: &Tensor, scale: f32, mask: KeyMask) -> Result<Tensor> {
    if let KeyMask::Causal { t_q, .. } = mask {
        let dims = scores.dims();
        if dims.len() < 2 || t_q == 0 || !dims[dims.len() - 2].is_multiple_of(t_q) {
            candle_core::bail!(
                "masked softmax: scores of shape {dims:?} do not hold runs of {t_q} queries on their last-but-one axis"
            );
        }
    }
    scores
        .contiguous()?
        .apply_op1(MaskedSoftmax { scale, mask })
}

struct MaskedSoftmax {
    scale: f32,
    mask: KeyMask,
}

impl MaskedSoftmax {
    fn host<T: WithDType>(&self, src: &[T], cols: usize) -> Vec<T> {
        let mut out = vec![T::zero(); src.len()];
        if cols == 0 {
            return out;
        }
        let rows = src.len() / cols;
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        // Below this much work a thread costs more than it saves.
        let threads = if src.len() < (1 << 16) {
            1
        } else {
            threads.min(rows).max(1)
        };
        let per = rows.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (chunk, (x, y)) in src
                .chunks(per * cols)
                .zip(out.chunks_mut(per * cols))
                .enumerate()
            {
                scope.spawn(move || {
                    for (r, (xr, yr)) in x.chunks(cols).zip(y.chunks_mut(cols)).enumerate() {
                        let limit = self.mask.visible(chunk * per + r, cols);
                        if T::DTYPE == DType::F64 {
                            row_f64(xr, yr, limit, self.scale as f64);
                        } else {
                            row_f32(xr, yr, limit, self.scale);
                        }
                    }
                });
            }
        });
        out
    }
}

fn row_f32<T: WithDType>(x: &[T], y: &mut [T], limit: usize, scale: f32) {
    let v = |c: usize| x[c].to_f64() as f32 * scale;
    let m = (0..limit).map(v).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for (c, out) in y.iter_mut().enumerate().take(limit) {
        let e = (v(c) - m).exp();
        sum += e;
        *out = T::from_f64(e as f64);
    }
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    for (c, out) in y.iter_mut().enumerate().take(limit) {
        // Recompute rather than re-read the rounded value, so bf16 outputs round once.
        *out = T::from_f64(((v(c) - m).exp() * inv) as f64);
    }
}

fn row_f64<T: WithDType>(x: &[T], y: &mut [T], limit: usize, scale: f64) {
    let v = |c: usize| x[c].to_f64() * scale;
    let m = (0..limit).map(v).fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = (0..limit).map(|c| (v(c) - m).exp()).sum();
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    for (c, out) in y.iter_mut().enumerate().take(limit) {
        *out = T::from_f64((v(c) - m).exp() * inv);
    }
}

impl CustomOp1 for MaskedSoftmax {
    /// `∂L/∂x = scale · y · (g − Σ g·y)` per row, with `y` the probabilities: masked keys have
    /// `y = 0` and get no gradient. Computed in f32 (f64 for f64), whatever the dtype.
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let dtype = res.dtype();
        let work = if dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let (y, g) = (res.to_dtype(work)?, grad_res.to_dtype(work)?);
        let dot = (&g * &y)?.sum_keepdim(candle_core::D::Minus1)?;
        let grad = ((y * g.broadcast_sub(&dot)?)? * f64::from(self.scale))?;
        Ok(Some(grad.to_dtype(dtype)?))
    }

    fn name(&self) -> &'static str {
        "glint-masked-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| Error::Msg("masked softmax needs contiguous scores".into()))?;
        let cols = layout.dims().last().copied().unwrap_or(0);
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(self.host(&v[start..end], cols)),
            CpuStorage::F64(v) => CpuStorage::F64(self.host(&v[start..end], cols)),
            CpuStorage::BF16(v) => CpuStorage::BF16(self.host(&v[start..end], cols)),
            CpuStorage::F16(v) => CpuStorage::F16(self.host(&v[start..end], cols)),
            other => candle_core::bail!(
                "masked softmax: unsupported dtype {:?}",
                candle_core::backend::BackendStorage::dtype(other)
            ),
        };
        Ok((out, layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::CudaStorage;
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::WrapErr;
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};

        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| Error::Msg("masked softmax needs contiguous scores".into()))?;
        let cols = layout.dims().last().copied().unwrap_or(0);
        let rows = (end - start).checked_div(cols).unwrap_or(0);
        let dev = storage.device().clone();
        let (t_q, past, causal) = match self.mask {
            KeyMask::All => (1usize, 0usize, 0i32),
            // One query row per "position" at n - 1: the causal limit is then n for every row.
            KeyMask::First(n) => (1, n.saturating_sub(1), 1),
            KeyMask::Causal { t_q, past } => (t_q, past, 1),
        };
        let to_i32 = |n: usize| {
            i32::try_from(n).map_err(|_| Error::Msg(format!("masked softmax: {n} exceeds i32")))
        };
        let (rows_i, cols_i, tq_i, past_i) =
            (to_i32(rows)?, to_i32(cols)?, to_i32(t_q)?, to_i32(past)?);
        let cfg = LaunchConfig {
            grid_dim: (rows.div_ceil(4).max(1) as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        macro_rules! launch {
            ($t:ty, $name:literal) => {{
                let src = storage.as_cuda_slice::<$t>()?.slice(start..end);
                // SAFETY: every element is written by the kernel.
                let out = unsafe { dev.alloc::<$t>(end - start)? };
                let func = dev.get_or_load_custom_func($name, super::MODULE, super::PTX)?;
                let mut b = func.builder();
                b.arg(&src);
                b.arg(&out);
                b.arg(&rows_i);
                b.arg(&cols_i);
                b.arg(&tq_i);
                b.arg(&past_i);
                b.arg(&causal);
                b.arg(&self.scale);
                // SAFETY: arguments match the kernel's signature in glint.cu.
                unsafe { b.launch(cfg) }.w()?;
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }};
        }
        let out = match storage.dtype() {
            DType::F32 => launch!(f32, "masked_softmax_f32"),
            DType::BF16 => launch!(half::bf16, "masked_softmax_bf16"),
            DType::F16 => launch!(half::f16, "masked_softmax_f16"),
            other => candle_core::bail!("masked softmax on CUDA: unsupported dtype {other:?}"),
        };
        Ok((out, layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn reference(scores: &Tensor, scale: f64, mask: Option<&Tensor>) -> Tensor {
        let mut s = (scores.to_dtype(DType::F64).unwrap() * scale).unwrap();
        if let Some(m) = mask {
            s = s.broadcast_add(&m.to_dtype(DType::F64).unwrap()).unwrap();
        }
        candle_nn::ops::softmax(&s, candle_core::D::Minus1).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    #[test]
    fn causal_rows_match_a_masked_reference_with_and_without_a_past() {
        let dev = Device::Cpu;
        for (t_q, past) in [(5usize, 0usize), (3, 4), (1, 6)] {
            let cols = past + t_q;
            let scores = Tensor::randn(0f32, 3f32, (2, 3, t_q, cols), &dev).unwrap();
            let mask: Vec<f32> = (0..t_q * cols)
                .map(|i| {
                    let (q, c) = (i / cols, i % cols);
                    if c > past + q { f32::NEG_INFINITY } else { 0.0 }
                })
                .collect();
            let mask = Tensor::from_vec(mask, (t_q, cols), &dev).unwrap();
            let got = masked_softmax(&scores, 0.125, KeyMask::Causal { t_q, past }).unwrap();
            let want = reference(&scores, 0.125, Some(&mask));
            assert!(max_abs_diff(&got, &want) < 1e-6, "t_q {t_q} past {past}");
            // Masked keys are exactly zero, not merely small.
            let row0: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap()[..cols].to_vec();
            assert!(row0[past + 1..].iter().all(|p| *p == 0.0));
        }
    }

    #[test]
    fn unmasked_rows_match_softmax_in_every_float_dtype() {
        let dev = Device::Cpu;
        let scores = Tensor::randn(0f32, 2f32, (4, 7, 9), &dev).unwrap();
        for (dtype, tol) in [
            (DType::F64, 1e-12),
            (DType::F32, 1e-6),
            (DType::BF16, 8e-3),
            (DType::F16, 1e-3),
        ] {
            let s = scores.to_dtype(dtype).unwrap();
            let got = masked_softmax(&s, 0.5, KeyMask::All).unwrap();
            assert_eq!(got.dtype(), dtype);
            let want = reference(&s, 0.5, None);
            assert!(max_abs_diff(&got, &want) < tol, "{dtype:?}");
        }
        let sums = masked_softmax(&scores, 0.5, KeyMask::All)
            .unwrap()
            .sum(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
    }

    #[test]
    fn padded_keys_change_nothing() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1f32, (1, 2, 5, 4), &dev).unwrap();
        let k = Tensor::randn(0f32, 1f32, (1, 2, 5, 4), &dev).unwrap();
        let v = Tensor::randn(0f32, 1f32, (1, 2, 5, 4), &dev).unwrap();
        let attend = |k: &Tensor, v: &Tensor, mask| {
            let s = q.matmul(&k.t().unwrap()).unwrap();
            masked_softmax(&s, 0.5, mask).unwrap().matmul(v).unwrap()
        };
        let (kp, vp) = pad_keys(&k, &v, 8).unwrap();
        assert_eq!(kp.dims(), &[1, 2, 8, 4]);
        for (plain, padded) in [
            (KeyMask::All, KeyMask::First(5)),
            (
                KeyMask::Causal { t_q: 5, past: 0 },
                KeyMask::Causal { t_q: 5, past: 0 },
            ),
        ] {
            let a = attend(&k, &v, plain);
            let b = attend(&kp, &vp, padded);
            assert!(max_abs_diff(&a, &b) < 1e-7, "{plain:?}");
        }
    }

    #[test]
    fn a_wrong_query_count_is_an_error() {
        let s = Tensor::zeros((1, 2, 3, 4), DType::F32, &Device::Cpu).unwrap();
        let err = masked_softmax(&s, 1.0, KeyMask::Causal { t_q: 2, past: 0 }).unwrap_err();
        assert!(err.to_string().contains("2 queries"), "{err}");
    }

    #[test]
    fn backward_matches_the_composed_softmax_with_stacked_query_runs() {
        let dev = Device::Cpu;
        // Two query runs of t_q = 3 stacked per head (grouped-query attention), 2 cached keys.
        let (t_q, past, runs) = (3usize, 2usize, 2usize);
        let cols = past + t_q;
        let init = Tensor::randn(0f64, 2.0, (2, runs * t_q, cols), &dev).unwrap();
        let weights = Tensor::randn(0f64, 1.0, (2, runs * t_q, cols), &dev).unwrap();
        let mask: Vec<f64> = (0..runs * t_q * cols)
            .map(|i| {
                let (q, c) = ((i / cols) % t_q, i % cols);
                if c > past + q { f64::NEG_INFINITY } else { 0.0 }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (runs * t_q, cols), &dev).unwrap();
        let grad_of = |fused: bool| {
            let x = candle_core::Var::from_tensor(&init).unwrap();
            let y = if fused {
                masked_softmax(x.as_tensor(), 0.5, KeyMask::Causal { t_q, past }).unwrap()
            } else {
                let s = (x.as_tensor() * 0.5).unwrap().broadcast_add(&mask).unwrap();
                candle_nn::ops::softmax(&s, candle_core::D::Minus1).unwrap()
            };
            let loss = (y * &weights).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            grads.get(x.as_tensor()).unwrap().clone()
        };
        let (fused, composed) = (grad_of(true), grad_of(false));
        assert!(max_abs_diff(&fused, &composed) < 1e-12);
        // Masked keys get no gradient.
        let g: Vec<f64> = fused.flatten_all().unwrap().to_vec1().unwrap();
        assert!(g[past + 1..cols].iter().all(|v| *v == 0.0));
    }
}
