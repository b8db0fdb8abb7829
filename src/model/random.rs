//! Deterministic random weights for any configuration, recorded so they can be saved.
//!
//! Used for benchmarks on machines without real weights and to make the sample checkpoint.
//! Every tensor is drawn from its own stream (seed + name), so values do not depend on the
//! order in which the model asks for them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use crate::util::rng::SeededRng;

/// Standard deviation of linear and embedding weights (`initializer_range` in transformers).
pub const INIT_STD: f64 = 0.02;

/// A VarBuilder backend that invents every tensor it is asked for.
#[derive(Clone)]
pub struct RandomWeights {
    seed: u64,
    made: Arc<Mutex<BTreeMap<String, Tensor>>>,
}

impl RandomWeights {
    /// A backend for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            made: Arc::default(),
        }
    }

    /// Every tensor handed out so far, by name.
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.made.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// How a tensor named `name` is initialised: norms at one, biases at zero, others normal.
    fn init_for(name: &str) -> Init {
        let leaf = name.rsplit('.').next().unwrap_or(name);
        let is_norm = name.contains("norm") || name.contains("layrnorm");
        match leaf {
            "bias" => Init::Zero,
            "weight" if is_norm => Init::One,
            _ if name.ends_with("image_newline") => Init::Normal(1.0),
            _ if name.ends_with("class_embedding") => Init::Normal(1.0),
            _ => Init::Normal(INIT_STD),
        }
    }
}

enum Init {
    Zero,
    One,
    Normal(f64),
}

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _hint: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        if let Some(t) = self.made.lock().ok().and_then(|m| m.get(name).cloned()) {
            if t.shape() != &s {
                candle_core::bail!(
                    "random weight {name} requested as {s:?} and as {:?}",
                    t.shape()
                );
            }
            return t.to_dtype(dtype);
        }
        let t = match Self::init_for(name) {
            Init::Zero => Tensor::zeros(&s, DType::F32, dev)?,
            Init::One => Tensor::ones(&s, DType::F32, dev)?,
            Init::Normal(std) if dev.is_cpu() => {
                let mut rng = SeededRng::for_name(self.seed, name);
                let data: Vec<f32> = (0..s.elem_count())
                    .map(|_| (rng.normal() * std) as f32)
                    .collect();
                Tensor::from_vec(data, &s, dev)?
            }
            Init::Normal(std) => {
                // Accelerators draw on the device: billions of host draws would dominate start-up.
                dev.set_seed(SeededRng::for_name(self.seed, name).next_u64())?;
                Tensor::randn(0f32, std as f32, &s, dev)?
            }
        };
        let t = t.to_dtype(dtype)?;
        if let Ok(mut m) = self.made.lock() {
            m.insert(name.to_string(), t.clone());
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("random weights need a shape for {name}")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarBuilder;

    #[test]
    fn same_seed_same_weights_in_any_order() {
        let a = RandomWeights::new(3);
        let b = RandomWeights::new(3);
        let va = VarBuilder::from_backend(Box::new(a.clone()), DType::F32, Device::Cpu);
        let vb = VarBuilder::from_backend(Box::new(b.clone()), DType::F32, Device::Cpu);
        let x1 = va.get((4, 5), "x.weight").unwrap();
        let _ = vb.get(7, "y.weight").unwrap();
        let x2 = vb.get((4, 5), "x.weight").unwrap();
        assert_eq!(x1.to_vec2::<f32>().unwrap(), x2.to_vec2::<f32>().unwrap());
        assert_eq!(a.tensors().len(), 1);
        assert_eq!(b.tensors().len(), 2);
    }

    #[test]
    fn norms_are_one_and_biases_zero() {
        let w = RandomWeights::new(0);
        let vb = VarBuilder::from_backend(Box::new(w), DType::F32, Device::Cpu);
        let n = vb
            .get(3, "model.norm.weight")
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = vb.get(3, "fc1.bias").unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(n, vec![1.0; 3]);
        assert_eq!(b, vec![0.0; 3]);
    }
}
