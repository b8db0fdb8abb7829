//! Choosing the next token: greedy, or seeded top-p sampling at a temperature.

use anyhow::{Result, bail};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::util::rng::SeededRng;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sampling {
    /// The most likely token (lowest id on ties).
    Greedy,
    /// Nucleus sampling at a temperature, from a seeded stream.
    TopP {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Smallest probability mass kept, in (0, 1].
        top_p: f32,
        /// Seed of the draw stream.
        seed: u64,
    },
}

impl Sampling {
    /// Greedy when `temperature` ≤ 0, else top-p sampling; checks `top_p`.
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Result<Self> {
        if !(top_p > 0.0 && top_p <= 1.0) {
            bail!("--top-p {top_p} must be in (0, 1]");
        }
        if !temperature.is_finite() {
            bail!("--temperature {temperature} must be a finite number");
        }
        Ok(if temperature <= 0.0 {
            Self::Greedy
        } else {
            Self::TopP {
                temperature,
                top_p,
                seed,
            }
        })
    }
}

/// Greedy or seeded top-p choice over f32 logits.
pub(super) struct Sampler {
    sampling: Sampling,
    rng: SeededRng,
}

impl Sampler {
    pub(super) fn new(sampling: Sampling) -> Self {
        let seed = match sampling {
            Sampling::TopP { seed, .. } => seed,
            Sampling::Greedy => 0,
        };
        Self {
            sampling,
            rng: SeededRng::new(seed),
        }
    }

    pub(super) fn next(&mut self, logits: &Tensor) -> Result<u32> {
        let logits: Vec<f32> = logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        if logits.iter().any(|v| v.is_nan()) {
            bail!(
                "the logits hold NaN; the steering strength may be too large for the model's dtype"
            );
        }
        match self.sampling {
            Sampling::Greedy => Ok(argmax(&logits)),
            Sampling::TopP {
                temperature, top_p, ..
            } => Ok(top_p_draw(&logits, temperature, top_p, self.rng.uniform())),
        }
    }
}

/// Index of the largest value, lowest index on ties.
fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Softmax at `temperature`, keep the smallest most-likely set with mass ≥ `top_p`, pick at `u` ∈ [0, 1).
fn top_p_draw(logits: &[f32], temperature: f32, top_p: f32, u: f64) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let t = f64::from(temperature);
    let mut probs: Vec<(f64, u32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (((f64::from(l) - f64::from(max)) / t).exp(), i as u32))
        .collect();
    let total: f64 = probs.iter().map(|p| p.0).sum();
    probs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut kept = 0.0;
    let mut n = 0;
    for p in &probs {
        kept += p.0;
        n += 1;
        if kept >= f64::from(top_p) * total {
            break;
        }
    }
    let mut target = u * kept;
    for p in &probs[..n] {
        if target < p.0 {
            return p.1;
        }
        target -= p.0;
    }
    probs[n - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_draws_from_the_nucleus() {
        let l = [0.0f32, 3f32.ln()]; // probabilities 0.25, 0.75
        assert_eq!(top_p_draw(&l, 1.0, 1.0, 0.7), 1);
        assert_eq!(top_p_draw(&l, 1.0, 1.0, 0.8), 0);
        assert_eq!(
            top_p_draw(&l, 1.0, 0.5, 0.99),
            1,
            "top-p 0.5 keeps only the 0.75 token"
        );
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(Sampling::new(0.0, 0.9, 1).unwrap(), Sampling::Greedy);
        assert!(Sampling::new(1.0, 0.0, 1).is_err());
    }
}
