//! Loss and hand-written gradients of a TopK SAE on one batch: FVU, AuxK and multi-TopK.
//!
//! The gradients are written out rather than taken from candle's autograd because the top-k
//! selection is not differentiable in candle and because only `k` of a row's `N` latents carry
//! a gradient: every product through a code goes through [`super::sparse`], which never builds
//! the dense `[rows, N]` block. A finite-difference test below pins every term.

use anyhow::{Context, Result, bail};
use candle_core::{DType, Tensor};

use super::sparse::{self, Code};
use crate::sae::{Sae, SaeConfig, topk_rows};
use crate::util::phases;

/// Tensor names of the four parameters, as PyTorch writes them.
pub const PARAM_NAMES: [&str; 4] = ["encoder.weight", "encoder.bias", "W_dec", "b_dec"];

/// The four SAE parameters (or a gradient or moment of the same shapes).
#[derive(Debug, Clone)]
pub struct Params {
    /// Encoder matrix `[N, d]`.
    pub w_enc: Tensor,
    /// Encoder bias `[N]`.
    pub b_enc: Tensor,
    /// Decoder matrix `[N, d]`.
    pub w_dec: Tensor,
    /// Decoder bias `[d]`.
    pub b_dec: Tensor,
}

impl Params {
    /// Copies of an SAE's parameters.
    pub fn from_sae(sae: &Sae) -> Self {
        Self {
            w_enc: sae.w_enc().clone(),
            b_enc: sae.b_enc().clone(),
            w_dec: sae.w_dec().clone(),
            b_dec: sae.b_dec().clone(),
        }
    }

    /// An SAE holding these parameters.
    pub fn to_sae(&self, cfg: SaeConfig, hookpoint: &str) -> Result<Sae> {
        Sae::from_tensors(
            cfg,
            hookpoint.to_string(),
            self.w_enc.clone(),
            self.b_enc.clone(),
            self.w_dec.clone(),
            self.b_dec.clone(),
        )
    }

    /// Zeros of the same shapes, dtype and device.
    pub fn zeros_like(&self) -> Result<Self> {
        self.map(|t| Ok(t.zeros_like()?))
    }

    /// The tensors in [`PARAM_NAMES`] order.
    pub fn tensors(&self) -> [&Tensor; 4] {
        [&self.w_enc, &self.b_enc, &self.w_dec, &self.b_dec]
    }

    /// Build from tensors in [`PARAM_NAMES`] order.
    pub fn from_array([w_enc, b_enc, w_dec, b_dec]: [Tensor; 4]) -> Self {
        Self {
            w_enc,
            b_enc,
            w_dec,
            b_dec,
        }
    }

    /// Apply `f` to every tensor.
    pub fn map(&self, mut f: impl FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(Self {
            w_enc: f(&self.w_enc)?,
            b_enc: f(&self.b_enc)?,
            w_dec: f(&self.w_dec)?,
            b_dec: f(&self.b_dec)?,
        })
    }

    /// dtype of the parameters.
    pub fn dtype(&self) -> DType {
        self.w_enc.dtype()
    }

    /// Dictionary width N.
    pub fn num_latents(&self) -> usize {
        self.w_enc.dims().first().copied().unwrap_or(0)
    }
}

/// What the loss includes besides the FVU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossOptions {
    /// Latents kept per row.
    pub k: usize,
    /// Weight of the AuxK term (0 turns it off).
    pub auxk_alpha: f64,
    /// Add the 4k reconstruction term, weighted 1/8.
    pub multi_topk: bool,
}

/// Loss terms and firing statistics of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchLoss {
    /// Fraction of variance unexplained by the top-k reconstruction.
    pub fvu: f64,
    /// AuxK term before `auxk_alpha` (0 when no latent is dead).
    pub auxk: f64,
    /// Multi-TopK FVU (0 when off).
    pub multi_topk: f64,
    /// `fvu + auxk_alpha * auxk + multi_topk / 8`.
    pub total: f64,
    /// Mean number of latents with a positive activation per row.
    pub l0: f64,
    /// Distinct latents with a positive activation in some row, ascending.
    pub fired: Vec<u32>,
}

/// Loss of `x` (`[rows, d]`) and its gradient with respect to every parameter.
///
/// `dead` marks latents (length N) that feed the AuxK term. Following the TopK paper, AuxK
/// asks the top `d/2` dead latents to reconstruct the residual `x - x̂` of the main code
/// (held constant), scaled by `min(dead / (d/2), 1)` and normalised by the batch variance.
pub fn loss_and_grads(
    p: &Params,
    x: &Tensor,
    opts: &LossOptions,
    dead: Option<&[bool]>,
) -> Result<(BatchLoss, Params)> {
    loss_and_grads_with(p, x, opts, dead, None)
}

/// The encoder's linear part `xc · W_encᵀ`, `[rows, N]` (bias and ReLU not applied). With f32
/// weights on CUDA it is a bf16 GEMM accumulating in f32, as sparsify's autocast runs it: the
/// step's one dense product, 4.4 TFLOP at 131072 latents and 4096 rows of 4096.
fn encoder_linear(xc: &Tensor, w_enc: &Tensor) -> Result<Tensor> {
    if xc.device().is_cuda() && xc.dtype() == DType::F32 {
        let (x, w) = (xc.to_dtype(DType::BF16)?, w_enc.to_dtype(DType::BF16)?);
        return Ok(x.matmul(&w.t()?)?);
    }
    Ok(xc.matmul(&w_enc.t()?)?)
}

/// Whether the main code is selected by the fused CUDA bias + ReLU + top-k kernel.
fn fused_selection(lin: &Tensor, k: usize) -> bool {
    cfg!(feature = "cuda")
        && lin.device().is_cuda()
        && !crate::kernels::fused_disabled()
        && k <= 1024
}

/// The top `k` latents of `relu(lin + b_enc)` by the fused kernel, values in f32.
#[cfg(feature = "cuda")]
fn select_fused(lin: &Tensor, b_enc: &Tensor, k: usize) -> Result<Code> {
    let bias = b_enc.to_dtype(lin.dtype())?;
    let (vals, idx) = crate::kernels::topk::sae_topk(lin, &bias, k)?;
    Ok(Code {
        idx,
        vals: vals.to_dtype(b_enc.dtype())?,
    })
}

#[cfg(not(feature = "cuda"))]
fn select_fused(_: &Tensor, _: &Tensor, _: usize) -> Result<Code> {
    bail!("the fused SAE top-k needs a build with the `cuda` feature")
}

/// The top `k` latents of `pre` with their activations gathered in the parameter dtype.
fn select(pre: &Tensor, k: usize) -> Result<Code> {
    let (_, idx) = topk_rows(pre, k)?;
    let vals = pre.gather(&idx, 1)?;
    Ok(Code { idx, vals })
}

/// Gradient on the selected pre-activations from `g = dL/d(reconstruction)` through `code`, as
/// a code on the same latents.
///
/// Only selected entries with a positive activation pass: ReLU's derivative is 0 at 0.
fn code_grad(g: &Tensor, w_dec: &Tensor, code: &Code) -> Result<Code> {
    let d_acts = sparse::dots(w_dec, &code.idx, g)?;
    let live = code.vals.gt(0.0)?.to_dtype(code.vals.dtype())?;
    Ok(Code {
        idx: code.idx.clone(),
        vals: (d_acts * live)?,
    })
}

fn sum_sq(t: &Tensor) -> Result<f64> {
    Ok(t.sqr()?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

/// [`loss_and_grads`] with an optional fixed AuxK target (the finite-difference test holds it
/// constant, as the gradient does).
pub(crate) fn loss_and_grads_with(
    p: &Params,
    x: &Tensor,
    opts: &LossOptions,
    dead: Option<&[bool]>,
    aux_target: Option<&Tensor>,
) -> Result<(BatchLoss, Params)> {
    let (rows, d) = x.dims2().context("a training batch must be [rows, d_in]")?;
    let n = p.num_latents();
    if d != p.b_dec.dims1()? {
        bail!(
            "training batch rows have width {d} but the SAE has d_in = {}",
            p.b_dec.dims1()?
        );
    }
    let x = x.to_dtype(p.dtype())?;
    let dev = x.device();
    let tv = sum_sq(&x.broadcast_sub(&x.mean_keepdim(0)?)?)?;
    if !tv.is_finite() {
        bail!(
            "the training batch holds non-finite values (NaN or infinity); check the model's activations"
        );
    }
    if tv <= 0.0 {
        bail!(
            "a training batch of {rows} rows has zero variance (every row is the same), so FVU is \
             undefined; select more varied tokens (e.g. --tokens image) or raise the batch size"
        );
    }
    let xc = x.broadcast_sub(&p.b_dec)?;
    phases::mark(dev, "loss: batch variance");
    let lin = encoder_linear(&xc, &p.w_enc)?;
    phases::mark(dev, "loss: encoder GEMM");
    let num_dead = dead.map_or(0, |m| m.iter().filter(|&&b| b).count());
    let auxk_on = num_dead > 0 && opts.auxk_alpha > 0.0;
    let fused = fused_selection(&lin, opts.k);
    // The ReLU'd pre-activations, `[rows, N]`: built only where a term needs them whole.
    let pre = match (fused, auxk_on || opts.multi_topk) {
        (true, false) => None,
        _ => Some(lin.to_dtype(p.dtype())?.broadcast_add(&p.b_enc)?.relu()?),
    };
    let main = match &pre {
        Some(pre) if !fused => select(pre, opts.k)?,
        _ => select_fused(&lin, &p.b_enc, opts.k)?,
    };
    phases::mark(dev, "loss: top-k");
    let recon = sparse::decode(&p.w_dec, &main)?.broadcast_add(&p.b_dec)?;
    phases::mark(dev, "loss: decode");
    let err = (&recon - &x)?;
    let fvu = sum_sq(&err)? / tv;
    let g = err.affine(2.0 / tv, 0.0)?;
    let mut g_bdec = g.sum(0)?;
    // Each code with the gradient on its reconstruction (for the decoder), and the gradient on
    // its pre-activations (for the encoder).
    let mut pre_grads = vec![code_grad(&g, &p.w_dec, &main)?];
    phases::mark(dev, "loss: code gradient (dots)");
    let mut dec_terms: Vec<(Code, Tensor)> = Vec::new();

    let mut auxk = 0.0;
    if let (Some(mask), Some(pre)) = (dead.filter(|_| auxk_on), &pre) {
        if mask.len() != n {
            bail!(
                "dead-latent mask has {} entries for {n} latents",
                mask.len()
            );
        }
        let k_aux = (d / 2).max(1);
        let scale = (num_dead as f64 / k_aux as f64).min(1.0);
        let k_aux = k_aux.min(num_dead);
        let m: Vec<f32> = mask.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
        let m = Tensor::from_vec(m, n, pre.device())?.to_dtype(pre.dtype())?;
        // Live latents drop to -1, below every (non-negative) dead pre-activation.
        let masked = pre.broadcast_mul(&m)?.broadcast_add(&(m - 1.0)?)?;
        let (_, idx) = topk_rows(&masked, k_aux)?;
        let vals = pre.gather(&idx, 1)?;
        let aux = Code { idx, vals };
        let e_hat = sparse::decode(&p.w_dec, &aux)?;
        let target = match aux_target {
            Some(t) => t.to_dtype(p.dtype())?,
            None => err.neg()?,
        };
        let diff = (e_hat - target)?;
        auxk = scale * sum_sq(&diff)? / tv;
        let h = diff.affine(2.0 * opts.auxk_alpha * scale / tv, 0.0)?;
        pre_grads.push(code_grad(&h, &p.w_dec, &aux)?);
        dec_terms.push((aux, h));
    }

    let mut multi = 0.0;
    if let (true, Some(pre)) = (opts.multi_topk, &pre) {
        let code4 = select(pre, (4 * opts.k).min(n))?;
        let err4 = (sparse::decode(&p.w_dec, &code4)?.broadcast_add(&p.b_dec)? - &x)?;
        multi = sum_sq(&err4)? / tv;
        let g4 = err4.affine(2.0 / (8.0 * tv), 0.0)?;
        g_bdec = (g_bdec + g4.sum(0)?)?;
        pre_grads.push(code_grad(&g4, &p.w_dec, &code4)?);
        dec_terms.push((code4, g4));
    }

    let mut decoder: Vec<(&Code, &Tensor)> = vec![(&main, &g)];
    decoder.extend(dec_terms.iter().map(|(c, t)| (c, t)));
    phases::mark(dev, "loss: AuxK and multi-TopK");
    let g_wdec = sparse::outer_sum(n, &decoder)?;
    phases::mark(dev, "loss: decoder gradient (outer sums)");
    let encoder: Vec<(&Code, &Tensor)> = pre_grads.iter().map(|c| (c, &xc)).collect();
    let g_wenc = sparse::outer_sum(n, &encoder)?;
    phases::mark(dev, "loss: encoder gradient (outer sums)");
    let g_benc = sparse::latent_sum(n, &pre_grads.iter().collect::<Vec<_>>())?;
    // x - b_dec feeds the encoder, so b_dec also gets the encoder path's gradient, negated.
    let mut g_bdec = g_bdec;
    for c in &pre_grads {
        g_bdec = (g_bdec - sparse::decode(&p.w_enc, c)?.sum(0)?)?;
    }

    phases::mark(dev, "loss: bias gradients");
    let act_host: Vec<f32> = main.vals.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let idx_host: Vec<u32> = main.idx.flatten_all()?.to_vec1()?;
    let mut seen = vec![false; n];
    let mut active = 0usize;
    for (&v, &i) in act_host.iter().zip(&idx_host) {
        if v > 0.0 {
            active += 1;
            seen[i as usize] = true;
        }
    }
    let fired = (0..n as u32).filter(|&i| seen[i as usize]).collect();
    let loss = BatchLoss {
        fvu,
        auxk,
        multi_topk: multi,
        total: fvu + opts.auxk_alpha * auxk + multi / 8.0,
        l0: active as f64 / rows.max(1) as f64,
        fired,
    };
    let grads = Params {
        w_enc: g_wenc,
        b_enc: g_benc,
        w_dec: g_wdec,
        b_dec: g_bdec,
    };
    Ok((loss, grads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SeededRng;
    use candle_core::Device;

    fn tensor(rng: &mut SeededRng, shape: &[usize], scale: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| rng.normal() * scale).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn params(rng: &mut SeededRng, n: usize, d: usize) -> Params {
        Params {
            w_enc: tensor(rng, &[n, d], 0.6),
            b_enc: tensor(rng, &[n], 0.3).affine(1.0, 0.4).unwrap(),
            w_dec: tensor(rng, &[n, d], 0.6),
            b_dec: tensor(rng, &[d], 0.2),
        }
    }

    fn flat(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn with_entry(t: &Tensor, i: usize, delta: f64) -> Tensor {
        let mut v = flat(t);
        v[i] += delta;
        Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap()
    }

    /// Central differences in f64 against the analytic gradient, for every parameter entry,
    /// with AuxK (fixed target) and multi-TopK on.
    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = SeededRng::new(3);
        let (n, d, rows) = (7, 4, 6);
        let p = params(&mut rng, n, d);
        let x = tensor(&mut rng, &[rows, d], 1.0);
        let opts = LossOptions {
            k: 2,
            auxk_alpha: 0.7,
            multi_topk: true,
        };
        let dead = [true, false, true, false, true, true, false];
        let (base, grads) = loss_and_grads(&p, &x, &opts, Some(&dead)).unwrap();
        assert!(base.auxk > 0.0 && base.multi_topk > 0.0, "{base:?}");
        // The AuxK target is x - x̂ at the unperturbed point, held fixed as the gradient assumes.
        let target = {
            let pre = x
                .broadcast_sub(&p.b_dec)
                .unwrap()
                .matmul(&p.w_enc.t().unwrap())
                .unwrap()
                .broadcast_add(&p.b_enc)
                .unwrap()
                .relu()
                .unwrap();
            let code = select(&pre, opts.k).unwrap();
            let dense = Tensor::zeros((rows, n), DType::F64, &Device::Cpu)
                .unwrap()
                .scatter_add(&code.idx, &code.vals, 1)
                .unwrap();
            let recon = dense
                .matmul(&p.w_dec)
                .unwrap()
                .broadcast_add(&p.b_dec)
                .unwrap();
            (&x - recon).unwrap()
        };
        let loss_at = |q: &Params| {
            loss_and_grads_with(q, &x, &opts, Some(&dead), Some(&target))
                .unwrap()
                .0
                .total
        };
        assert!((loss_at(&p) - base.total).abs() < 1e-12);
        let h = 1e-6;
        let mut checked = 0;
        for which in 0..4 {
            let t = p.tensors()[which].clone();
            let g = flat(grads.tensors()[which]);
            for (i, &analytic) in g.iter().enumerate() {
                let bump = |delta: f64| {
                    let mut arr = [
                        p.w_enc.clone(),
                        p.b_enc.clone(),
                        p.w_dec.clone(),
                        p.b_dec.clone(),
                    ];
                    arr[which] = with_entry(&t, i, delta);
                    loss_at(&Params::from_array(arr))
                };
                let fd = (bump(h) - bump(-h)) / (2.0 * h);
                assert!(
                    (fd - analytic).abs() <= 1e-6 + 1e-5 * fd.abs(),
                    "{}[{i}]: analytic {analytic} vs finite difference {fd}",
                    PARAM_NAMES[which]
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 2 * n * d + n + d);
    }

    #[test]
    fn perfect_reconstruction_has_zero_fvu_and_counts_fired() {
        // Two latents along the axes, b_dec 0: rows on the axes are reconstructed exactly.
        let dev = Device::Cpu;
        let eye = Tensor::new(&[[1.0f64, 0.0], [0.0, 1.0]], &dev).unwrap();
        let p = Params {
            w_enc: eye.clone(),
            b_enc: Tensor::zeros(2, DType::F64, &dev).unwrap(),
            w_dec: eye,
            b_dec: Tensor::zeros(2, DType::F64, &dev).unwrap(),
        };
        let x = Tensor::new(&[[2.0f64, 0.0], [0.0, 3.0], [1.5, 0.0]], &dev).unwrap();
        let opts = LossOptions {
            k: 1,
            auxk_alpha: 0.0,
            multi_topk: false,
        };
        let (loss, g) = loss_and_grads(&p, &x, &opts, None).unwrap();
        assert!(loss.fvu.abs() < 1e-12, "{loss:?}");
        assert_eq!(loss.fired, vec![0, 1]);
        assert!((loss.l0 - 1.0).abs() < 1e-12);
        assert!(flat(&g.w_dec).iter().all(|v| v.abs() < 1e-12));
        let same = Tensor::new(&[[1.0f64, 1.0], [1.0, 1.0]], &dev).unwrap();
        let err = loss_and_grads(&p, &same, &opts, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("zero variance"), "{err}");
        let wide = Tensor::zeros((2, 3), DType::F64, &dev).unwrap();
        assert!(
            loss_and_grads(&p, &wide, &opts, None)
                .unwrap_err()
                .to_string()
                .contains("d_in = 2")
        );
    }
}
