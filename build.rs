//! Compiles glint's CUDA kernels (src/kernels/glint.cu) to PTX when the `cuda` feature is on.
//!
//! The PTX is embedded in the binary and JIT-compiled by the driver on first use, so one build
//! runs on every card from compute capability 8.0 up. Without the feature nothing is built.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/kernels/glint.cu");
    println!("cargo:rerun-if-changed=src/kernels/flash_attention.cu");
    println!("cargo:rerun-if-changed=src/kernels/sparse_code.cu");
    println!("cargo:rerun-if-changed=src/kernels/adam.cu");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let ptx = out.join("glint.ptx");
    let nvcc = nvcc();
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "-arch=compute_80", "-std=c++17", "-o"])
        .arg(&ptx)
        .arg("src/kernels/glint.cu")
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "could not run nvcc ({}): {e}; install the CUDA toolkit or set NVCC",
                nvcc.display()
            )
        });
    assert!(status.success(), "nvcc failed on src/kernels/glint.cu");
}

/// nvcc from $NVCC, $CUDA_HOME/bin, or the PATH.
fn nvcc() -> PathBuf {
    if let Some(p) = std::env::var_os("NVCC") {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        let p = PathBuf::from(home).join("bin").join("nvcc");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("nvcc")
}
