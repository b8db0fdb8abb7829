//! glint's fused kernels: attention softmax with the causal mask applied in place, the SAE
//! top-k on the device, and the decoder layer's norms, SwiGLU and rotary split on CUDA.
//!
//! Each has a host implementation (the reference, used on CPU and in tests) and, with the
//! `cuda` feature, a CUDA kernel from `glint.cu` compiled to PTX by build.rs.

#[cfg(feature = "cuda")]
pub mod adam;
pub mod attention;
#[cfg(feature = "cuda")]
mod cuda_call;
#[cfg(feature = "cuda")]
pub mod layer;
pub mod softmax;
#[cfg(feature = "cuda")]
pub mod sparse_code;
#[cfg(feature = "cuda")]
pub mod topk;

/// PTX of `glint.cu`, JIT-compiled by the driver when first used.
#[cfg(feature = "cuda")]
pub(crate) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/glint.ptx"));

/// Module name the PTX is registered under on each CUDA device.
#[cfg(feature = "cuda")]
pub(crate) const MODULE: &str = "glint_kernels";

/// Whether the fused kernels are switched off (`GLINT_FUSED=0`), for A/B timing and debugging.
pub fn fused_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| switched_off("GLINT_FUSED"))
}

/// Whether flash attention alone is switched off (`GLINT_FLASH=0`): attention then goes through
/// the score matmul and the masked softmax.
pub fn flash_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| switched_off("GLINT_FLASH"))
}

/// Whether environment variable `name` is set to `0`.
fn switched_off(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "0")
}
