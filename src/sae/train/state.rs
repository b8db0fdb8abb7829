//! The trainer checkpoint: parameters, Adam moments, dead-latent counters and the stream
//! position in one safetensors file, with the run config and counters as JSON metadata.
//!
//! One file written through a rename is all-or-nothing, so an interrupted save leaves the previous
//! checkpoint intact; the exported SAE folder is a convenience copy, never read back by resume.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::TrainConfig;
use super::data::Position;
use super::grad::{PARAM_NAMES, Params};
use super::optim::Adam;

/// File name of the checkpoint inside the work folder.
pub const STATE_FILE: &str = "trainer_state.safetensors";
/// Metadata key holding [`StateMeta`] as JSON.
const META_KEY: &str = "glint.sae_train";
/// Version of the checkpoint layout; bump when it changes.
const FORMAT: u32 = 1;

/// Everything needed to continue a run exactly.
#[derive(Debug, Clone)]
pub struct TrainState {
    /// The run's config (a resume must match it).
    pub config: TrainConfig,
    /// Optimizer steps taken.
    pub step: u64,
    /// The next batch.
    pub position: Position,
    /// Rows trained on so far.
    pub tokens: u64,
    /// SAE parameters.
    pub params: Params,
    /// Adam moments and step count.
    pub adam: Adam,
    /// Per latent: rows seen since it last fired.
    pub since_fired: Vec<u64>,
}

/// The JSON part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateMeta {
    format: u32,
    config: TrainConfig,
    step: u64,
    position: Position,
    tokens: u64,
    adam_t: u64,
}

impl TrainState {
    /// Fraction of latents idle for more than the config's dead threshold.
    pub fn dead_fraction(&self) -> f64 {
        let dead = self.dead_mask().iter().filter(|&&b| b).count();
        dead as f64 / self.since_fired.len().max(1) as f64
    }

    /// Latents idle for more than the config's dead threshold.
    pub fn dead_mask(&self) -> Vec<bool> {
        let limit = self.config.dead_threshold;
        self.since_fired.iter().map(|&n| n > limit).collect()
    }

    /// Write the checkpoint to `path` (via a temporary file and a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = StateMeta {
            format: FORMAT,
            config: self.config.clone(),
            step: self.step,
            position: self.position,
            tokens: self.tokens,
            adam_t: self.adam.t,
        };
        let host = |t: &Tensor| -> Result<Tensor> {
            Ok(t.to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .contiguous()?)
        };
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (prefix, p) in [
            ("param", &self.params),
            ("adam_m", &self.adam.m),
            ("adam_v", &self.adam.v),
        ] {
            for (name, t) in PARAM_NAMES.iter().zip(p.tensors()) {
                tensors.push((format!("{prefix}.{name}"), host(t)?));
            }
        }
        let counters: Vec<i64> = self
            .since_fired
            .iter()
            .map(|&n| n.min(i64::MAX as u64) as i64)
            .collect();
        let n = counters.len();
        tensors.push((
            "since_fired".into(),
            Tensor::from_vec(counters, n, &Device::Cpu)?,
        ));
        let metadata = HashMap::from([(META_KEY.to_string(), serde_json::to_string(&meta)?)]);
        let partial = path.with_extension("safetensors.partial");
        safetensors::serialize_to_file(
            tensors.iter().map(|(k, t)| (k.as_str(), t)),
            Some(metadata),
            &partial,
        )
        .with_context(|| format!("cannot write trainer checkpoint {}", partial.display()))?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("cannot move {} into place", partial.display()))?;
        Ok(())
    }

    /// Read a checkpoint written by [`TrainState::save`], placing tensors on `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let shown = path.display();
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read trainer checkpoint {shown}"))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{shown} is not a safetensors file: {e}"))?;
        let text = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| {
                anyhow!("{shown} is not a glint trainer checkpoint (no `{META_KEY}` metadata)")
            })?;
        let meta: StateMeta = serde_json::from_str(text)
            .with_context(|| format!("{shown}: unreadable trainer metadata"))?;
        if meta.format != FORMAT {
            bail!(
                "{shown} has checkpoint format {} but this glint reads format {FORMAT}",
                meta.format
            );
        }
        let mut all = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .with_context(|| format!("{shown}: cannot read tensors"))?;
        let mut take = |name: String| -> Result<Tensor> {
            let t = all
                .remove(&name)
                .ok_or_else(|| anyhow!("{shown}: tensor `{name}` is missing"))?;
            Ok(t)
        };
        let mut group = |prefix: &str| -> Result<Params> {
            let mut ts = Vec::with_capacity(4);
            for name in PARAM_NAMES {
                ts.push(take(format!("{prefix}.{name}"))?.to_device(device)?);
            }
            let arr: [Tensor; 4] = ts
                .try_into()
                .map_err(|_| anyhow!("{shown}: parameter group {prefix}"))?;
            Ok(Params::from_array(arr))
        };
        let params = group("param")?;
        let m = group("adam_m")?;
        let v = group("adam_v")?;
        let counters = take("since_fired".into())?.to_vec1::<i64>()?;
        let cfg = &meta.config;
        let (n, d) = (cfg.num_latents, cfg.d_in);
        for (p, what) in [
            (&params, "parameters"),
            (&m, "first moments"),
            (&v, "second moments"),
        ] {
            let shapes: Vec<&[usize]> = p.tensors().iter().map(|t| t.dims()).collect();
            if shapes != [&[n, d][..], &[n][..], &[n, d][..], &[d][..]] {
                bail!(
                    "{shown}: {what} have shapes {shapes:?}, not those of {n} latents of width {d}"
                );
            }
        }
        if counters.len() != n {
            bail!(
                "{shown}: {} dead-latent counters for {n} latents",
                counters.len()
            );
        }
        Ok(Self {
            config: meta.config,
            step: meta.step,
            position: meta.position,
            tokens: meta.tokens,
            params,
            adam: Adam {
                m,
                v,
                t: meta.adam_t,
            },
            since_fired: counters.into_iter().map(|c| c.max(0) as u64).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::train::tests::tiny_config;
    use crate::sae::{Sae, SaeConfig};

    fn bits(p: &Params) -> Vec<Vec<u32>> {
        p.tensors()
            .iter()
            .map(|t| {
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn checkpoint_round_trips_bit_for_bit() {
        let cfg = tiny_config(5);
        let sae_cfg = SaeConfig {
            num_latents: cfg.num_latents,
            k: cfg.k,
            ..SaeConfig::new(cfg.d_in)
        };
        let params =
            Params::from_sae(&Sae::random(sae_cfg, "model.layers.1", 3, &Device::Cpu).unwrap());
        let odd = params.map(|t| Ok(t.affine(1.0 / 3.0, 1e-7)?)).unwrap();
        let state = TrainState {
            config: cfg,
            step: 17,
            position: Position {
                epoch: 2,
                chunk: 1,
                batch: 3,
            },
            tokens: 12_345_678_901,
            params: params.clone(),
            adam: Adam {
                m: odd.clone(),
                v: odd.map(|t| Ok(t.sqr()?)).unwrap(),
                t: 17,
            },
            since_fired: (0..params.num_latents() as u64)
                .map(|i| i * 1_000_000_007)
                .collect(),
        };
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(STATE_FILE);
        state.save(&path).unwrap();
        assert!(!path.with_extension("safetensors.partial").exists());
        let back = TrainState::load(&path, &Device::Cpu).unwrap();
        assert_eq!(back.config, state.config);
        assert_eq!(
            (back.step, back.position, back.tokens),
            (17, state.position, state.tokens)
        );
        assert_eq!(back.since_fired, state.since_fired);
        assert_eq!(back.adam.t, 17);
        assert_eq!(bits(&back.params), bits(&state.params));
        assert_eq!(bits(&back.adam.m), bits(&state.adam.m));
        assert_eq!(bits(&back.adam.v), bits(&state.adam.v));

        std::fs::write(&path, b"not a checkpoint").unwrap();
        let err = format!("{:#}", TrainState::load(&path, &Device::Cpu).unwrap_err());
        assert!(err.contains("not a safetensors file"), "{err}");
        let sae_dir = tmp.path().join("sae");
        Sae::random(
            SaeConfig {
                num_latents: 4,
                k: 1,
                ..SaeConfig::new(2)
            },
            "h",
            0,
            &Device::Cpu,
        )
        .unwrap()
        .save(&sae_dir)
        .unwrap();
        let err = format!(
            "{:#}",
            TrainState::load(&sae_dir.join("h/sae.safetensors"), &Device::Cpu).unwrap_err()
        );
        assert!(err.contains("not a glint trainer checkpoint"), "{err}");
    }
}
