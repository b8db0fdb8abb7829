//! The products of a TopK code on CUDA (`sparse_code.cu`): decode through a latent-major
//! matrix, the code's dot products with a gradient, and the scatter of outer products into a
//! latent-major gradient, each reading only the `k` rows a code names instead of a dense
//! `[rows, N]` block. f32 only: training keeps f32 master weights.

use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::{DType, Result, Tensor, bail};

use super::cuda_call::{CudaInput, i32_arg, wrap};

/// Threads per block (as `SPARSE_THREADS` in the kernel file).
const THREADS: u32 = 256;

/// Check a code `idx` (u32) and `vals` (f32), both `[rows, k]`, against a latent-major `w`
/// `[n, d]` (f32); returns (rows, k, d).
fn check(op: &str, w: &Tensor, idx: &Tensor, vals: &Tensor) -> Result<(usize, usize, usize)> {
    let (_, d) = w.dims2()?;
    let (rows, k) = idx.dims2()?;
    if vals.dims() != [rows, k] {
        bail!(
            "{op}: code values {:?} do not match indices [{rows}, {k}]",
            vals.dims()
        );
    }
    if w.dtype() != DType::F32 || vals.dtype() != DType::F32 || idx.dtype() != DType::U32 {
        bail!(
            "{op} on CUDA: needs f32 weights and values and u32 indices, got {:?}, {:?}, {:?}",
            w.dtype(),
            vals.dtype(),
            idx.dtype()
        );
    }
    Ok((rows, k, d))
}

/// A launch over (rows, column tiles of `THREADS`) with `shared` bytes of shared memory.
fn tiles(rows: usize, d: usize, shared: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, d.div_ceil(THREADS as usize) as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: shared as u32,
    }
}

/// `out[r] = Σ_j vals[r, j] · w[idx[r, j]]`, `[rows, d]`.
pub fn decode(w: &Tensor, idx: &Tensor, vals: &Tensor) -> Result<Tensor> {
    let (rows, k, d) = check("sparse decode", w, idx, vals)?;
    let (w, idx, vals) = (w.contiguous()?, idx.contiguous()?, vals.contiguous()?);
    let (wi, ii, vi) = (
        CudaInput::new(&w, "sparse decode")?,
        CudaInput::new(&idx, "sparse decode")?,
        CudaInput::new(&vals, "sparse decode")?,
    );
    let dev = wi.device();
    let (k_i, d_i) = (i32_arg(k, "code k")?, i32_arg(d, "width")?);
    // SAFETY: the kernel writes every element of the rows × d output.
    let out = unsafe { dev.alloc::<f32>((rows * d).max(1))? };
    if rows > 0 {
        let func = dev.get_or_load_custom_func("sparse_decode_f32", super::MODULE, super::PTX)?;
        let (wv, iv, vv) = (wi.view::<f32>()?, ii.view::<u32>()?, vi.view::<f32>()?);
        let mut b = func.builder();
        b.arg(&wv).arg(&iv).arg(&vv).arg(&out).arg(&k_i).arg(&d_i);
        // SAFETY: arguments match `sparse_decode_f32` in sparse_code.cu.
        unsafe { b.launch(tiles(rows, d, 8 * k)) }.w()?;
    }
    Ok(wrap(out, &dev, (rows, d)))
}

/// `out[r, j] = g[r] · w[idx[r, j]]`, `[rows, k]`.
pub fn dots(w: &Tensor, idx: &Tensor, g: &Tensor) -> Result<Tensor> {
    let (_, d) = w.dims2()?;
    let (rows, k) = idx.dims2()?;
    if g.dims() != [rows, d] || g.dtype() != DType::F32 {
        bail!(
            "sparse dots: gradient {:?} {:?} is not [{rows}, {d}] f32",
            g.dims(),
            g.dtype()
        );
    }
    if w.dtype() != DType::F32 || idx.dtype() != DType::U32 {
        bail!("sparse dots on CUDA: needs f32 weights and u32 indices");
    }
    let (w, idx, g) = (w.contiguous()?, idx.contiguous()?, g.contiguous()?);
    let (wi, ii, gi) = (
        CudaInput::new(&w, "sparse dots")?,
        CudaInput::new(&idx, "sparse dots")?,
        CudaInput::new(&g, "sparse dots")?,
    );
    let dev = wi.device();
    let (k_i, d_i) = (i32_arg(k, "code k")?, i32_arg(d, "width")?);
    // SAFETY: the kernel writes every element of the rows × k output.
    let out = unsafe { dev.alloc::<f32>((rows * k).max(1))? };
    if rows > 0 && k > 0 {
        let func = dev.get_or_load_custom_func("sparse_dots_f32", super::MODULE, super::PTX)?;
        let (wv, iv, gv) = (wi.view::<f32>()?, ii.view::<u32>()?, gi.view::<f32>()?);
        let mut b = func.builder();
        b.arg(&wv).arg(&iv).arg(&gv).arg(&out).arg(&k_i).arg(&d_i);
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: (4 * d) as u32,
        };
        // SAFETY: arguments match `sparse_dots_f32` in sparse_code.cu.
        unsafe { b.launch(cfg) }.w()?;
    }
    Ok(wrap(out, &dev, (rows, k)))
}

/// One code's outer products with rows `x`: latent indices and values `[rows, k]`, and
/// `x` `[rows, d]`.
pub struct OuterTerm<'a> {
    /// Latent indices (u32).
    pub idx: &'a Tensor,
    /// Their values (f32); zeros add nothing.
    pub vals: &'a Tensor,
    /// The rows multiplied (f32).
    pub x: &'a Tensor,
}

/// `Σ_terms Σ_(r, j) vals[r, j] · x[r]` added into row `idx[r, j]` of a zero `[n, d]` matrix.
pub fn outer_sum(n: usize, d: usize, terms: &[OuterTerm<'_>]) -> Result<Tensor> {
    let Some(first) = terms.first() else {
        bail!("sparse outer sum: no term");
    };
    let candle_core::Device::Cuda(dev) = first.x.device() else {
        bail!("sparse outer sum: rows are not on a CUDA device");
    };
    let dev = dev.clone();
    let acc = dev.alloc_zeros::<f32>((n * d).max(1))?;
    let func = dev.get_or_load_custom_func("sparse_outer_add_f32", super::MODULE, super::PTX)?;
    for t in terms {
        let (rows, k) = t.idx.dims2()?;
        if t.vals.dims() != [rows, k] || t.x.dims() != [rows, d] {
            bail!(
                "sparse outer sum: code {:?} / {:?} and rows {:?} do not match [{rows}, {k}], \
                 [{rows}, {d}]",
                t.idx.dims(),
                t.vals.dims(),
                t.x.dims()
            );
        }
        if t.idx.dtype() != DType::U32 || t.vals.dtype() != DType::F32 || t.x.dtype() != DType::F32
        {
            bail!("sparse outer sum on CUDA: needs u32 indices and f32 values and rows");
        }
        if rows == 0 || k == 0 {
            continue;
        }
        let (idx, vals, x) = (t.idx.contiguous()?, t.vals.contiguous()?, t.x.contiguous()?);
        let (ii, vi, xi) = (
            CudaInput::new(&idx, "sparse outer sum")?,
            CudaInput::new(&vals, "sparse outer sum")?,
            CudaInput::new(&x, "sparse outer sum")?,
        );
        let (k_i, d_i) = (i32_arg(k, "code k")?, i32_arg(d, "width")?);
        let (iv, vv, xv) = (ii.view::<u32>()?, vi.view::<f32>()?, xi.view::<f32>()?);
        let mut b = func.builder();
        b.arg(&acc).arg(&iv).arg(&vv).arg(&xv).arg(&k_i).arg(&d_i);
        // SAFETY: arguments match `sparse_outer_add_f32`; every index of a code is below `n`
        // (codes are drawn from `n` latents), so the kernel writes only inside `acc`.
        unsafe { b.launch(tiles(rows, d, 8 * k)) }.w()?;
    }
    Ok(wrap(acc, &dev, (n, d)))
}
