//! Transformer-layer kernels on CUDA: RMSNorm with its weight (and the residual add before it),
//! SwiGLU over the fused gate/up projection, the q/k/v split with bias and rotary embedding, and
//! linear-layer epilogues (bias, activation, residual).
//!
//! Each replaces a chain of candle's generic elementwise kernels (casts, broadcast multiplies,
//! strided copies) that together read and wrote every activation several times. Inputs must be
//! contiguous CUDA tensors of one float dtype; results record no backward, so the model uses
//! these only on its non-differentiable path.

use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::{DType, Result, Tensor, bail};

use super::cuda_call::{
    CudaInput, RowOperands, THREADS, check_float, elementwise_launch, i32_arg, kernel_name,
    vector_width, wrap,
};
use crate::with_float_type;

/// `T(x / rms(x)) * weight` over the last dimension, in f32 inside.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    norm_impl(x, None, weight, eps).map(|(_, y)| y)
}

/// The residual add fused with the next norm: `(x + delta, rms_norm(x + delta) * weight)`.
pub fn add_rms_norm(
    x: &Tensor,
    delta: &Tensor,
    weight: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let (sum, y) = norm_impl(x, Some(delta), weight, eps)?;
    Ok((sum.expect("the add variant returns the sum"), y))
}

fn norm_impl(
    x: &Tensor,
    delta: Option<&Tensor>,
    weight: &Tensor,
    eps: f64,
) -> Result<(Option<Tensor>, Tensor)> {
    let op = if delta.is_some() {
        "add_rms_norm"
    } else {
        "rms_norm"
    };
    let ops = RowOperands::new(op, x, weight, delta)?;
    let (dtype, d) = (ops.dtype, ops.width);
    let rows = ops.x.elem_count() / d.max(1);
    let xi = CudaInput::new(&ops.x, op)?;
    let wi = CudaInput::new(&ops.row, op)?;
    let di = ops
        .extra
        .as_ref()
        .map(|t| CudaInput::new(t, op))
        .transpose()?;
    let dev = xi.device();
    let (d_i, eps) = (i32_arg(d, "rms_norm width")?, eps as f32);
    let cfg = LaunchConfig {
        grid_dim: (rows.max(1) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let shape = x.shape().clone();
    with_float_type!(dtype, T, {
        // SAFETY: the kernel writes every element of its outputs.
        let y = unsafe { dev.alloc::<T>(x.elem_count())? };
        let sum = match &di {
            Some(di) => {
                let sum = unsafe { dev.alloc::<T>(x.elem_count())? };
                let func = dev.get_or_load_custom_func(
                    &kernel_name("add_rms_norm", dtype),
                    super::MODULE,
                    super::PTX,
                )?;
                let (xv, dv, wv) = (xi.view::<T>()?, di.view::<T>()?, wi.view::<T>()?);
                let mut b = func.builder();
                b.arg(&xv)
                    .arg(&dv)
                    .arg(&wv)
                    .arg(&sum)
                    .arg(&y)
                    .arg(&d_i)
                    .arg(&eps);
                // SAFETY: arguments match `add_rms_norm_*` in glint.cu.
                unsafe { b.launch(cfg) }.w()?;
                Some(wrap(sum, &dev, shape.clone()))
            }
            None => {
                let func = dev.get_or_load_custom_func(
                    &kernel_name("rms_norm", dtype),
                    super::MODULE,
                    super::PTX,
                )?;
                let (xv, wv) = (xi.view::<T>()?, wi.view::<T>()?);
                let mut b = func.builder();
                b.arg(&xv).arg(&wv).arg(&y).arg(&d_i).arg(&eps);
                // SAFETY: arguments match `rms_norm_*` in glint.cu.
                unsafe { b.launch(cfg) }.w()?;
                None
            }
        };
        Ok((sum, wrap(y, &dev, shape)))
    })
}

/// SwiGLU over the fused gate/up projection `[.., 2 * inter]`: `T(silu(gate)) * up`, `[.., inter]`.
pub fn silu_mul(gate_up: &Tensor) -> Result<Tensor> {
    let dtype = check_float(gate_up, "silu_mul")?;
    let two = gate_up.dim(candle_core::D::Minus1)?;
    if two % 2 != 0 {
        bail!("silu_mul: the last dimension {two} is not gate and up side by side");
    }
    let inter = two / 2;
    let total = gate_up.elem_count() / 2;
    let mut dims = gate_up.dims().to_vec();
    *dims.last_mut().expect("checked above") = inter;
    let gate_up = gate_up.contiguous()?;
    let gi = CudaInput::new(&gate_up, "silu_mul")?;
    let dev = gi.device();
    let (inter_i, total_u) = (i32_arg(inter, "silu_mul width")?, total as u64);
    let cfg = elementwise_launch(total.div_ceil(vector_width(dtype, inter)));
    with_float_type!(dtype, T, {
        // SAFETY: the kernel writes every element.
        let y = unsafe { dev.alloc::<T>(total.max(1))? };
        let func = dev.get_or_load_custom_func(
            &kernel_name("silu_mul", dtype),
            super::MODULE,
            super::PTX,
        )?;
        let gv = gi.view::<T>()?;
        let mut b = func.builder();
        b.arg(&gv).arg(&y).arg(&total_u).arg(&inter_i);
        // SAFETY: arguments match `silu_mul_*` in glint.cu.
        unsafe { b.launch(cfg) }.w()?;
        Ok(wrap(y, &dev, dims))
    })
}

/// Head counts and size of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct HeadShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Size of each head.
    pub head_dim: usize,
}

/// Rotary tables `[max_pos, head_dim / 2]` and the position of the first row.
#[derive(Debug, Clone, Copy)]
pub struct Rope<'a> {
    /// Cosines.
    pub cos: &'a Tensor,
    /// Sines.
    pub sin: &'a Tensor,
    /// Absolute position of the sequence's first token.
    pub offset: usize,
}

/// Split the fused projection `[b, t, (heads + 2 kv_heads) * head_dim]` into q `[b, heads, t,
/// head_dim]`, k and v `[b, kv_heads, t, head_dim]`, adding `bias` (of the projection's width)
/// if given and rotating q and k with `rope` (rotate_half convention) if given.
pub fn split_heads(
    qkv: &Tensor,
    bias: Option<&Tensor>,
    rope: Option<Rope<'_>>,
    shape: HeadShape,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dtype = check_float(qkv, "split_heads")?;
    let (b, t, width) = qkv.dims3()?;
    let HeadShape {
        heads,
        kv_heads,
        head_dim,
    } = shape;
    if width != (heads + 2 * kv_heads) * head_dim || head_dim % 2 != 0 {
        bail!("split_heads: width {width} is not ({heads} + 2 x {kv_heads}) heads of {head_dim}");
    }
    if let Some(bias) = bias
        && (bias.dims() != [width] || bias.dtype() != dtype)
    {
        bail!(
            "split_heads: bias {:?} does not match width {width}",
            bias.dims()
        );
    }
    let half = head_dim / 2;
    if let Some(r) = &rope {
        let (max_pos, tab_half) = r.cos.dims2()?;
        if tab_half != half || r.sin.dims() != r.cos.dims() || r.offset + t > max_pos {
            bail!(
                "split_heads: tables {:?} do not cover {t} positions from {}",
                r.cos.dims(),
                r.offset
            );
        }
        if r.cos.dtype() != dtype || r.sin.dtype() != dtype {
            bail!(
                "split_heads: tables are {:?}, activations {dtype:?}",
                r.cos.dtype()
            );
        }
    }
    let qkv = qkv.contiguous()?;
    let bias = bias.map(Tensor::contiguous).transpose()?;
    let tables = rope
        .map(|r| -> Result<_> { Ok((r.cos.contiguous()?, r.sin.contiguous()?)) })
        .transpose()?;
    let qi = CudaInput::new(&qkv, "split_heads")?;
    let bi = bias
        .as_ref()
        .map(|t| CudaInput::new(t, "split_heads"))
        .transpose()?;
    let ti = tables
        .as_ref()
        .map(|(c, s)| -> Result<_> {
            Ok((
                CudaInput::new(c, "split_heads")?,
                CudaInput::new(s, "split_heads")?,
            ))
        })
        .transpose()?;
    let dev = qi.device();
    let total = b * t * (heads + 2 * kv_heads) * half;
    let args = [
        i32_arg(t, "sequence length")?,
        i32_arg(heads, "heads")?,
        i32_arg(kv_heads, "kv heads")?,
        i32_arg(head_dim, "head size")?,
        i32::from(rope.is_some()),
        i32_arg(rope.map_or(0, |r| r.offset), "position offset")?,
    ];
    let (total_u, null) = (total as u64, 0u64);
    let cfg = elementwise_launch(total);
    with_float_type!(dtype, T, {
        // SAFETY: the kernel writes every element of the three outputs.
        let q = unsafe { dev.alloc::<T>((b * heads * t * head_dim).max(1))? };
        let k = unsafe { dev.alloc::<T>((b * kv_heads * t * head_dim).max(1))? };
        let v = unsafe { dev.alloc::<T>((b * kv_heads * t * head_dim).max(1))? };
        let func = dev.get_or_load_custom_func(
            &kernel_name("split_heads", dtype),
            super::MODULE,
            super::PTX,
        )?;
        let qv = qi.view::<T>()?;
        let bv = bi.as_ref().map(|b| b.view::<T>()).transpose()?;
        let tv = ti
            .as_ref()
            .map(|(c, s)| -> Result<_> { Ok((c.view::<T>()?, s.view::<T>()?)) })
            .transpose()?;
        let mut bld = func.builder();
        bld.arg(&qv);
        match &bv {
            Some(bv) => bld.arg(bv),
            None => bld.arg(&null),
        };
        match &tv {
            Some((c, s)) => bld.arg(c).arg(s),
            None => bld.arg(&null).arg(&null),
        };
        bld.arg(&q).arg(&k).arg(&v);
        for a in &args {
            bld.arg(a);
        }
        bld.arg(&total_u);
        // SAFETY: arguments match `split_heads_*` in glint.cu; null pointers mean "absent".
        unsafe { bld.launch(cfg) }.w()?;
        Ok((
            wrap(q, &dev, (b, heads, t, head_dim)),
            wrap(k, &dev, (b, kv_heads, t, head_dim)),
            wrap(v, &dev, (b, kv_heads, t, head_dim)),
        ))
    })
}

/// What a linear layer's epilogue applies after its bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing.
    None = 0,
    /// `x * sigmoid(1.702 x)` (CLIP).
    QuickGelu = 1,
    /// The exact (erf) GELU.
    Gelu = 2,
}

/// `act(x + bias)` over the last dimension, then `residual +` that if given: a linear layer's
/// bias, activation and residual connection in one pass.
pub fn bias_act(
    x: &Tensor,
    bias: &Tensor,
    act: Activation,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let ops = RowOperands::new("bias_act", x, bias, residual)?;
    let (dtype, n, x) = (ops.dtype, ops.width, &ops.x);
    let xi = CudaInput::new(x, "bias_act")?;
    let bi = CudaInput::new(&ops.row, "bias_act")?;
    let ri = ops
        .extra
        .as_ref()
        .map(|r| CudaInput::new(r, "bias_act"))
        .transpose()?;
    let dev = xi.device();
    let total = x.elem_count();
    let (total_u, n_i, act_i, null) = (total as u64, i32_arg(n, "bias width")?, act as i32, 0u64);
    let cfg = elementwise_launch(total.div_ceil(vector_width(dtype, n)));
    with_float_type!(dtype, T, {
        // SAFETY: the kernel writes every element.
        let y = unsafe { dev.alloc::<T>(total.max(1))? };
        let func = dev.get_or_load_custom_func(
            &kernel_name("bias_act", dtype),
            super::MODULE,
            super::PTX,
        )?;
        let (xv, bv) = (xi.view::<T>()?, bi.view::<T>()?);
        let rv = ri.as_ref().map(|r| r.view::<T>()).transpose()?;
        let mut bld = func.builder();
        bld.arg(&xv).arg(&bv);
        match &rv {
            Some(rv) => bld.arg(rv),
            None => bld.arg(&null),
        };
        bld.arg(&y).arg(&total_u).arg(&n_i).arg(&act_i);
        // SAFETY: arguments match `bias_act_*` in glint.cu; a null residual means "none".
        unsafe { bld.launch(cfg) }.w()?;
        Ok(wrap(y, &dev, x.shape().clone()))
    })
}
