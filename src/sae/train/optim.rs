//! Optimisation pieces of the recipe: Adam, the warm-up/decay schedule, gradient clipping,
//! unit-norm decoder rows and the geometric-median initialisation of `b_dec`.

use anyhow::{Result, bail};
use candle_core::{DType, Tensor};

use super::grad::Params;

/// Adam's first-moment decay (PyTorch default).
pub const BETA1: f64 = 0.9;
/// Adam's second-moment decay (PyTorch default).
pub const BETA2: f64 = 0.999;
/// Adam's denominator epsilon (PyTorch default).
pub const EPS: f64 = 1e-8;

/// Adam state: first and second moments and the number of steps taken.
#[derive(Debug, Clone)]
pub struct Adam {
    /// First moments.
    pub m: Params,
    /// Second moments.
    pub v: Params,
    /// Steps taken so far.
    pub t: u64,
}

impl Adam {
    /// Fresh state (zero moments) for parameters shaped like `p`.
    pub fn new(p: &Params) -> Result<Self> {
        Ok(Self {
            m: p.zeros_like()?,
            v: p.zeros_like()?,
            t: 0,
        })
    }

    /// One update of `p` with gradient `g` at learning rate `lr`, as `torch.optim.Adam` does it.
    pub fn step(&mut self, p: &mut Params, g: &Params, lr: f64) -> Result<()> {
        self.t += 1;
        let t = self.t as i32;
        let bc1 = 1.0 - BETA1.powi(t);
        let bc2_sqrt = (1.0 - BETA2.powi(t)).sqrt();
        let update =
            |param: &Tensor, grad: &Tensor, m: &Tensor, v: &Tensor| -> Result<[Tensor; 3]> {
                #[cfg(feature = "cuda")]
                if param.device().is_cuda() && param.dtype() == DType::F32 {
                    let step = crate::kernels::adam::AdamStep {
                        beta1: BETA1 as f32,
                        beta2: BETA2 as f32,
                        lr_bc1: (lr / bc1) as f32,
                        bc2_sqrt: bc2_sqrt as f32,
                        eps: EPS as f32,
                    };
                    return Ok(crate::kernels::adam::adam(param, grad, m, v, step)?);
                }
                let m = (m.affine(BETA1, 0.0)? + grad.affine(1.0 - BETA1, 0.0)?)?;
                let v = (v.affine(BETA2, 0.0)? + grad.sqr()?.affine(1.0 - BETA2, 0.0)?)?;
                let denom = v.sqrt()?.affine(1.0 / bc2_sqrt, EPS)?;
                let param = (param - (&m / denom)?.affine(lr / bc1, 0.0)?)?;
                Ok([param, m, v])
            };
        let [w_enc, m0, v0] = update(&p.w_enc, &g.w_enc, &self.m.w_enc, &self.v.w_enc)?;
        let [b_enc, m1, v1] = update(&p.b_enc, &g.b_enc, &self.m.b_enc, &self.v.b_enc)?;
        let [w_dec, m2, v2] = update(&p.w_dec, &g.w_dec, &self.m.w_dec, &self.v.w_dec)?;
        let [b_dec, m3, v3] = update(&p.b_dec, &g.b_dec, &self.m.b_dec, &self.v.b_dec)?;
        *p = Params {
            w_enc,
            b_enc,
            w_dec,
            b_dec,
        };
        self.m = Params::from_array([m0, m1, m2, m3]);
        self.v = Params::from_array([v0, v1, v2, v3]);
        Ok(())
    }
}

/// Learning rate of optimizer step `step` (0-based) out of `total`.
///
/// Linear warm-up over `warmup` steps, then linear decay towards 0 at `total`. Unlike
/// transformers' schedule, the first step already moves (rate `base / warmup`) and the last one
/// still does (rate `base / (total - warmup)`), so no step is spent at rate 0.
pub fn lr_at(step: u64, base: f64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let left = total.saturating_sub(step) as f64;
    let span = total.saturating_sub(warmup).max(1) as f64;
    base * (left / span).clamp(0.0, 1.0)
}

/// Scale all gradients so their joint L2 norm is at most `max_norm`; returns the norm before.
///
/// Errors when the norm is not finite, so a diverging run stops before it corrupts parameters.
pub fn clip_grad_norm(g: &mut Params, max_norm: f64) -> Result<f64> {
    let mut sq = 0.0;
    for t in g.tensors() {
        sq += t
            .sqr()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
    }
    let norm = sq.sqrt();
    if !norm.is_finite() {
        bail!("the gradient norm is {norm}; training diverged (try a lower --lr)");
    }
    // The same coefficient as torch.nn.utils.clip_grad_norm_, applied only when it shrinks.
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        *g = g.map(|t| Ok(t.affine(coef, 0.0)?))?;
    }
    Ok(norm)
}

/// Remove from each decoder-row gradient its component along that (unit) row.
///
/// With unit-norm rows this keeps the step tangent to the sphere, so the later renormalisation
/// changes little.
pub fn remove_parallel_component(g_wdec: &Tensor, w_dec: &Tensor) -> Result<Tensor> {
    let along = (g_wdec * w_dec)?.sum_keepdim(1)?;
    Ok((g_wdec - w_dec.broadcast_mul(&along)?)?)
}

/// Rows divided by `norm + f32::EPSILON`, as the original's `set_decoder_norm_to_unit_norm`.
pub fn normalize_rows(w: &Tensor) -> Result<Tensor> {
    let norm = w
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .affine(1.0, f32::EPSILON as f64)?;
    Ok(w.broadcast_div(&norm)?)
}

/// Geometric median of the rows of `x` (`[rows, d]`) by Weiszfeld's algorithm.
///
/// Starts at the mean, weights every row by `1 / distance`, and stops after `max_iter` rounds
/// or when the estimate moves less than `tol`. Distances are floored at 1e-12 so that a row lying
/// exactly on the estimate does not divide by zero (the original has no such guard).
pub fn geometric_median(x: &Tensor, max_iter: usize, tol: f64) -> Result<Tensor> {
    let (rows, _) = x.dims2()?;
    if rows == 0 {
        bail!("geometric median of no rows");
    }
    let mut guess = x.mean_keepdim(0)?;
    for _ in 0..max_iter {
        let dist = x.broadcast_sub(&guess)?.sqr()?.sum_keepdim(1)?.sqrt()?;
        let w = dist.maximum(1e-12)?.recip()?;
        let w = w.broadcast_div(&w.sum_all()?)?;
        let next = x.broadcast_mul(&w)?.sum_keepdim(0)?;
        let moved = (&next - &guess)?
            .sqr()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        guess = next;
        if moved.sqrt() < tol {
            break;
        }
    }
    Ok(guess.squeeze(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn schedule_warms_up_and_decays() {
        assert!((lr_at(0, 1.0, 4, 10) - 0.25).abs() < 1e-12);
        assert!((lr_at(3, 1.0, 4, 10) - 1.0).abs() < 1e-12);
        assert!((lr_at(4, 1.0, 4, 10) - 1.0).abs() < 1e-12);
        assert!((lr_at(9, 1.0, 4, 10) - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(lr_at(10, 1.0, 4, 10), 0.0);
        assert!((lr_at(0, 2.0, 0, 5) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn adam_first_step_moves_by_lr_against_the_gradient_sign() {
        let p0 = Params::from_array([
            t(&[1.0, 2.0], &[1, 2]),
            t(&[0.0], &[1]),
            t(&[1.0, 0.0], &[1, 2]),
            t(&[0.5, -0.5], &[2]),
        ]);
        let g = Params::from_array([
            t(&[3.0, -0.001], &[1, 2]),
            t(&[0.0], &[1]),
            t(&[1.0, 1.0], &[1, 2]),
            t(&[-2.0, 2.0], &[2]),
        ]);
        let mut p = p0.clone();
        let mut adam = Adam::new(&p).unwrap();
        adam.step(&mut p, &g, 0.1).unwrap();
        let w = p.w_enc.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            (w[0] - 0.9).abs() < 1e-5 && (w[1] - 2.1).abs() < 1e-4,
            "{w:?}"
        );
        let b = p.b_enc.to_vec1::<f32>().unwrap();
        assert_eq!(b, vec![0.0]);
        assert_eq!(adam.t, 1);
    }

    #[test]
    fn clipping_scales_to_the_limit_and_rejects_nan() {
        let mut g = Params::from_array([
            t(&[3.0, 0.0], &[1, 2]),
            t(&[4.0], &[1]),
            t(&[0.0, 0.0], &[1, 2]),
            t(&[0.0, 0.0], &[2]),
        ]);
        let norm = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let after = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        let mut bad = g.clone();
        bad.b_dec = t(&[f32::NAN, 0.0], &[2]);
        assert!(
            clip_grad_norm(&mut bad, 1.0)
                .unwrap_err()
                .to_string()
                .contains("diverged")
        );
    }

    #[test]
    fn parallel_component_is_removed_and_rows_normalised() {
        let w = normalize_rows(&t(&[3.0, 4.0, 0.0, 2.0], &[2, 2])).unwrap();
        let rows = w.to_vec2::<f32>().unwrap();
        assert!((rows[0][0] - 0.6).abs() < 1e-6 && (rows[1][1] - 1.0).abs() < 1e-6);
        let g = remove_parallel_component(&t(&[1.0, 1.0, 5.0, 7.0], &[2, 2]), &w).unwrap();
        let dots = (&g * &w).unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap();
        assert!(dots.iter().all(|d| d.abs() < 1e-6), "{dots:?}");
        assert_eq!(g.to_vec2::<f32>().unwrap()[1], vec![5.0, 0.0]);
    }

    #[test]
    fn geometric_median_resists_an_outlier() {
        // Four points around the origin plus one far away: the mean moves, the median barely does.
        let x = t(
            &[1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0, 100.0, 100.0],
            &[5, 2],
        );
        let m = geometric_median(&x, 100, 1e-5)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(m[0].abs() < 0.5 && m[1].abs() < 0.5, "{m:?}");
        let same = t(&[2.0, 3.0, 2.0, 3.0], &[2, 2]);
        let m = geometric_median(&same, 100, 1e-5)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(m, vec![2.0, 3.0]);
    }
}
