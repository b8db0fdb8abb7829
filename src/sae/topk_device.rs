//! Exact top-k on the device by a tournament of chunked sorts.
//!
//! candle's `arg_sort_last_dim` sorts a row inside one GPU thread block, so it cannot sort a
//! 131072-wide row of SAE pre-activations directly. Splitting a row into chunks of [`CHUNK`]
//! columns, sorting each and keeping its best k, then repeating on the survivors, gives the
//! exact top-k (every global top-k element is in its chunk's top-k) with only device ops:
//! sort, gather, narrow. Each round shrinks a row by `CHUNK / k`, so 131072 columns with k = 256
//! take five rounds and never leave the device.

use anyhow::{Result, bail};
use candle_core::{D, DType, Tensor};

/// Columns sorted together in one thread block (the CUDA sort's limit is 1024).
pub const CHUNK: usize = 1024;

/// Top-k of each row of `[rows, n]`: (f32 values, u32 indices), each `[rows, k]`, best first.
///
/// Ties are broken by the device sort (not by index); callers needing a canonical order on
/// ties use the host path.
pub fn topk_rows_device(pre: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    let (rows, n) = pre.dims2()?;
    if k == 0 || k > n {
        bail!("top-k: k = {k} must be between 1 and the row width {n}");
    }
    if 2 * k > CHUNK {
        bail!("top-k on the device needs k <= {}; got {k}", CHUNK / 2);
    }
    let device = pre.device();
    let mut vals = pre.to_dtype(DType::F32)?.contiguous()?;
    // Global column index of every surviving value; None while it equals the column position.
    let mut idx: Option<Tensor> = None;
    loop {
        let width = vals.dim(1)?;
        if width <= CHUNK {
            let order = vals
                .arg_sort_last_dim(false)?
                .narrow(1, 0, k)?
                .contiguous()?;
            let top = vals.gather(&order, D::Minus1)?;
            let ids = match &idx {
                Some(g) => g.gather(&order, D::Minus1)?,
                None => order,
            };
            return Ok((top, ids));
        }
        let chunks = width.div_ceil(CHUNK);
        let pad = chunks * CHUNK - width;
        let mut ids = match idx.take() {
            Some(g) => g,
            None => Tensor::arange(0u32, width as u32, device)?
                .unsqueeze(0)?
                .broadcast_as((rows, width))?
                .contiguous()?,
        };
        if pad > 0 {
            // Pre-activations are >= 0 after the ReLU, so the padding never wins a place.
            let fill = Tensor::full(f32::MIN, (rows, pad), device)?;
            vals = Tensor::cat(&[&vals, &fill], 1)?;
            let none = Tensor::full(u32::MAX, (rows, pad), device)?;
            ids = Tensor::cat(&[&ids, &none], 1)?;
        }
        let blocks = vals.reshape((rows * chunks, CHUNK))?;
        let order = blocks
            .arg_sort_last_dim(false)?
            .narrow(1, 0, k)?
            .contiguous()?;
        vals = blocks
            .gather(&order, D::Minus1)?
            .reshape((rows, chunks * k))?;
        let ids = ids
            .reshape((rows * chunks, CHUNK))?
            .gather(&order, D::Minus1)?;
        idx = Some(ids.reshape((rows, chunks * k))?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::topk_rows;
    use crate::util::rng::SeededRng;
    use candle_core::Device;

    #[test]
    fn matches_the_host_top_k_on_wide_rows() {
        let (rows, n, k) = (3, 5000, 64);
        let mut rng = SeededRng::new(9);
        let data: Vec<f32> = (0..rows * n).map(|_| rng.uniform() as f32).collect();
        let pre = Tensor::from_vec(data, (rows, n), &Device::Cpu).unwrap();
        let (dv, di) = topk_rows_device(&pre, k).unwrap();
        let (hv, hi) = topk_rows(&pre, k).unwrap();
        assert_eq!(dv.to_vec2::<f32>().unwrap(), hv.to_vec2::<f32>().unwrap());
        assert_eq!(di.to_vec2::<u32>().unwrap(), hi.to_vec2::<u32>().unwrap());
    }

    #[test]
    fn narrow_rows_take_one_sort_and_k_is_bounded() {
        let pre = Tensor::new(&[[0.1f32, 0.9, 0.5], [0.3, 0.2, 0.7]], &Device::Cpu).unwrap();
        let (v, i) = topk_rows_device(&pre, 2).unwrap();
        assert_eq!(
            v.to_vec2::<f32>().unwrap(),
            vec![vec![0.9, 0.5], vec![0.7, 0.3]]
        );
        assert_eq!(i.to_vec2::<u32>().unwrap(), vec![vec![1, 2], vec![2, 0]]);
        assert!(topk_rows_device(&pre, 4).is_err());
    }
}
