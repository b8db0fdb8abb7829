//! SAE top-k on CUDA: bias, ReLU and an exact radix-select top-k in one kernel, a block per row.
//!
//! The unfused path writes and re-reads the `[rows, N]` pre-activations for the bias add and the
//! ReLU, then sorts them in five tournament rounds; this kernel reads the matmul output two or
//! three times from L2/HBM (once per key byte that matters, once to gather) and writes only the
//! `[rows, k]` result.

use anyhow::{Context, Result, bail};
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Storage, Tensor};

/// Largest k the kernel sorts in shared memory.
pub const MAX_K: usize = 1024;

/// Top-k of `relu(pre + bias)` per row of `pre` `[rows, n]` on a CUDA device: (f32 values, u32
/// indices), each `[rows, k]`, value descending, equal values by lower index (the host order).
pub fn sae_topk(pre: &Tensor, bias: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    use candle_core::cuda_backend::WrapErr;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};

    let (rows, n) = pre.dims2().context("SAE top-k expects [rows, latents]")?;
    if bias.dims() != [n] || bias.dtype() != pre.dtype() {
        bail!(
            "SAE top-k: bias {:?} {:?} does not match pre-activations [{rows}, {n}] {:?}",
            bias.dims(),
            bias.dtype(),
            pre.dtype()
        );
    }
    if k == 0 || k > n || k > MAX_K {
        bail!("SAE top-k on CUDA: k = {k} must be between 1 and min({n}, {MAX_K})");
    }
    let device = pre.device().clone();
    if rows == 0 {
        return Ok((
            Tensor::zeros((0, k), DType::F32, &device)?,
            Tensor::zeros((0, k), DType::U32, &device)?,
        ));
    }
    let (n_i, k_i) = (i32::try_from(n)?, i32::try_from(k)?);
    let pre = pre.contiguous()?;
    let bias = bias.contiguous()?;
    let (ps, pl) = pre.storage_and_layout();
    let (bs, bl) = bias.storage_and_layout();
    let (Storage::Cuda(pc), Storage::Cuda(bc)) = (&*ps, &*bs) else {
        bail!("SAE top-k kernel: tensors are not on a CUDA device");
    };
    let dev = pc.device.clone();
    let (po, _) = pl
        .contiguous_offsets()
        .context("pre-activations not contiguous")?;
    let (bo, _) = bl.contiguous_offsets().context("bias not contiguous")?;
    // SAFETY: the kernel writes all rows * k entries of both outputs.
    let vals = unsafe { dev.alloc::<f32>(rows * k)? };
    let idx = unsafe { dev.alloc::<u32>(rows * k)? };
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (512, 1, 1),
        shared_mem_bytes: 0,
    };
    macro_rules! launch {
        ($t:ty, $name:literal) => {{
            let p = pc.as_cuda_slice::<$t>()?.slice(po..po + rows * n);
            let b = bc.as_cuda_slice::<$t>()?.slice(bo..bo + n);
            let func = dev.get_or_load_custom_func($name, super::MODULE, super::PTX)?;
            let mut builder = func.builder();
            builder.arg(&p);
            builder.arg(&b);
            builder.arg(&vals);
            builder.arg(&idx);
            builder.arg(&n_i);
            builder.arg(&k_i);
            // SAFETY: arguments match the kernel's signature in glint.cu.
            unsafe { builder.launch(cfg) }.w()?;
        }};
    }
    match pre.dtype() {
        DType::F32 => launch!(f32, "sae_topk_f32"),
        DType::BF16 => launch!(half::bf16, "sae_topk_bf16"),
        DType::F16 => launch!(half::f16, "sae_topk_f16"),
        other => bail!("SAE top-k on CUDA: unsupported dtype {other:?}"),
    }
    drop((ps, bs));
    let wrap = |s: Storage| Tensor::from_storage(s, (rows, k), BackpropOp::none(), false);
    Ok((
        wrap(Storage::Cuda(CudaStorage::wrap_cuda_slice(
            vals,
            dev.clone(),
        ))),
        wrap(Storage::Cuda(CudaStorage::wrap_cuda_slice(idx, dev))),
    ))
}
