//! The products of a TopK code that the training step needs, without the dense `[rows, N]`
//! block of the code: decoding through a latent-major matrix, the code's dot products with a
//! gradient, and the scatter of its outer products into a latent-major gradient.
//!
//! With f32 on CUDA these are glint's kernels (`kernels::sparse_code`), which read only the `k`
//! rows a code names; elsewhere candle's gather and index-add, a bounded block of rows at a
//! time, in a fixed order (so CPU training stays deterministic).

use anyhow::Result;
#[cfg(feature = "cuda")]
use candle_core::DType;
use candle_core::Tensor;

/// Elements of the `[rows, k, d]` gather the portable path builds at once.
const GATHER_ELEMS: usize = 1 << 24;

/// A batch's TopK code: per row `k` latent indices (u32) and their values.
pub struct Code {
    /// Latent indices `[rows, k]`.
    pub idx: Tensor,
    /// Their values `[rows, k]`, zeros where ReLU left none.
    pub vals: Tensor,
}

/// Whether `t` goes through the CUDA kernels.
#[cfg(feature = "cuda")]
fn on_kernels(t: &Tensor) -> bool {
    t.device().is_cuda() && t.dtype() == DType::F32
}

/// Row chunks of at most [`GATHER_ELEMS`] gathered elements.
fn chunks(rows: usize, k: usize, d: usize) -> impl Iterator<Item = (usize, usize)> {
    let step = (GATHER_ELEMS / (k * d).max(1)).max(1);
    (0..rows)
        .step_by(step)
        .map(move |at| (at, step.min(rows - at)))
}

/// `Σ_j vals[r, j] · w[idx[r, j]]` per row: `[rows, d]`.
pub fn decode(w: &Tensor, code: &Code) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if on_kernels(w) {
        return Ok(crate::kernels::sparse_code::decode(
            w, &code.idx, &code.vals,
        )?);
    }
    let (rows, k) = code.idx.dims2()?;
    let d = w.dim(1)?;
    let mut parts = Vec::new();
    for (at, len) in chunks(rows, k, d) {
        let idx = code.idx.narrow(0, at, len)?.flatten_all()?;
        let vals = code.vals.narrow(0, at, len)?;
        let sel = w.index_select(&idx, 0)?.reshape((len, k, d))?;
        parts.push(sel.broadcast_mul(&vals.unsqueeze(2)?)?.sum(1)?);
    }
    if parts.is_empty() {
        return Ok(Tensor::zeros((0, d), w.dtype(), w.device())?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// `g[r] · w[idx[r, j]]` for every (r, j): `[rows, k]`.
pub fn dots(w: &Tensor, idx: &Tensor, g: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if on_kernels(w) {
        return Ok(crate::kernels::sparse_code::dots(w, idx, g)?);
    }
    let (rows, k) = idx.dims2()?;
    let d = w.dim(1)?;
    let mut parts = Vec::new();
    for (at, len) in chunks(rows, k, d) {
        let flat = idx.narrow(0, at, len)?.flatten_all()?;
        let sel = w.index_select(&flat, 0)?.reshape((len, k, d))?;
        let g = g.narrow(0, at, len)?.unsqueeze(1)?;
        parts.push(sel.broadcast_mul(&g)?.sum(2)?);
    }
    if parts.is_empty() {
        return Ok(Tensor::zeros((0, k), w.dtype(), w.device())?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// `Σ_terms Σ_(r, j) code.vals[r, j] · x[r]` added into row `code.idx[r, j]` of a zero
/// `[n, d]` matrix: the gradient of a latent-major matrix through the codes.
pub fn outer_sum(n: usize, terms: &[(&Code, &Tensor)]) -> Result<Tensor> {
    let Some(&(_, x0)) = terms.first() else {
        anyhow::bail!("outer_sum needs at least one code");
    };
    let d = x0.dim(1)?;
    #[cfg(feature = "cuda")]
    if on_kernels(x0) {
        let terms: Vec<_> = terms
            .iter()
            .map(|(c, x)| crate::kernels::sparse_code::OuterTerm {
                idx: &c.idx,
                vals: &c.vals,
                x,
            })
            .collect();
        return Ok(crate::kernels::sparse_code::outer_sum(n, d, &terms)?);
    }
    let mut acc = Tensor::zeros((n, d), x0.dtype(), x0.device())?;
    for (code, x) in terms {
        let (rows, k) = code.idx.dims2()?;
        for (at, len) in chunks(rows, k, d) {
            let idx = code.idx.narrow(0, at, len)?.flatten_all()?;
            let vals = code.vals.narrow(0, at, len)?.unsqueeze(2)?;
            let rows_x = x.narrow(0, at, len)?.unsqueeze(1)?;
            let outer = vals.broadcast_mul(&rows_x)?.reshape((len * k, d))?;
            acc = acc.index_add(&idx, &outer, 0)?;
        }
    }
    Ok(acc)
}

/// `Σ_terms Σ_(r, j) code.vals[r, j]` added into entry `code.idx[r, j]` of a zero `[n]`
/// vector: the gradient of a per-latent bias through the codes.
pub fn latent_sum(n: usize, codes: &[&Code]) -> Result<Tensor> {
    let Some(first) = codes.first() else {
        anyhow::bail!("latent_sum needs at least one code");
    };
    let mut acc = Tensor::zeros(n, first.vals.dtype(), first.vals.device())?;
    for c in codes {
        acc = acc.index_add(&c.idx.flatten_all()?, &c.vals.flatten_all()?, 0)?;
    }
    Ok(acc)
}

/// Largest relative error (max |sparse − dense| / max |dense|) of the four products against
/// the dense `[rows, N]` formulation, on random codes on `device`, in f32: the check of the
/// kernels that `glint bench --train-steps` reports.
pub fn check_against_dense(device: &candle_core::Device) -> Result<f64> {
    use candle_core::DType;
    // N within the 1024 columns candle sorts in one block on CUDA (the random codes use it).
    let (rows, k, n, d) = (64, 32, 1024, 256);
    let randn = |shape: (usize, usize)| Tensor::randn(0f32, 1.0, shape, device);
    let code = || -> Result<Code> {
        // Distinct latents per row: a random permutation's first k, by sorting random keys.
        let keys = Tensor::rand(0f32, 1.0, (rows, n), device)?;
        let idx = keys
            .arg_sort_last_dim(true)?
            .narrow(1, 0, k)?
            .contiguous()?;
        let vals = randn((rows, k))?.relu()?;
        Ok(Code { idx, vals })
    };
    let dense = |c: &Code| -> Result<Tensor> {
        Ok(Tensor::zeros((rows, n), DType::F32, device)?.scatter_add(&c.idx, &c.vals, 1)?)
    };
    let rel = |a: &Tensor, b: &Tensor| -> Result<f64> {
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let scale = b.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-30);
        Ok(f64::from(diff / scale))
    };
    let (w, g, x) = (randn((n, d))?, randn((rows, d))?, randn((rows, d))?);
    let (c, c2) = (code()?, code()?);
    let (a, a2) = (dense(&c)?, dense(&c2)?);
    let decoded = rel(&decode(&w, &c)?, &a.matmul(&w)?)?;
    let all = g.matmul(&w.t()?)?;
    let dotted = rel(&dots(&w, &c.idx, &g)?, &all.gather(&c.idx, 1)?)?;
    let want = (a.t()?.matmul(&x)? + a2.t()?.matmul(&g)?)?;
    let outer = rel(&outer_sum(n, &[(&c, &x), (&c2, &g)])?, &want)?;
    let want = (a.sum(0)? + a2.sum(0)?)?;
    let summed = rel(&latent_sum(n, &[&c, &c2])?, &want)?;
    Ok(decoded.max(dotted).max(outer).max(summed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sparse_products_equal_the_dense_ones() {
        let err = check_against_dense(&candle_core::Device::Cpu).unwrap();
        assert!(err < 1e-5, "relative error {err}");
    }

    #[test]
    fn large_batches_are_gathered_in_bounded_blocks() {
        let parts: Vec<_> = chunks(10, 1 << 12, 1 << 10).collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.iter().map(|p| p.1).sum::<usize>(), 10);
        assert_eq!(parts[0], (0, 4));
        assert_eq!(chunks(0, 4, 4).count(), 0);
    }
}
