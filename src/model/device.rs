//! Naming the device and dtype a model runs with.

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};

/// The device a model runs on, as named (`cpu`, `cuda`, `cuda:N`); opened only when a model
/// loads, so commands that never touch the device never initialise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The host.
    #[default]
    Cpu,
    /// The GPU of this ordinal.
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = anyhow::Error;

    fn from_str(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        match spec {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            s => match s.strip_prefix("cuda:") {
                Some(n) => Ok(Self::Cuda(
                    n.parse::<usize>()
                        .with_context(|| format!("--device {s}: bad GPU index"))?,
                )),
                None => bail!("--device {spec}: expected cpu, cuda or cuda:N"),
            },
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Open the device (initialises CUDA for a GPU).
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => {
                if !candle_core::utils::cuda_is_available() {
                    bail!(
                        "--device {self}: this glint was built without CUDA; rebuild with `cargo build --release --features cuda`"
                    );
                }
                Device::new_cuda(ordinal)
                    .with_context(|| format!("--device {self}: cannot open GPU {ordinal}"))
            }
        }
    }
}

/// Parse `f32`, `bf16` or `f16` (and their long names), given to `flag`.
pub fn parse_dtype(flag: &str, spec: &str) -> Result<DType> {
    match spec {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        other => bail!("{flag} {other}: expected f32, bf16 or f16"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_print() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert_eq!(parse_dtype("--dtype", "bfloat16").unwrap(), DType::BF16);
        assert!(parse_dtype("--dtype", "f64").is_err());
    }
}
