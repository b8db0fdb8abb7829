//! Attention in one kernel (flash attention) for half-precision models on CUDA.
//!
//! At 2.9k tokens the unfused path writes and reads a `[heads, t, t]` score block per layer
//! (0.55 GB in bf16) three times: the score matmul, the masked softmax and the context matmul.
//! `flash_attention` keeps scores in registers: for each tile of 64 keys it computes the scores
//! with tensor-core mma, applies the mask and an online softmax, and adds the weighted values,
//! so only q, k, v and the context touch memory. Causal tiles above the diagonal are skipped.
//! Scores are f32 (not rounded to bf16 as the unfused path's matmul output is), probabilities
//! enter the value product in the model's dtype, sums are f32.
//!
//! The context comes back as `[b, t, heads, d]`, the layout the output projection reads, so no
//! transpose copy follows. With few query rows and many keys (decoding: one query per head) the
//! keys are split across blocks and a second kernel merges the partial rows.

// The launch plan is host logic, tested without a card; only CUDA builds launch it.
#![cfg_attr(not(feature = "cuda"), allow(dead_code))]

use candle_core::DType;

use super::softmax::KeyMask;

/// Query rows of one thread block (four warps of 16).
const ROWS_PER_BLOCK: usize = 64;
/// Keys per tile: the unit of the key loop and of key splits.
const KEYS_PER_TILE: usize = 64;
/// Blocks wanted in flight before keys are split across blocks (two per SM on a 132-SM card).
const TARGET_BLOCKS: usize = 264;

/// Whether [`flash_attention`] has a kernel for this dtype and head size and is switched on
/// (see [`super::flash_disabled`]).
pub fn supported(dtype: DType, head_dim: usize) -> bool {
    !super::flash_disabled()
        && matches!(dtype, DType::BF16 | DType::F16)
        && matches!(head_dim, 64 | 128)
}

/// How the keys of each row tile are shared among blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeySplit {
    /// Blocks per row tile (the grid's z).
    pub(crate) splits: usize,
    /// Keys each of them covers, a multiple of the tile.
    pub(crate) keys_per_split: usize,
}

/// Split `keys` among blocks so that `blocks` row tiles fill the card: only when they alone
/// cannot, and never below two key tiles a split (the merge costs a pass over the partials).
pub(crate) fn plan_split(blocks: usize, keys: usize) -> KeySplit {
    let whole = KeySplit {
        splits: 1,
        keys_per_split: keys.max(1).next_multiple_of(KEYS_PER_TILE),
    };
    if blocks >= TARGET_BLOCKS || keys <= 2 * KEYS_PER_TILE {
        return whole;
    }
    let wanted = TARGET_BLOCKS.div_ceil(blocks.max(1));
    let most = keys.div_ceil(2 * KEYS_PER_TILE);
    let per = keys
        .div_ceil(wanted.min(most))
        .next_multiple_of(KEYS_PER_TILE);
    KeySplit {
        splits: keys.div_ceil(per),
        keys_per_split: per,
    }
}

/// What the kernel needs of a [`KeyMask`]: keys visible to every row, causal, and the past.
fn mask_args(mask: KeyMask, t: usize, keys: usize) -> candle_core::Result<(usize, bool, usize)> {
    match mask {
        KeyMask::All => Ok((keys, false, 0)),
        KeyMask::First(n) => Ok((n.min(keys), false, 0)),
        KeyMask::Causal { t_q, past } if t_q == t => Ok((keys, true, past)),
        KeyMask::Causal { t_q, .. } => candle_core::bail!(
            "flash attention: a causal mask over {t_q} queries given {t} query rows"
        ),
    }
}

#[cfg(feature = "cuda")]
pub use launch::flash_attention;

#[cfg(feature = "cuda")]
mod launch {
    use candle_core::cuda_backend::WrapErr;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::{DType, Result, Tensor, bail};

    use super::super::cuda_call::{CudaInput, i32_arg, kernel_name, wrap};
    use super::super::softmax::KeyMask;
    use super::{ROWS_PER_BLOCK, mask_args, plan_split, supported};

    /// `softmax(scale · q kᵀ, mask) v` for q `[b, heads, t, d]` and k, v `[b, kv_heads, n, d]`
    /// (grouped-query heads share a key head; k and v may be views whose rows are dense, such
    /// as the KV cache's), returned as `[b, t, heads, d]`.
    pub fn flash_attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: KeyMask,
        scale: f32,
    ) -> Result<Tensor> {
        let (b, heads, t, d) = q.dims4()?;
        let (kb, kv_heads, n, kd) = k.dims4()?;
        let dtype = q.dtype();
        if !supported(dtype, d) {
            bail!("flash attention: no kernel for {dtype:?} heads of size {d}");
        }
        if (kb, kd) != (b, d) || v.dims() != k.dims() || kv_heads == 0 || heads % kv_heads != 0 {
            bail!(
                "flash attention: q {:?} does not fit keys {:?} and values {:?}",
                q.dims(),
                k.dims(),
                v.dims()
            );
        }
        if k.dtype() != dtype || v.dtype() != dtype {
            bail!("flash attention: q, k and v must share a dtype");
        }
        let (n_keys, causal, past) = mask_args(mask, t, n)?;
        let q = q.contiguous()?;
        let qi = CudaInput::new(&q, "flash attention queries")?;
        let (ki, [k_batch, k_head]) = CudaInput::dense_rows(k, "flash attention keys")?;
        let (vi, [v_batch, v_head]) = CudaInput::dense_rows(v, "flash attention values")?;
        let dev = qi.device();
        let rows = heads / kv_heads * t;
        let tiles = rows.div_ceil(ROWS_PER_BLOCK).max(1);
        let split = plan_split(tiles * b * kv_heads, n_keys);
        let ints = [
            i32_arg(heads, "heads")?,
            i32_arg(kv_heads, "kv heads")?,
            i32_arg(t, "queries")?,
            i32_arg(n_keys, "keys")?,
            i32_arg(past, "past positions")?,
            i32::from(causal),
        ];
        let scale_log2 = scale * std::f32::consts::LOG2_E;
        let strides = [k_batch, k_head, v_batch, v_head].map(|s| s as i64);
        let kps = i32_arg(split.keys_per_split, "keys per split")?;
        let grid = |x: usize, what: &str| -> Result<u32> {
            u32::try_from(x).map_err(|_| candle_core::Error::Msg(format!("{what} {x} too large")))
        };
        let cfg = LaunchConfig {
            grid_dim: (
                grid(tiles, "row tiles")?,
                grid(b * kv_heads, "heads")?,
                grid(split.splits, "key splits")?,
            ),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let null = 0u64;
        crate::with_float_type!(dtype, T, {
            // SAFETY: the kernels write every element of the output.
            let out = unsafe { dev.alloc::<T>((b * t * heads * d).max(1))? };
            let (qv, kv, vv) = (qi.view::<T>()?, ki.view::<T>()?, vi.view::<T>()?);
            let base = format!("flash_attention_d{d}");
            let func = dev.get_or_load_custom_func(
                &kernel_name(&base, dtype),
                super::super::MODULE,
                super::super::PTX,
            )?;
            let partials = if split.splits > 1 {
                let n_rows = split.splits * b * kv_heads * rows;
                // SAFETY: every (split, row) the merge reads is written by the first kernel.
                Some(unsafe { (dev.alloc::<f32>(n_rows * d)?, dev.alloc::<f32>(n_rows * 2)?) })
            } else {
                None
            };
            let mut bld = func.builder();
            bld.arg(&qv).arg(&kv).arg(&vv).arg(&out);
            match &partials {
                Some((po, pml)) => bld.arg(po).arg(pml),
                None => bld.arg(&null).arg(&null),
            };
            for a in &ints {
                bld.arg(a);
            }
            bld.arg(&scale_log2);
            for s in &strides {
                bld.arg(s);
            }
            bld.arg(&kps);
            // SAFETY: arguments match `flash_attention_d*` in flash_attention.cu; k and v
            // strides describe views inside their buffers (checked by `dense_rows`).
            unsafe { bld.launch(cfg) }.w()?;
            if let Some((po, pml)) = &partials {
                let func = dev.get_or_load_custom_func(
                    &kernel_name("flash_combine", dtype),
                    super::super::MODULE,
                    super::super::PTX,
                )?;
                let splits = i32_arg(split.splits, "key splits")?;
                let d_i = i32_arg(d, "head size")?;
                let cfg = LaunchConfig {
                    grid_dim: (grid(b * kv_heads * rows, "rows")?, 1, 1),
                    block_dim: (d as u32, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut bld = func.builder();
                bld.arg(po).arg(pml).arg(&out).arg(&splits);
                bld.arg(&ints[0]).arg(&ints[1]).arg(&ints[2]).arg(&d_i);
                // SAFETY: arguments match `flash_combine_*` in flash_attention.cu.
                unsafe { bld.launch(cfg) }.w()?;
            }
            Ok(wrap(out, &dev, (b, t, heads, d)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_only_when_row_tiles_cannot_fill_the_card() {
        // Prefill: 47 row tiles x 8 kv heads fill the card.
        assert_eq!(plan_split(376, 2959).splits, 1);
        // Decode: 8 blocks, 2959 keys: split into whole tiles, covering every key once.
        let s = plan_split(8, 2959);
        assert!(s.splits > 1 && s.splits * 8 <= 2 * TARGET_BLOCKS, "{s:?}");
        assert_eq!(s.keys_per_split % KEYS_PER_TILE, 0);
        assert!(s.keys_per_split * s.splits >= 2959);
        assert!(s.keys_per_split * (s.splits - 1) < 2959);
        // Few keys: never below two tiles a split.
        assert_eq!(plan_split(8, 100).splits, 1);
        assert!(plan_split(8, 300).keys_per_split >= 2 * KEYS_PER_TILE);
        assert_eq!(plan_split(1, 0).keys_per_split, KEYS_PER_TILE);
    }

    #[test]
    fn masks_map_to_kernel_arguments() {
        assert_eq!(mask_args(KeyMask::All, 5, 8).unwrap(), (8, false, 0));
        assert_eq!(
            mask_args(KeyMask::First(577), 577, 584).unwrap(),
            (577, false, 0)
        );
        let causal = KeyMask::Causal { t_q: 1, past: 40 };
        assert_eq!(mask_args(causal, 1, 48).unwrap(), (48, true, 40));
        assert!(mask_args(causal, 2, 48).is_err());
    }

    #[test]
    fn kernels_exist_for_half_types_at_llama_and_clip_head_sizes() {
        assert!(supported(DType::BF16, 128) && supported(DType::F16, 64));
        assert!(!supported(DType::F32, 128) && !supported(DType::BF16, 96));
    }
}
