//! Linear layers built for speed: projections stored apart in a checkpoint stacked into one
//! matmul, and a layer's matmul split from its epilogue (bias, activation, residual) so the CUDA
//! path can run the epilogue as one kernel.

use candle_core::{Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// Projections stored separately (`{name}.weight`, `{name}.bias`) stacked into one linear
/// layer of `input` features, so a single matmul computes them all, in `parts` order.
pub(crate) fn stacked_linear(
    input: usize,
    parts: &[(&str, usize)],
    bias: bool,
    vb: &VarBuilder,
) -> Result<Linear> {
    let weights = parts
        .iter()
        .map(|(name, out)| vb.pp(*name).get((*out, input), "weight"))
        .collect::<Result<Vec<_>>>()?;
    let bias = if bias {
        let biases = parts
            .iter()
            .map(|(name, out)| vb.pp(*name).get(*out, "bias"))
            .collect::<Result<Vec<_>>>()?;
        Some(Tensor::cat(&biases, 0)?)
    } else {
        None
    };
    Ok(Linear::new(Tensor::cat(&weights, 0)?, bias))
}

/// `x @ weightᵀ` of a linear layer, without its bias.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn matmul_no_bias(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let w = layer.weight();
    match x.dims() {
        [b, _, _] => x.matmul(&w.broadcast_left(*b)?.t()?),
        _ => x.matmul(&w.t()?),
    }
}

/// A linear layer with its bias, activation and residual add fused after the matmul (CUDA).
#[cfg(feature = "cuda")]
pub(crate) fn linear_epilogue(
    layer: &Linear,
    x: &Tensor,
    act: crate::kernels::layer::Activation,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    use crate::kernels::layer::{Activation, bias_act};
    let y = matmul_no_bias(layer, x)?;
    if let Some(bias) = layer.bias() {
        return bias_act(&y, bias, act, residual);
    }
    let y = match act {
        Activation::None => y,
        Activation::QuickGelu => (&y * candle_nn::ops::sigmoid(&(&y * 1.702)?)?)?,
        Activation::Gelu => y.gelu_erf()?,
    };
    match residual {
        Some(r) => r + y,
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Module};
    use std::collections::HashMap;

    #[test]
    fn stacked_projections_equal_separate_ones() {
        let dev = Device::Cpu;
        let mut named = HashMap::new();
        for (name, out) in [("a", 3usize), ("b", 2)] {
            let w = Tensor::randn(0f32, 1.0, (out, 4), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, out, &dev).unwrap();
            named.insert(format!("{name}.weight"), w);
            named.insert(format!("{name}.bias"), b);
        }
        let vb = VarBuilder::from_tensors(named.clone(), DType::F32, &dev);
        let stacked = stacked_linear(4, &[("a", 3), ("b", 2)], true, &vb).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 5, 4), &dev).unwrap();
        let y = stacked.forward(&x).unwrap();
        for (name, start, out) in [("a", 0, 3), ("b", 3, 2)] {
            let lin = Linear::new(
                named[&format!("{name}.weight")].clone(),
                Some(named[&format!("{name}.bias")].clone()),
            );
            let want = lin.forward(&x).unwrap();
            let got = y.narrow(2, start, out).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        }
        let no_bias = matmul_no_bias(&stacked, &x).unwrap();
        let bias = stacked.bias().unwrap().clone();
        let rebuilt = no_bias.broadcast_add(&bias).unwrap();
        let diff = (rebuilt - y).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
