//! What the benchmark runs on: its test image, a random SAE on the device, the device top-k
//! check, and the GPU memory reading.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::sae::{Sae, SaeConfig};

/// The device SAE encode against the host top-k of the same pre-activations.
#[derive(Debug, Clone, Serialize)]
pub struct TopkCheck {
    /// Rows compared.
    pub rows: usize,
    /// Share of top-k indices the two agree on (as sets per row).
    pub index_agreement: f64,
    /// Largest difference between the sorted values.
    pub max_value_diff: f32,
}

/// Encode `rows` on the device and compare with the host top-k of the same pre-activations.
pub(super) fn check_topk(sae: &Sae, rows: &Tensor) -> Result<TopkCheck> {
    let device = sae.encode(rows)?;
    let pre = sae.pre_acts(rows)?.to_device(&Device::Cpu)?;
    let (hv, hi) = crate::sae::codes::topk_rows(&pre, sae.k())?;
    let (dv, di) = (
        device.values.to_vec2::<f32>()?,
        device.indices.to_vec2::<u32>()?,
    );
    let (hv, hi) = (hv.to_vec2::<f32>()?, hi.to_vec2::<u32>()?);
    let mut agree = 0usize;
    let mut max_diff = 0f32;
    for r in 0..hi.len() {
        let host: std::collections::HashSet<u32> = hi[r].iter().copied().collect();
        agree += di[r].iter().filter(|i| host.contains(i)).count();
        for (a, b) in hv[r].iter().zip(&dv[r]) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    Ok(TopkCheck {
        rows: hi.len(),
        index_agreement: agree as f64 / (hi.len() * sae.k()).max(1) as f64,
        max_value_diff: max_diff,
    })
}

/// A deterministic 672x672 test image (gradients and blocks).
pub fn bench_image() -> image::DynamicImage {
    let img = image::RgbImage::from_fn(672, 672, |x, y| {
        let block = ((x / 96 + y / 96) % 3) as u8;
        image::Rgb([(x / 3) as u8, (y / 3) as u8, 80 * block])
    });
    image::DynamicImage::ImageRgb8(img)
}

/// A random SAE built directly on the device.
pub fn random_sae_on_device(
    d: usize,
    n: usize,
    k: usize,
    layer: usize,
    dtype: DType,
    device: &Device,
) -> Result<Sae> {
    let mut cfg = SaeConfig::new(d);
    cfg.num_latents = n;
    cfg.k = k;
    let scale = 1.0 / (d as f64).sqrt();
    let w_enc = (Tensor::randn(0f32, 1f32, (n, d), device)? * scale)?.to_dtype(dtype)?;
    let w_dec = w_enc.clone();
    let b_enc = Tensor::zeros(n, dtype, device)?;
    let b_dec = Tensor::zeros(d, dtype, device)?;
    Sae::from_tensors(
        cfg,
        format!("model.layers.{layer}"),
        w_enc,
        b_enc,
        w_dec,
        b_dec,
    )
}

/// GPU memory in use now (from nvidia-smi), on CUDA devices.
pub(super) fn gpu_used_bytes(device: &Device) -> Option<u64> {
    let Device::Cuda(_) = device else { return None };
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mib: u64 = text.lines().next()?.trim().parse().ok()?;
    Some(mib * 1024 * 1024)
}
