//! Encoding to sparse top-k codes and decoding them back, in bounded row blocks.

use std::cmp::Ordering;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};

use super::sae::Sae;

/// Code values at or below this are not activations (the original system's non-zero test);
/// every consumer of SAE codes (cache, probe, the model actor, bench) applies it through
/// [`is_active`].
pub const ACTIVE_MIN: f32 = 1e-5;

/// Whether an SAE code value counts as an activation.
pub fn is_active(v: f32) -> bool {
    v > ACTIVE_MIN
}

/// Upper bound on the dense pre-activations (`rows x N`) alive at once during [`Sae::encode`].
///
/// 128 MiB gives 256 rows for N = 131072 in f32.
pub const PRE_ACTS_BUDGET_BYTES: usize = 128 << 20;
/// Upper bound on the gathered decoder rows (`rows x k x d`) alive at once during [`Sae::decode`].
pub const DECODE_BUDGET_BYTES: usize = 128 << 20;
/// Most rows in one block, so that tiny SAEs do not build huge input blocks.
pub const MAX_BLOCK_ROWS: usize = 4096;

/// Sparse codes: k (value, latent) pairs per row.
#[derive(Debug, Clone)]
pub struct SparseCodes {
    /// Activations, f32 `[rows, k]`, descending within a row.
    pub values: Tensor,
    /// Latent indices, u32 `[rows, k]`, aligned with `values`.
    pub indices: Tensor,
}

impl SparseCodes {
    /// Number of rows (tokens).
    pub fn rows(&self) -> usize {
        self.values.dims().first().copied().unwrap_or(0)
    }
    /// Pairs per row.
    pub fn k(&self) -> usize {
        self.values.dims().get(1).copied().unwrap_or(0)
    }
}

/// Rows per block such that `rows * per_row_elems * elem_bytes` stays within `budget`.
fn block_rows(budget: usize, per_row_elems: usize, dtype: DType) -> usize {
    let per_row = per_row_elems.saturating_mul(dtype.size_in_bytes()).max(1);
    (budget / per_row).clamp(1, MAX_BLOCK_ROWS)
}

impl Sae {
    /// `ReLU(W_enc (x - b_dec) + b_enc)`, dense `[rows, N]`: for small row blocks only.
    ///
    /// `x` is `[rows, d_in]` in any float dtype; it is cast to the SAE dtype first.
    pub fn pre_acts(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.encoder_matmul(x)?.broadcast_add(self.b_enc())?.relu()
    }

    /// `W_enc (x - b_dec)` without the bias and ReLU: the fused device top-k applies those.
    fn encoder_matmul(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, cols) = x.dims2()?;
        if cols != self.d_in() {
            candle_core::bail!(
                "SAE `{}`: input rows have width {cols} but the SAE expects d_in = {}",
                self.hookpoint(),
                self.d_in()
            );
        }
        x.to_dtype(self.dtype())?
            .broadcast_sub(self.b_dec())?
            .matmul(&self.w_enc().t()?)
    }

    /// Rows per encode block for this SAE (see [`PRE_ACTS_BUDGET_BYTES`]).
    pub fn encode_block_rows(&self) -> usize {
        block_rows(PRE_ACTS_BUDGET_BYTES, self.num_latents(), self.dtype())
    }

    /// Top-k of [`Sae::pre_acts`] per row, in blocks of [`Sae::encode_block_rows`] rows.
    ///
    /// Values are f32, sorted descending within a row, ties broken by lower latent index. When
    /// fewer than k pre-activations are positive the remaining entries are zeros, kept as the
    /// original does; drop them downstream if only active latents matter.
    pub fn encode(&self, x: &Tensor) -> Result<SparseCodes> {
        self.encode_blocked(x, self.encode_block_rows())
    }

    /// [`Sae::encode`] with an explicit block size (rows of pre-activations alive at once).
    pub fn encode_blocked(&self, x: &Tensor, block: usize) -> Result<SparseCodes> {
        let (rows, _) = x
            .dims2()
            .context("SAE encode expects a [rows, d_in] input")?;
        let k = self.k();
        let block = block.max(1);
        if rows == 0 {
            let device = x.device();
            return Ok(SparseCodes {
                values: Tensor::zeros((0, k), DType::F32, device)?,
                indices: Tensor::zeros((0, k), DType::U32, device)?,
            });
        }
        let mut values = Vec::new();
        let mut indices = Vec::new();
        for start in (0..rows).step_by(block) {
            let len = block.min(rows - start);
            let rows_of_x = x.narrow(0, start, len)?;
            let what = || {
                format!(
                    "SAE `{}`: encoding rows {start}..{}",
                    self.hookpoint(),
                    start + len
                )
            };
            let (v, i) = if self.fused_topk_applies() {
                let pre = self.encoder_matmul(&rows_of_x).with_context(what)?;
                self.fused_topk(&pre, k).with_context(what)?
            } else {
                let pre = self.pre_acts(&rows_of_x).with_context(what)?;
                topk_rows(&pre, k)?
            };
            values.push(v);
            indices.push(i);
        }
        Ok(SparseCodes {
            values: Tensor::cat(&values, 0)?,
            indices: Tensor::cat(&indices, 0)?,
        })
    }

    /// Top-k of each row of latents that are already activated (bias added, ReLU applied, then
    /// perhaps edited), ordered as [`Sae::encode`] orders codes. On CUDA this is the fused
    /// kernel with a zero bias, which passes non-negative values through exactly; a row with a
    /// negative entry (an edit below zero) takes the generic path, where negatives rank last.
    pub fn topk_of_acts(
        &self,
        acts: &Tensor,
        k: usize,
        non_negative: bool,
    ) -> Result<(Tensor, Tensor)> {
        if non_negative && self.fused_topk_applies() {
            let zero = Tensor::zeros(acts.dim(1)?, acts.dtype(), acts.device())?;
            return self.fused_topk_with_bias(acts, &zero, k);
        }
        topk_rows(acts, k)
    }

    /// Whether encoding goes through the fused CUDA bias + ReLU + top-k kernel.
    fn fused_topk_applies(&self) -> bool {
        cfg!(feature = "cuda")
            && self.device().is_cuda()
            && !crate::kernels::fused_disabled()
            && self.k() <= 1024
    }

    fn fused_topk(&self, pre: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
        self.fused_topk_with_bias(pre, self.b_enc(), k)
    }

    #[cfg(feature = "cuda")]
    fn fused_topk_with_bias(
        &self,
        pre: &Tensor,
        bias: &Tensor,
        k: usize,
    ) -> Result<(Tensor, Tensor)> {
        crate::kernels::topk::sae_topk(pre, bias, k)
    }

    #[cfg(not(feature = "cuda"))]
    fn fused_topk_with_bias(&self, _: &Tensor, _: &Tensor, _: usize) -> Result<(Tensor, Tensor)> {
        bail!("the fused SAE top-k needs a build with the `cuda` feature")
    }

    /// `Σ_j values[r,j] · W_dec[indices[r,j]] + b_dec` as a row gather, in the SAE dtype.
    ///
    /// Works in blocks so that at most [`DECODE_BUDGET_BYTES`] of gathered rows exist at once;
    /// no dense `[rows, N]` buffer is built. An index ≥ N is an error on CPU.
    pub fn decode(&self, codes: &SparseCodes) -> candle_core::Result<Tensor> {
        let per_row = codes.k().saturating_mul(self.d_in());
        self.decode_blocked(
            codes,
            block_rows(DECODE_BUDGET_BYTES, per_row, self.dtype()),
        )
    }

    /// [`Sae::decode`] with an explicit block size in rows.
    pub fn decode_blocked(&self, codes: &SparseCodes, block: usize) -> candle_core::Result<Tensor> {
        let (rows, k) = codes.values.dims2()?;
        if codes.indices.dims() != [rows, k] {
            candle_core::bail!(
                "sparse codes: indices have shape {:?} but values have {:?}",
                codes.indices.dims(),
                codes.values.dims()
            );
        }
        let d = self.d_in();
        let mut parts = Vec::new();
        for start in (0..rows).step_by(block.max(1)) {
            let len = block.max(1).min(rows - start);
            let ids = codes.indices.narrow(0, start, len)?.flatten_all()?;
            let rows_of_dec = self.w_dec().index_select(&ids, 0)?.reshape((len, k, d))?;
            let weights = codes
                .values
                .narrow(0, start, len)?
                .to_dtype(self.dtype())?
                .unsqueeze(1)?;
            parts.push(weights.matmul(&rows_of_dec)?.squeeze(1)?);
        }
        let sum = match parts.len() {
            0 => Tensor::zeros((0, d), self.dtype(), self.device())?,
            _ => Tensor::cat(&parts, 0)?,
        };
        sum.broadcast_add(self.b_dec())
    }
}

/// Top-k along the last axis of a `[rows, n]` block: (f32 values, u32 indices), each `[rows, k]`.
///
/// Rows are sorted by value descending, equal values by lower index, NaN last. The block is
/// copied to the host and each row is partitioned with `select_nth_unstable_by`, rows spread over
/// threads. On an accelerator (and k ≤ 512) the block stays there instead and goes through
/// [`super::topk_device::topk_rows_device`], a tournament of chunked device sorts; results come
/// back on the input's device either way.
pub fn topk_rows(pre: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    let (rows, n) = pre.dims2().context("top-k expects a [rows, n] block")?;
    if k == 0 || k > n {
        bail!("top-k: k = {k} must be between 1 and the row width {n}");
    }
    if u32::try_from(n).is_err() {
        bail!("top-k: row width {n} does not fit u32 indices");
    }
    // Accelerators sort on the device: copying 131072-wide rows to the host would dominate.
    if !pre.device().is_cpu() && 2 * k <= super::topk_device::CHUNK {
        return super::topk_device::topk_rows_device(pre, k);
    }
    let host: Vec<f32> = pre.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let mut values = vec![0f32; rows * k];
    let mut indices = vec![0u32; rows * k];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    // Below this much work a thread costs more than it saves.
    let threads = if rows * n < (1 << 16) {
        1
    } else {
        threads.min(rows).max(1)
    };
    let per = rows.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let chunks = host
            .chunks(per * n)
            .zip(values.chunks_mut(per * k))
            .zip(indices.chunks_mut(per * k));
        for ((src, vals), ids) in chunks {
            scope.spawn(move || {
                let mut scratch: Vec<(f32, u32)> = Vec::with_capacity(n);
                for ((row, v), i) in src.chunks(n).zip(vals.chunks_mut(k)).zip(ids.chunks_mut(k)) {
                    top_of_row(row, k, &mut scratch);
                    for (j, (value, index)) in scratch.iter().enumerate() {
                        v[j] = *value;
                        i[j] = *index;
                    }
                }
            });
        }
    });
    let device: &Device = pre.device();
    Ok((
        Tensor::from_vec(values, (rows, k), device)?,
        Tensor::from_vec(indices, (rows, k), device)?,
    ))
}

/// Leave the k best (value, index) pairs of `row` in `scratch`, sorted best first.
fn top_of_row(row: &[f32], k: usize, scratch: &mut Vec<(f32, u32)>) {
    scratch.clear();
    scratch.extend(row.iter().enumerate().map(|(j, &v)| (v, j as u32)));
    if k < scratch.len() {
        scratch.select_nth_unstable_by(k - 1, rank);
        scratch.truncate(k);
    }
    scratch.sort_unstable_by(rank);
}

/// Total order: larger value first, NaN after every number, equal values by lower index.
fn rank(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    let by_value = match (a.0.is_nan(), b.0.is_nan()) {
        (false, false) => b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal),
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (true, true) => Ordering::Equal,
    };
    by_value.then(a.1.cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::SaeConfig;
    use crate::util::rng::SeededRng;

    /// 2 latents over 3 dims with hand-picked weights (see the hand computations below).
    fn tiny(k: usize) -> Sae {
        let dev = Device::Cpu;
        let cfg = SaeConfig {
            num_latents: 2,
            k,
            ..SaeConfig::new(3)
        };
        let w_enc = Tensor::new(&[[1f32, 0., -1.], [0., 2., 1.]], &dev).unwrap();
        let b_enc = Tensor::new(&[0.5f32, -1.], &dev).unwrap();
        let w_dec = Tensor::new(&[[1f32, 0., 0.], [0., 1., 1.]], &dev).unwrap();
        let b_dec = Tensor::new(&[1f32, 1., 0.], &dev).unwrap();
        Sae::from_tensors(cfg, "layers.0".into(), w_enc, b_enc, w_dec, b_dec).unwrap()
    }

    fn tiny_input() -> Tensor {
        Tensor::new(
            &[
                [2f32, 1., 1.], // x-b_dec = [1,0,1]:   pre = [0+0.5, 1-1]   = [0.5, 0]
                [0., 3., -1.],  // x-b_dec = [-1,2,-1]: pre = [0+0.5, 3-1]   = [0.5, 2]
                [5., 1., 0.],   // x-b_dec = [4,0,0]:   pre = [4.5, relu(-1)] = [4.5, 0]
                [0., 1., 0.],   // x-b_dec = [-1,0,0]:  pre = [relu(-0.5), relu(-1)] = [0, 0]
                [1.5, 2., 0.],  // x-b_dec = [0.5,1,0]: pre = [1, 1] (a tie)
            ],
            &Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn hand_computed_pre_acts_topk_and_decode() {
        let sae = tiny(2);
        let pre = sae
            .pre_acts(&tiny_input())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(
            pre,
            vec![
                vec![0.5, 0.],
                vec![0.5, 2.],
                vec![4.5, 0.],
                vec![0., 0.],
                vec![1., 1.]
            ]
        );

        let codes = sae.encode(&tiny_input()).unwrap();
        let v = codes.values.to_vec2::<f32>().unwrap();
        let i = codes.indices.to_vec2::<u32>().unwrap();
        assert_eq!(
            v,
            vec![
                vec![0.5, 0.],
                vec![2., 0.5],
                vec![4.5, 0.],
                vec![0., 0.],
                vec![1., 1.]
            ]
        );
        assert_eq!(
            i,
            vec![vec![0, 1], vec![1, 0], vec![0, 1], vec![0, 1], vec![0, 1]]
        );

        // Row 1: 2*[0,1,1] + 0.5*[1,0,0] + b_dec [1,1,0] = [1.5, 3, 2].
        let out = sae.decode(&codes).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(out[1], vec![1.5, 3., 2.]);
        assert_eq!(out[3], vec![1., 1., 0.]);

        let top1 = tiny(1).encode(&tiny_input()).unwrap();
        assert_eq!(
            top1.values.to_vec2::<f32>().unwrap(),
            vec![vec![0.5], vec![2.], vec![4.5], vec![0.], vec![1.]]
        );
        assert_eq!(
            top1.indices.to_vec2::<u32>().unwrap(),
            vec![vec![0], vec![1], vec![0], vec![0], vec![0]]
        );
        // Row 2 with k=1: 4.5*[1,0,0] + [1,1,0].
        let out = tiny(1).decode(&top1).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(out[2], vec![5.5, 1., 0.]);
    }

    fn random_sae(d: usize, n: usize, k: usize) -> Sae {
        let cfg = SaeConfig {
            num_latents: n,
            k,
            ..SaeConfig::new(d)
        };
        let sae = Sae::random(cfg, "model.layers.1", 11, &Device::Cpu).unwrap();
        // A non-zero b_dec and b_enc so that both terms are exercised.
        let mut rng = SeededRng::new(5);
        let b_enc: Vec<f32> = (0..n).map(|_| rng.normal() as f32 * 0.1).collect();
        let b_dec: Vec<f32> = (0..d).map(|_| rng.normal() as f32).collect();
        Sae::from_tensors(
            sae.cfg().clone(),
            "model.layers.1".into(),
            sae.w_enc().clone(),
            Tensor::new(b_enc, &Device::Cpu).unwrap(),
            sae.w_dec().clone(),
            Tensor::new(b_dec, &Device::Cpu).unwrap(),
        )
        .unwrap()
    }

    fn normal_rows(rows: usize, d: usize, seed: u64) -> Tensor {
        let mut rng = SeededRng::new(seed);
        let v: Vec<f32> = (0..rows * d).map(|_| rng.normal() as f32).collect();
        Tensor::from_vec(v, (rows, d), &Device::Cpu).unwrap()
    }

    #[test]
    fn blocked_encode_matches_one_block_and_a_host_reference() {
        let (d, n, k, rows) = (16, 64, 5, 37);
        let sae = random_sae(d, n, k);
        let x = normal_rows(rows, d, 3);
        let one = sae.encode_blocked(&x, 1000).unwrap();
        let many = sae.encode_blocked(&x, 4).unwrap();
        assert_eq!(
            one.indices.to_vec2::<u32>().unwrap(),
            many.indices.to_vec2::<u32>().unwrap()
        );
        let (a, b) = (
            one.values.to_vec2::<f32>().unwrap(),
            many.values.to_vec2::<f32>().unwrap(),
        );
        for (ra, rb) in a.iter().zip(&b) {
            for (va, vb) in ra.iter().zip(rb) {
                assert!((va - vb).abs() < 1e-5, "{va} vs {vb}");
            }
        }

        // Host reference in f64: ReLU(W_enc (x - b_dec) + b_enc), then a full sort.
        let xs = x.to_vec2::<f32>().unwrap();
        let we = sae.w_enc().to_vec2::<f32>().unwrap();
        let be = sae.b_enc().to_vec1::<f32>().unwrap();
        let bd = sae.b_dec().to_vec1::<f32>().unwrap();
        let ids = one.indices.to_vec2::<u32>().unwrap();
        for (r, xr) in xs.iter().enumerate() {
            let mut pre: Vec<(f64, usize)> = (0..n)
                .map(|f| {
                    let dot: f64 = (0..d)
                        .map(|j| we[f][j] as f64 * (xr[j] - bd[j]) as f64)
                        .sum();
                    ((dot + be[f] as f64).max(0.0), f)
                })
                .collect();
            pre.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)));
            for j in 0..k {
                assert_eq!(ids[r][j] as usize, pre[j].1, "row {r} rank {j}");
                assert!((a[r][j] as f64 - pre[j].0).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn decode_equals_dense_scatter_matmul() {
        let (d, n, k, rows) = (12, 48, 6, 29);
        let sae = random_sae(d, n, k);
        let codes = sae.encode(&normal_rows(rows, d, 9)).unwrap();
        let v = codes.values.to_vec2::<f32>().unwrap();
        let ids = codes.indices.to_vec2::<u32>().unwrap();
        let mut dense = vec![0f32; rows * n];
        for r in 0..rows {
            for j in 0..k {
                dense[r * n + ids[r][j] as usize] = v[r][j];
            }
        }
        let dense = Tensor::from_vec(dense, (rows, n), &Device::Cpu).unwrap();
        let want = dense
            .matmul(sae.w_dec())
            .unwrap()
            .broadcast_add(sae.b_dec())
            .unwrap();
        for got in [
            sae.decode(&codes).unwrap(),
            sae.decode_blocked(&codes, 5).unwrap(),
        ] {
            assert_eq!(got.dims(), &[rows, d]);
            let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        }
    }

    #[test]
    fn topk_keeps_nonpositive_fill_and_orders_nan_last() {
        let pre = Tensor::new(&[[0f32, f32::NAN, 3., 0., 3.]], &Device::Cpu).unwrap();
        let (v, i) = topk_rows(&pre, 4).unwrap();
        assert_eq!(i.to_vec2::<u32>().unwrap(), vec![vec![2, 4, 0, 3]]);
        assert_eq!(v.to_vec2::<f32>().unwrap(), vec![vec![3., 3., 0., 0.]]);
        assert!(
            topk_rows(&pre, 6)
                .unwrap_err()
                .to_string()
                .contains("k = 6")
        );
        assert!(topk_rows(&pre, 0).is_err());
    }

    #[test]
    fn topk_threaded_rows_match_single_rows() {
        // Large enough to take the threaded path; every row checked alone.
        let (rows, n, k) = (9, 10_000, 7);
        let pre = normal_rows(rows, n, 21);
        let (v, i) = topk_rows(&pre, k).unwrap();
        let (v, i) = (v.to_vec2::<f32>().unwrap(), i.to_vec2::<u32>().unwrap());
        for r in 0..rows {
            let (vr, ir) = topk_rows(&pre.narrow(0, r, 1).unwrap(), k).unwrap();
            assert_eq!(vr.to_vec2::<f32>().unwrap()[0], v[r]);
            assert_eq!(ir.to_vec2::<u32>().unwrap()[0], i[r]);
        }
    }

    #[test]
    fn empty_input_and_wrong_width() {
        let sae = tiny(2);
        let codes = sae
            .encode(&Tensor::zeros((0, 3), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!((codes.rows(), codes.k()), (0, 2));
        assert_eq!(sae.decode(&codes).unwrap().dims(), &[0, 3]);
        let err = sae
            .encode(&Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap())
            .unwrap_err();
        assert!(format!("{err:#}").contains("width 4") && format!("{err:#}").contains("d_in = 3"));
    }

    #[test]
    fn bf16_sae_and_input_give_f32_codes() {
        let sae = tiny(2);
        let half = Sae::from_tensors(
            sae.cfg().clone(),
            "layers.0".into(),
            sae.w_enc().to_dtype(DType::BF16).unwrap(),
            sae.b_enc().clone(),
            sae.w_dec().clone(),
            sae.b_dec().clone(),
        )
        .unwrap();
        assert_eq!(half.dtype(), DType::BF16);
        let codes = half
            .encode(&tiny_input().to_dtype(DType::F16).unwrap())
            .unwrap();
        assert_eq!(codes.values.dtype(), DType::F32);
        assert_eq!(codes.values.to_vec2::<f32>().unwrap()[1], vec![2., 0.5]);
        assert_eq!(half.decode(&codes).unwrap().dtype(), DType::BF16);
    }

    #[test]
    fn block_rows_respects_budget() {
        assert_eq!(block_rows(PRE_ACTS_BUDGET_BYTES, 131_072, DType::F32), 256);
        assert_eq!(block_rows(DECODE_BUDGET_BYTES, 256 * 4096, DType::F32), 32);
        assert_eq!(block_rows(16, 1 << 20, DType::F32), 1);
        assert_eq!(
            block_rows(PRE_ACTS_BUDGET_BYTES, 8, DType::F32),
            MAX_BLOCK_ROWS
        );
    }
}
