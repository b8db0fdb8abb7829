//! One Adam step of an f32 tensor on CUDA in one pass (`adam.cu`), out of place.

use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::{DType, Result, Tensor, bail};

use super::cuda_call::{CudaInput, elementwise_launch, wrap};

/// Adam's constants for one step: decays, `lr / (1 - b1^t)`, `sqrt(1 - b2^t)` and epsilon.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Learning rate over the first moment's bias correction.
    pub lr_bc1: f32,
    /// Square root of the second moment's bias correction.
    pub bc2_sqrt: f32,
    /// Denominator epsilon.
    pub eps: f32,
}

/// The updated (parameter, first moment, second moment) of `p` with gradient `g`.
pub fn adam(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, s: AdamStep) -> Result<[Tensor; 3]> {
    for (t, what) in [(g, "gradient"), (m, "first moment"), (v, "second moment")] {
        if t.dims() != p.dims() || t.dtype() != DType::F32 {
            bail!(
                "adam: the {what} {:?} {:?} does not match the parameter",
                t.dims(),
                t.dtype()
            );
        }
    }
    if p.dtype() != DType::F32 {
        bail!("adam on CUDA: f32 parameters only, got {:?}", p.dtype());
    }
    let n = p.elem_count();
    let (p, g, m, v) = (
        p.contiguous()?,
        g.contiguous()?,
        m.contiguous()?,
        v.contiguous()?,
    );
    let (pi, gi, mi, vi) = (
        CudaInput::new(&p, "adam")?,
        CudaInput::new(&g, "adam")?,
        CudaInput::new(&m, "adam")?,
        CudaInput::new(&v, "adam")?,
    );
    let dev = pi.device();
    // SAFETY: the kernel writes every element of the three outputs.
    let (po, mo, vo) = unsafe {
        (
            dev.alloc::<f32>(n.max(1))?,
            dev.alloc::<f32>(n.max(1))?,
            dev.alloc::<f32>(n.max(1))?,
        )
    };
    if n > 0 {
        let func = dev.get_or_load_custom_func("adam_f32", super::MODULE, super::PTX)?;
        let (pv, gv, mv, vv) = (
            pi.view::<f32>()?,
            gi.view::<f32>()?,
            mi.view::<f32>()?,
            vi.view::<f32>()?,
        );
        let n_u = n as u64;
        let mut b = func.builder();
        b.arg(&pv).arg(&gv).arg(&mv).arg(&vv);
        b.arg(&po).arg(&mo).arg(&vo).arg(&n_u);
        b.arg(&s.beta1)
            .arg(&s.beta2)
            .arg(&s.lr_bc1)
            .arg(&s.bc2_sqrt)
            .arg(&s.eps);
        // SAFETY: arguments match `adam_f32` in adam.cu.
        unsafe { b.launch(elementwise_launch(n)) }.w()?;
    }
    let shape = p.shape().clone();
    Ok([
        wrap(po, &dev, shape.clone()),
        wrap(mo, &dev, shape.clone()),
        wrap(vo, &dev, shape),
    ])
}
