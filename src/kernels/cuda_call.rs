//! Plumbing shared by glint's CUDA kernel wrappers: contiguous device views of tensors, output
//! wrapping, launch sizes and per-dtype kernel names.

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, LaunchConfig};
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, CudaStorage, DType, Result, Shape, Storage, Tensor, bail};

/// Threads per block of the elementwise kernels.
pub(crate) const THREADS: u32 = 256;

/// Blocks for `total` elements, capped so the grid-stride loops keep each thread busy.
pub(crate) fn grid_for(total: usize) -> u32 {
    total.div_ceil(THREADS as usize).clamp(1, 65_535 * 4) as u32
}

/// A grid-stride launch over `total` elements.
pub(crate) fn elementwise_launch(total: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid_for(total), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Elements a thread of a vectorising elementwise kernel takes: one 16-byte vector of `dtype`
/// when rows of `width` split into whole vectors (the kernels check pointer alignment
/// themselves and loop over the rest), else one.
pub(crate) fn vector_width(dtype: DType, width: usize) -> usize {
    let v = 16 / dtype.size_in_bytes();
    if width.is_multiple_of(v) { v } else { 1 }
}

/// `n` as a kernel's `int` argument, or an error naming `what`.
pub(crate) fn i32_arg(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("{what} = {n} exceeds i32")))
}

/// A contiguous CUDA tensor's storage, read-locked, and its element range.
pub(crate) struct CudaInput<'a> {
    guard: Box<dyn std::ops::Deref<Target = Storage> + 'a>,
    offset: usize,
    len: usize,
}

impl<'a> CudaInput<'a> {
    /// `t` must already be contiguous (callers make it so and keep it alive).
    pub(crate) fn new(t: &'a Tensor, what: &str) -> Result<Self> {
        let (guard, layout) = t.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("{what}: tensor is not contiguous");
        };
        if !matches!(&*guard, Storage::Cuda(_)) {
            bail!("{what}: tensor is not on a CUDA device");
        }
        Ok(Self {
            guard: Box::new(guard),
            offset: start,
            len: end - start,
        })
    }

    /// A rank-4 CUDA tensor whose rows (last axis) are dense and follow each other (a view
    /// into a larger buffer, such as the KV cache's, is fine), with its batch and head strides.
    /// Offsets and strides must keep 16-byte alignment for the kernels' vector loads.
    pub(crate) fn dense_rows(t: &'a Tensor, what: &str) -> Result<(Self, [usize; 2])> {
        let (guard, layout) = t.storage_and_layout();
        let (dims, stride) = (layout.dims(), layout.stride());
        if dims.len() != 4 || stride[3] != 1 || stride[2] != dims[3] {
            bail!("{what}: rows of {dims:?} (strides {stride:?}) are not dense");
        }
        if !matches!(&*guard, Storage::Cuda(_)) {
            bail!("{what}: tensor is not on a CUDA device");
        }
        let per_16_bytes = 16 / t.dtype().size_in_bytes();
        let offset = layout.start_offset();
        if [offset, stride[0], stride[1], stride[2]]
            .iter()
            .any(|x| x % per_16_bytes != 0)
        {
            bail!("{what}: offset {offset} or strides {stride:?} break 16-byte alignment");
        }
        let len = if dims.contains(&0) {
            0
        } else {
            1 + dims
                .iter()
                .zip(stride)
                .map(|(n, s)| (n - 1) * s)
                .sum::<usize>()
        };
        let strides = [stride[0], stride[1]];
        Ok((
            Self {
                guard: Box::new(guard),
                offset,
                len,
            },
            strides,
        ))
    }

    /// The CUDA storage behind the view.
    fn storage(&self) -> &CudaStorage {
        match &**self.guard {
            Storage::Cuda(s) => s,
            _ => unreachable!("checked in CudaInput::new"),
        }
    }

    /// The tensor's elements as a typed device view.
    pub(crate) fn view<T: candle_core::cuda_backend::CudaDType + DeviceRepr>(
        &self,
    ) -> Result<CudaView<'_, T>> {
        Ok(self
            .storage()
            .as_cuda_slice::<T>()?
            .slice(self.offset..self.offset + self.len))
    }

    /// The device the tensor lives on.
    pub(crate) fn device(&self) -> CudaDevice {
        self.storage().device.clone()
    }
}

/// A device buffer as a tensor of `shape` (no backward).
pub(crate) fn wrap<T: candle_core::cuda_backend::CudaDType + DeviceRepr>(
    slice: CudaSlice<T>,
    dev: &CudaDevice,
    shape: impl Into<Shape>,
) -> Tensor {
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev.clone()));
    Tensor::from_storage(storage, shape, BackpropOp::none(), false)
}

/// The dtype of `t` if a kernel exists for it (f32, bf16, f16).
pub(crate) fn check_float(t: &Tensor, what: &str) -> Result<DType> {
    match t.dtype() {
        d @ (DType::F32 | DType::BF16 | DType::F16) => Ok(d),
        other => bail!("{what} on CUDA: unsupported dtype {other:?}"),
    }
}

/// Kernel name for a dtype: `{base}_f32`, `_bf16` or `_f16`.
pub(crate) fn kernel_name(base: &str, dtype: DType) -> String {
    let suffix = match dtype {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        _ => "f32",
    };
    format!("{base}_{suffix}")
}

/// Dispatch `$body` with `$t` bound to the Rust type of `$dtype`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_float_type {
    ($dtype:expr, $t:ident, $body:block) => {
        match $dtype {
            DType::BF16 => {
                type $t = half::bf16;
                $body
            }
            DType::F16 => {
                type $t = half::f16;
                $body
            }
            _ => {
                type $t = f32;
                $body
            }
        }
    };
}

/// A kernel's operands `x`, a vector `row` over its last dimension (a weight or bias), and an
/// optional tensor shaped like `x` (a residual), checked and made contiguous.
pub(crate) struct RowOperands {
    /// The main input.
    pub(crate) x: Tensor,
    /// The per-column vector.
    pub(crate) row: Tensor,
    /// The optional same-shape operand.
    pub(crate) extra: Option<Tensor>,
    /// Their common dtype.
    pub(crate) dtype: DType,
    /// The last dimension of `x`.
    pub(crate) width: usize,
}

impl RowOperands {
    /// Check the operands of kernel `op` and make them contiguous.
    pub(crate) fn new(op: &str, x: &Tensor, row: &Tensor, extra: Option<&Tensor>) -> Result<Self> {
        let dtype = check_float(x, op)?;
        let width = x.dim(candle_core::D::Minus1)?;
        if row.dims() != [width] || row.dtype() != dtype {
            bail!(
                "{op}: vector {:?} {:?} does not match rows of {width} {dtype:?}",
                row.dims(),
                row.dtype()
            );
        }
        if let Some(e) = extra
            && (e.dims() != x.dims() || e.dtype() != dtype)
        {
            bail!(
                "{op}: operand {:?} {:?} does not match {:?} {dtype:?}",
                e.dims(),
                e.dtype(),
                x.dims()
            );
        }
        Ok(Self {
            x: x.contiguous()?,
            row: row.contiguous()?,
            extra: extra.map(Tensor::contiguous).transpose()?,
            dtype,
            width,
        })
    }
}
