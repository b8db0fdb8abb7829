//! Finding non-finite numbers (NaN, ±infinity) in tensors, so they are reported rather than
//! computed with: a NaN compares false everywhere and would silently drop out of a top-k.

use anyhow::Result;
use candle_core::{D, DType, Tensor};

/// Rows checked per pass: bounds the temporary that the check allocates.
const ROWS_PER_PASS: usize = 4096;

/// Index of the first row (first dimension; the entry of a 1-D tensor) holding a NaN or an
/// infinity, or `None` when every value is finite.
pub fn first_non_finite_row(t: &Tensor) -> Result<Option<usize>> {
    let t = match t.rank() {
        0 => t.reshape((1, 1))?,
        1 => t.unsqueeze(1)?,
        2 => t.clone(),
        _ => t.flatten_from(1)?,
    };
    let rows = t.dim(0)?;
    let mut start = 0;
    while start < rows {
        let n = ROWS_PER_PASS.min(rows - start);
        // 0·x is 0 for every finite x and NaN for NaN and ±inf, so a row's sum is NaN exactly
        // when the row holds a non-finite value (no overflow from large finite values).
        let flags = (t.narrow(0, start, n)?.to_dtype(DType::F32)? * 0.0)?
            .sum(D::Minus1)?
            .to_vec1::<f32>()?;
        if let Some(r) = flags.iter().position(|v| !v.is_finite()) {
            return Ok(Some(start + r));
        }
        start += n;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn finds_the_first_row_with_nan_or_infinity() {
        let dev = Device::Cpu;
        let mut v = vec![1e30f32; 5000 * 3];
        assert_eq!(
            first_non_finite_row(&Tensor::from_vec(v.clone(), (5000, 3), &dev).unwrap()).unwrap(),
            None
        );
        v[4500 * 3 + 2] = f32::NAN;
        v[4700 * 3] = f32::INFINITY;
        let t = Tensor::from_vec(v, (5000, 3), &dev).unwrap();
        assert_eq!(first_non_finite_row(&t).unwrap(), Some(4500));
        let b = Tensor::new(&[0.0f32, f32::NEG_INFINITY], &dev).unwrap();
        assert_eq!(first_non_finite_row(&b).unwrap(), Some(1));
    }
}
