//! A feature's nearest features by the cosine of their decoder (or encoder) directions, computed
//! exactly: one row against the whole matrix on the SAE's device.

use anyhow::{Result, bail};
use candle_core::{D, DType};
use serde::{Deserialize, Serialize};

use crate::sae::Sae;

/// Which of the SAE's matrices the directions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Decoder rows: what the features write.
    Decoder,
    /// Encoder rows: what the features read.
    Encoder,
}

crate::util::choice::choice!(Side, "direction side" { Decoder => "decoder", Encoder => "encoder" });

/// Another feature and its cosine with the one asked about.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// Feature index.
    pub feature: u32,
    /// Cosine of the two directions.
    pub cosine: f32,
}

/// The `top` features whose `side` directions are closest to `feature`'s by cosine, closest
/// first (ties by lower index); the feature itself and all-zero rows are left out.
pub fn neighbours(sae: &Sae, feature: u32, side: Side, top: usize) -> Result<Vec<Neighbour>> {
    let n = sae.num_latents();
    if feature as usize >= n {
        bail!("feature {feature} is out of range: the SAE has {n} latents");
    }
    let w = match side {
        Side::Decoder => sae.w_dec(),
        Side::Encoder => sae.w_enc(),
    }
    .to_dtype(DType::F32)?;
    let row = w.narrow(0, feature as usize, 1)?;
    let dots = w.matmul(&row.t()?)?.flatten_all()?;
    let norms = w.sqr()?.sum(D::Minus1)?.sqrt()?;
    let cos = (dots / (norms.clone() * norms.get(feature as usize)?.to_scalar::<f32>()? as f64)?)?;
    let cos = cos.to_vec1::<f32>()?;
    let norms = norms.to_vec1::<f32>()?;
    if !norms[feature as usize].is_finite() || norms[feature as usize] == 0.0 {
        bail!(
            "feature {feature}: its {side} row has norm {}; it has no direction to compare",
            norms[feature as usize]
        );
    }
    let mut found: Vec<Neighbour> = cos
        .iter()
        .enumerate()
        .filter(|&(g, c)| g != feature as usize && norms[g] > 0.0 && c.is_finite())
        .map(|(g, &c)| Neighbour {
            feature: g as u32,
            cosine: c,
        })
        .collect();
    found.sort_by(|a, b| {
        b.cosine
            .total_cmp(&a.cosine)
            .then(a.feature.cmp(&b.feature))
    });
    found.truncate(top);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::SaeConfig;
    use candle_core::Device;

    #[test]
    fn nearest_rows_match_a_brute_force_cosine() {
        let mut cfg = SaeConfig::new(16);
        cfg.num_latents = 40;
        cfg.k = 4;
        let sae = Sae::random(cfg, "model.layers.1", 3, &Device::Cpu).unwrap();
        for side in Side::ALL {
            let w = match side {
                Side::Decoder => sae.w_dec(),
                Side::Encoder => sae.w_enc(),
            }
            .to_vec2::<f32>()
            .unwrap();
            let cosine = |a: &[f32], b: &[f32]| {
                let dot: f64 = a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum();
                let na: f64 = a.iter().map(|x| (x * x) as f64).sum::<f64>().sqrt();
                let nb: f64 = b.iter().map(|x| (x * x) as f64).sum::<f64>().sqrt();
                dot / (na * nb)
            };
            let f = 5usize;
            let mut want: Vec<(usize, f64)> = (0..40)
                .filter(|&g| g != f)
                .map(|g| (g, cosine(&w[f], &w[g])))
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let got = neighbours(&sae, f as u32, *side, 10).unwrap();
            assert_eq!(got.len(), 10);
            for (g, (wf, wc)) in got.iter().zip(&want) {
                assert_eq!(g.feature as usize, *wf, "{side}");
                assert!((g.cosine as f64 - wc).abs() < 1e-5);
            }
        }
        assert!(neighbours(&sae, 40, Side::Decoder, 3).is_err());
    }
}
