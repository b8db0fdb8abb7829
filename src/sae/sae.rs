//! The SAE parameters and their on-disk format: `<root>/<hookpoint>/{cfg.json, sae.safetensors}`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::config::{SaeConfig, layer_of_hookpoint};
use crate::util::finite::first_non_finite_row;
use crate::util::rng::SeededRng;

/// File name of the config inside a hookpoint folder.
pub const CFG_FILE: &str = "cfg.json";
/// File name of the weights inside a hookpoint folder.
pub const WEIGHTS_FILE: &str = "sae.safetensors";

const LAYOUT: &str = "<root>/<hookpoint>/{cfg.json, sae.safetensors}";

/// A TopK sparse autoencoder for one hookpoint, with its four parameters on one device.
#[derive(Debug, Clone)]
pub struct Sae {
    cfg: SaeConfig,
    hookpoint: String,
    source: Option<PathBuf>,
    w_enc: Tensor,
    b_enc: Tensor,
    w_dec: Tensor,
    b_dec: Tensor,
}

impl Sae {
    /// Load `<dir>/cfg.json` and `<dir>/sae.safetensors`, cast to `dtype` on `device`.
    ///
    /// `path` is either the hookpoint folder itself (its name is the hookpoint) or a root that
    /// holds hookpoint folders; a root with exactly one of them needs no `hookpoint`.
    pub fn load(
        path: &Path,
        hookpoint: Option<&str>,
        device: &Device,
        dtype: DType,
    ) -> Result<Sae> {
        if !dtype.is_float() {
            bail!("SAE dtype must be a float type, not {dtype:?}");
        }
        let (dir, name) = resolve_dir(path, hookpoint)?;
        let cfg_path = dir.join(CFG_FILE);
        let text = std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("cannot read SAE config {}", cfg_path.display()))?;
        let cfg = SaeConfig::from_json(&text).with_context(|| {
            format!(
                "SAE config {} is not a valid cfg.json (it needs at least `d_in`)",
                cfg_path.display()
            )
        })?;
        cfg.validate()
            .with_context(|| format!("SAE config {}", cfg_path.display()))?;

        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            bail!(
                "SAE weights {} not found; an SAE folder holds {LAYOUT}",
                weights.display()
            );
        }
        // SAFETY: the map is read-only and only read while `st` lives, inside this function; the
        // tensors are copied out. Mapping avoids holding a second multi-GB copy while loading.
        let st = unsafe { MmapedSafetensors::new(&weights) }
            .with_context(|| format!("cannot read SAE weights {}", weights.display()))?;
        let (n, d) = (cfg.width(), cfg.d_in);
        let load = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let view = st.get(name).map_err(|_| {
                let mut found: Vec<String> = st.tensors().into_iter().map(|(k, _)| k).collect();
                found.sort();
                anyhow!(
                    "SAE weights {}: tensor `{name}` is missing (found: {}); expected \
                     encoder.weight, encoder.bias, W_dec and b_dec as written by EleutherAI sae",
                    weights.display(),
                    found.join(", ")
                )
            })?;
            check_shape(&weights.display().to_string(), name, view.shape(), shape)?;
            let file_dtype = DType::try_from(view.dtype()).ok().filter(|t| t.is_float());
            if file_dtype.is_none() {
                bail!(
                    "SAE weights {}: tensor `{name}` has dtype {:?}, expected a float type",
                    weights.display(),
                    view.dtype()
                );
            }
            let t = st
                .load(name, device)
                .and_then(|t| t.to_dtype(dtype))
                .with_context(|| {
                    format!("SAE weights {}: cannot load `{name}`", weights.display())
                })?;
            if let Some(row) = first_non_finite_row(&t)? {
                let at = if shape.len() == 1 { "entry" } else { "row" };
                bail!(
                    "SAE weights {}: tensor `{name}` {at} {row} holds a non-finite value (NaN or \
                     infinity); the file is damaged or the training diverged: use another SAE",
                    weights.display()
                );
            }
            Ok(t)
        };
        let w_enc = load("encoder.weight", &[n, d])?;
        let b_enc = load("encoder.bias", &[n])?;
        let w_dec = load("W_dec", &[n, d])?;
        let b_dec = load("b_dec", &[d])?;
        let mut sae = Sae::from_tensors(cfg, name, w_enc, b_enc, w_dec, b_dec)?;
        sae.source = Some(dir);
        Ok(sae)
    }

    /// The same SAE computing in `dtype`.
    pub fn to_dtype(self, dtype: DType) -> Result<Sae> {
        if self.dtype() == dtype {
            return Ok(self);
        }
        let source = self.source.clone();
        let w_enc = self.w_enc.to_dtype(dtype)?;
        let mut sae = Sae::from_tensors(
            self.cfg,
            self.hookpoint,
            w_enc,
            self.b_enc,
            self.w_dec,
            self.b_dec,
        )?;
        sae.source = source;
        Ok(sae)
    }

    /// Build an SAE from its four parameters, checking shapes against `cfg`.
    ///
    /// All tensors are cast to `w_enc`'s dtype and moved to its device.
    pub fn from_tensors(
        cfg: SaeConfig,
        hookpoint: String,
        w_enc: Tensor,
        b_enc: Tensor,
        w_dec: Tensor,
        b_dec: Tensor,
    ) -> Result<Sae> {
        let label = format!("SAE `{hookpoint}`");
        cfg.validate().with_context(|| label.clone())?;
        let (n, d) = (cfg.width(), cfg.d_in);
        check_shape(&label, "encoder.weight", w_enc.dims(), &[n, d])?;
        check_shape(&label, "encoder.bias", b_enc.dims(), &[n])?;
        check_shape(&label, "W_dec", w_dec.dims(), &[n, d])?;
        check_shape(&label, "b_dec", b_dec.dims(), &[d])?;
        let (dtype, device) = (w_enc.dtype(), w_enc.device().clone());
        if !dtype.is_float() {
            bail!("{label}: parameters must be a float type, not {dtype:?}");
        }
        let fit = |t: Tensor| -> Result<Tensor> {
            Ok(t.to_device(&device)?.to_dtype(dtype)?.contiguous()?)
        };
        Ok(Sae {
            cfg,
            hookpoint,
            source: None,
            w_enc: fit(w_enc)?,
            b_enc: fit(b_enc)?,
            w_dec: fit(w_dec)?,
            b_dec: fit(b_dec)?,
        })
    }

    /// A deterministic random SAE (f32), initialised like the Python trainer.
    ///
    /// Encoder entries are U(-1/√d, 1/√d) from `SeededRng::for_name(seed, hookpoint)` in row-major
    /// order, the encoder bias is zero, `W_dec` copies the encoder rows (divided by
    /// `‖row‖ + f32::EPSILON` when `normalize_decoder`), and `b_dec` is zero.
    pub fn random(cfg: SaeConfig, hookpoint: &str, seed: u64, device: &Device) -> Result<Sae> {
        cfg.validate()
            .with_context(|| format!("SAE `{hookpoint}`"))?;
        let (n, d) = (cfg.width(), cfg.d_in);
        let bound = 1.0 / (d as f64).sqrt();
        let mut rng = SeededRng::for_name(seed, hookpoint);
        let enc: Vec<f32> = (0..n * d)
            .map(|_| rng.range_f64(-bound, bound) as f32)
            .collect();
        let mut dec = enc.clone();
        if cfg.normalize_decoder {
            for row in dec.chunks_mut(d) {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt() + f32::EPSILON;
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        let w_enc = Tensor::from_vec(enc, (n, d), device)?;
        let w_dec = Tensor::from_vec(dec, (n, d), device)?;
        let b_enc = Tensor::zeros(n, DType::F32, device)?;
        let b_dec = Tensor::zeros(d, DType::F32, device)?;
        Sae::from_tensors(cfg, hookpoint.to_string(), w_enc, b_enc, w_dec, b_dec)
    }

    /// Write `root/<hookpoint>/{cfg.json, sae.safetensors}` (f32) and return that folder.
    pub fn save(&self, root: &Path) -> Result<PathBuf> {
        let hp = &self.hookpoint;
        if hp.is_empty() || hp == "." || hp == ".." || hp.contains(['/', '\\']) {
            bail!("SAE hookpoint `{hp}` cannot be used as a folder name; rename the hookpoint");
        }
        let dir = root.join(hp);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create SAE folder {}", dir.display()))?;
        let cfg_path = dir.join(CFG_FILE);
        std::fs::write(&cfg_path, self.cfg.to_json()? + "\n")
            .with_context(|| format!("cannot write {}", cfg_path.display()))?;

        let host = |t: &Tensor| -> Result<Tensor> {
            Ok(t.to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .contiguous()?)
        };
        let tensors = [
            ("encoder.weight", host(&self.w_enc)?),
            ("encoder.bias", host(&self.b_enc)?),
            ("W_dec", host(&self.w_dec)?),
            ("b_dec", host(&self.b_dec)?),
        ];
        let weights = dir.join(WEIGHTS_FILE);
        crate::util::weights_file::save_pt(tensors.iter().map(|(k, t)| (*k, t)), &weights)?;
        Ok(dir)
    }

    /// The config read from (or written to) `cfg.json`.
    pub fn cfg(&self) -> &SaeConfig {
        &self.cfg
    }
    /// Hookpoint name, e.g. `model.layers.24`.
    pub fn hookpoint(&self) -> &str {
        &self.hookpoint
    }
    /// Folder this SAE was loaded from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }
    /// Input width.
    pub fn d_in(&self) -> usize {
        self.cfg.d_in
    }
    /// Dictionary width N.
    pub fn num_latents(&self) -> usize {
        self.cfg.width()
    }
    /// Latents kept per token.
    pub fn k(&self) -> usize {
        self.cfg.k
    }
    /// dtype the SAE computes in.
    pub fn dtype(&self) -> DType {
        self.w_enc.dtype()
    }
    /// Device holding the parameters.
    pub fn device(&self) -> &Device {
        self.w_enc.device()
    }
    /// Encoder matrix `[N, d]`.
    pub fn w_enc(&self) -> &Tensor {
        &self.w_enc
    }
    /// Encoder bias `[N]`.
    pub fn b_enc(&self) -> &Tensor {
        &self.b_enc
    }
    /// Decoder matrix `[N, d]`; row f is feature f's direction.
    pub fn w_dec(&self) -> &Tensor {
        &self.w_dec
    }
    /// Decoder bias `[d]`, also subtracted from inputs before encoding.
    pub fn b_dec(&self) -> &Tensor {
        &self.b_dec
    }

    /// Decoder layer named by the hookpoint (see [`layer_of_hookpoint`]).
    pub fn hookpoint_layer(&self) -> Option<usize> {
        layer_of_hookpoint(&self.hookpoint)
    }

    /// Check that this SAE fits a model with `hidden_size` and `num_layers` decoder layers.
    pub fn check_compatible(&self, hidden_size: usize, num_layers: usize) -> Result<()> {
        let who = self.describe();
        if self.d_in() != hidden_size {
            bail!(
                "{who} expects inputs of width d_in = {} but the model's hidden size is \
                 {hidden_size}; use an SAE trained on this model",
                self.d_in()
            );
        }
        match self.hookpoint_layer() {
            None => bail!(
                "{who}: hookpoint `{}` names no decoder layer; its folder must be named like \
                 `model.layers.<L>` so glint knows which residual stream to read",
                self.hookpoint
            ),
            Some(layer) if layer >= num_layers => bail!(
                "{who} reads layer {layer} but the model has {num_layers} layers (0..={}); \
                 use an SAE trained on this model",
                num_layers.saturating_sub(1)
            ),
            Some(_) => Ok(()),
        }
    }

    /// How errors name this SAE: its weights file, or the hookpoint when built in memory.
    fn describe(&self) -> String {
        match &self.source {
            Some(dir) => format!("SAE {}", dir.join(WEIGHTS_FILE).display()),
            None => format!("SAE `{}` (built in memory)", self.hookpoint),
        }
    }
}

fn check_shape(label: &str, name: &str, found: &[usize], expected: &[usize]) -> Result<()> {
    if found != expected {
        bail!(
            "{label}: tensor `{name}` has shape {found:?}, expected {expected:?} from cfg.json \
             (d_in and num_latents); the config and the weights do not belong together"
        );
    }
    Ok(())
}

/// Find the hookpoint folder under `path` and its name.
fn resolve_dir(path: &Path, hookpoint: Option<&str>) -> Result<(PathBuf, String)> {
    if !path.is_dir() {
        bail!(
            "SAE path {} is not a folder; expected {LAYOUT}",
            path.display()
        );
    }
    let folder_name = |p: &Path| -> String {
        let canon = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        canon
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let own = path.join(CFG_FILE).is_file();
    if let Some(hp) = hookpoint {
        if path.join(hp).join(CFG_FILE).is_file() {
            return Ok((path.join(hp), hp.to_string()));
        }
        if own && folder_name(path) == hp {
            return Ok((path.to_path_buf(), hp.to_string()));
        }
        bail!(
            "SAE path {} has no hookpoint `{hp}` (no {hp}/{CFG_FILE}); available: {}",
            path.display(),
            list_or_none(&hookpoint_folders(path)?)
        );
    }
    if own {
        return Ok((path.to_path_buf(), folder_name(path)));
    }
    let found = hookpoint_folders(path)?;
    match found.as_slice() {
        [one] => Ok((path.join(one), one.clone())),
        [] => bail!(
            "SAE path {} holds no {CFG_FILE} and no hookpoint folder; expected {LAYOUT}",
            path.display()
        ),
        many => bail!(
            "SAE path {} holds several hookpoints ({}); choose one with the hookpoint option",
            path.display(),
            many.join(", ")
        ),
    }
}

/// Sub-folders of `root` that contain a `cfg.json`, ordered by layer, then name.
fn hookpoint_folders(root: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(root)
        .with_context(|| format!("cannot list SAE folder {}", root.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list SAE folder {}", root.display()))?;
        if entry.path().join(CFG_FILE).is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort_by(|a, b| (layer_of_hookpoint(a), a).cmp(&(layer_of_hookpoint(b), b)));
    Ok(names)
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(d: usize, n: usize, k: usize) -> SaeConfig {
        SaeConfig {
            num_latents: n,
            k,
            ..SaeConfig::new(d)
        }
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    #[test]
    fn random_is_deterministic_bounded_and_unit_norm() {
        let (d, n) = (9, 20);
        let a = Sae::random(cfg(d, n, 3), "model.layers.2", 7, &Device::Cpu).unwrap();
        let b = Sae::random(cfg(d, n, 3), "model.layers.2", 7, &Device::Cpu).unwrap();
        let c = Sae::random(cfg(d, n, 3), "model.layers.2", 8, &Device::Cpu).unwrap();
        assert_eq!(bits(a.w_enc()), bits(b.w_enc()));
        assert_ne!(bits(a.w_enc()), bits(c.w_enc()));
        let bound = 1.0 / (d as f32).sqrt();
        let enc = a.w_enc().to_vec2::<f32>().unwrap();
        assert!(enc.iter().flatten().all(|v| v.abs() <= bound));
        for (e, row) in enc.iter().zip(a.w_dec().to_vec2::<f32>().unwrap()) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
            // Tied init: same direction as the encoder row.
            assert!((e[0] / row[0] - e[1] / row[1]).abs() < 1e-4);
        }
        assert_eq!(
            a.b_enc().sum_all().unwrap().to_scalar::<f32>().unwrap(),
            0.0
        );
        let raw = Sae::random(
            SaeConfig {
                normalize_decoder: false,
                ..cfg(d, n, 3)
            },
            "x",
            7,
            &Device::Cpu,
        );
        let raw = raw.unwrap();
        assert_eq!(bits(raw.w_enc()), bits(raw.w_dec()));
    }

    #[test]
    fn save_load_round_trip_is_bit_exact() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = cfg(6, 10, 2);
        c.extra
            .insert("note".into(), serde_json::json!({"run": "abc", "lr": 0.5}));
        let sae = Sae::random(c, "model.layers.3", 1, &Device::Cpu).unwrap();
        let dir = sae.save(tmp.path()).unwrap();
        assert_eq!(dir, tmp.path().join("model.layers.3"));
        assert!(!dir.join("sae.safetensors.partial").exists());

        // The root resolves to its only hookpoint; the folder itself and an explicit name too.
        for (path, hp) in [
            (tmp.path(), None),
            (dir.as_path(), None),
            (tmp.path(), Some("model.layers.3")),
        ] {
            let back = Sae::load(path, hp, &Device::Cpu, DType::F32).unwrap();
            assert_eq!(back.cfg(), sae.cfg());
            assert_eq!(back.hookpoint(), "model.layers.3");
            assert_eq!(back.hookpoint_layer(), Some(3));
            assert_eq!(back.source(), Some(dir.as_path()));
            for (x, y) in [
                (back.w_enc(), sae.w_enc()),
                (back.b_enc(), sae.b_enc()),
                (back.w_dec(), sae.w_dec()),
                (back.b_dec(), sae.b_dec()),
            ] {
                assert_eq!(bits(x), bits(y));
            }
        }
        let text = std::fs::read_to_string(dir.join(CFG_FILE)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["d_in"], 6);
        assert_eq!(json["note"]["run"], "abc");

        // The header carries PyTorch's names, f32, and the format tag.
        let bytes = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
        let mut names: Vec<_> = meta.tensors().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["W_dec", "b_dec", "encoder.bias", "encoder.weight"]);
        assert!(
            meta.tensors()
                .values()
                .all(|t| t.dtype == safetensors::Dtype::F32)
        );
    }

    /// Write a hookpoint folder by hand with the given tensors.
    fn write_raw(root: &Path, hp: &str, cfg_json: &str, tensors: &[(&str, Tensor)]) -> PathBuf {
        let dir = root.join(hp);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CFG_FILE), cfg_json).unwrap();
        let map: std::collections::HashMap<&str, Tensor> = tensors.iter().cloned().collect();
        candle_core::safetensors::save(&map, dir.join(WEIGHTS_FILE)).unwrap();
        dir
    }

    fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::zeros(shape, dtype, &Device::Cpu).unwrap()
    }

    #[test]
    fn bf16_file_is_upcast_and_signed_key_tolerated() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = r#"{"expansion_factor": 2, "normalize_decoder": true, "num_latents": 0, "k": 2,
                      "multi_topk": false, "signed": false, "d_in": 3}"#;
        let t = [
            ("encoder.weight", zeros(&[6, 3], DType::BF16)),
            ("encoder.bias", zeros(&[6], DType::BF16)),
            ("W_dec", zeros(&[6, 3], DType::BF16)),
            ("b_dec", zeros(&[3], DType::BF16)),
        ];
        let dir = write_raw(tmp.path(), "layers.1", cfg, &t);
        let sae = Sae::load(&dir, None, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(
            (sae.dtype(), sae.num_latents(), sae.k()),
            (DType::F32, 6, 2)
        );
        assert_eq!(sae.w_dec().dtype(), DType::F32);
    }

    #[test]
    fn non_finite_weights_are_refused_naming_tensor_and_row() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = r#"{"num_latents": 4, "k": 2, "d_in": 3}"#;
        let mut dec = vec![0.5f32; 12];
        dec[2 * 3 + 1] = f32::NAN;
        let mut bias = vec![0.0f32; 4];
        bias[1] = f32::INFINITY;
        let cpu = &Device::Cpu;
        let good_bias = zeros(&[4], DType::F32);
        let sets = [
            (
                "model.layers.0",
                good_bias.clone(),
                Tensor::from_vec(dec, (4, 3), cpu).unwrap(),
            ),
            (
                "model.layers.1",
                Tensor::from_vec(bias, 4, cpu).unwrap(),
                zeros(&[4, 3], DType::F32),
            ),
        ];
        let mut errs = Vec::new();
        for (hp, b_enc, w_dec) in sets {
            let t = [
                ("encoder.weight", zeros(&[4, 3], DType::F32)),
                ("encoder.bias", b_enc),
                ("W_dec", w_dec),
                ("b_dec", zeros(&[3], DType::F32)),
            ];
            let dir = write_raw(tmp.path(), hp, cfg, &t);
            errs.push(format!(
                "{:#}",
                Sae::load(&dir, None, &Device::Cpu, DType::F32).unwrap_err()
            ));
        }
        assert!(
            errs[0].contains("`W_dec` row 2") && errs[0].contains("model.layers.0"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].contains("`encoder.bias` entry 1") && errs[1].contains("model.layers.1"),
            "{}",
            errs[1]
        );
    }

    #[test]
    fn load_errors_name_file_tensor_and_shapes() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = r#"{"num_latents": 4, "k": 2, "d_in": 3}"#;
        let good = [
            ("encoder.weight", zeros(&[4, 3], DType::F32)),
            ("encoder.bias", zeros(&[4], DType::F32)),
            ("W_dec", zeros(&[4, 3], DType::F32)),
            ("b_dec", zeros(&[3], DType::F32)),
        ];
        let dir = write_raw(tmp.path(), "model.layers.0", cfg, &good[..3]);
        let err = format!(
            "{:#}",
            Sae::load(&dir, None, &Device::Cpu, DType::F32).unwrap_err()
        );
        assert!(
            err.contains("`b_dec` is missing") && err.contains(WEIGHTS_FILE),
            "{err}"
        );
        assert!(err.contains("W_dec, encoder.bias, encoder.weight"), "{err}");

        let mut bad = good.clone();
        bad[2].1 = zeros(&[4, 5], DType::F32);
        let dir = write_raw(tmp.path(), "model.layers.1", cfg, &bad);
        let err = format!(
            "{:#}",
            Sae::load(&dir, None, &Device::Cpu, DType::F32).unwrap_err()
        );
        assert!(
            err.contains("`W_dec` has shape [4, 5], expected [4, 3]"),
            "{err}"
        );
        assert!(
            err.contains("model.layers.1") && err.contains(WEIGHTS_FILE),
            "{err}"
        );

        let dir = write_raw(tmp.path(), "model.layers.2", "{\"k\": 2", &good);
        let err = format!(
            "{:#}",
            Sae::load(&dir, None, &Device::Cpu, DType::F32).unwrap_err()
        );
        assert!(
            err.contains("not a valid cfg.json") && err.contains("model.layers.2"),
            "{err}"
        );

        let dir = tmp.path().join("model.layers.3");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CFG_FILE), cfg).unwrap();
        let err = format!(
            "{:#}",
            Sae::load(&dir, None, &Device::Cpu, DType::F32).unwrap_err()
        );
        assert!(err.contains("not found") && err.contains(LAYOUT), "{err}");
    }

    #[test]
    fn folder_resolution() {
        let tmp = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            Sae::load(tmp.path(), None, &Device::Cpu, DType::F32).unwrap_err()
        );
        assert!(
            err.contains("no hookpoint folder") && err.contains(LAYOUT),
            "{err}"
        );
        let missing = tmp.path().join("nope");
        let err = format!(
            "{:#}",
            Sae::load(&missing, None, &Device::Cpu, DType::F32).unwrap_err()
        );
        assert!(err.contains("is not a folder"), "{err}");

        for hp in ["model.layers.10", "model.layers.2"] {
            Sae::random(cfg(4, 8, 2), hp, 0, &Device::Cpu)
                .unwrap()
                .save(tmp.path())
                .unwrap();
        }
        let err = format!(
            "{:#}",
            Sae::load(tmp.path(), None, &Device::Cpu, DType::F32).unwrap_err()
        );
        assert!(
            err.contains("several hookpoints (model.layers.2, model.layers.10)"),
            "{err}"
        );
        let err =
            Sae::load(tmp.path(), Some("model.layers.7"), &Device::Cpu, DType::F32).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("no hookpoint `model.layers.7`") && err.contains("model.layers.10"),
            "{err}"
        );
        let sae = Sae::load(
            tmp.path(),
            Some("model.layers.10"),
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        assert_eq!(sae.hookpoint_layer(), Some(10));
    }

    #[test]
    fn compatibility_errors_name_both_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let sae = Sae::random(cfg(4, 8, 2), "model.layers.5", 0, &Device::Cpu).unwrap();
        sae.check_compatible(4, 6).unwrap();
        let dir = sae.save(tmp.path()).unwrap();
        let sae = Sae::load(&dir, None, &Device::Cpu, DType::F32).unwrap();
        let err = sae.check_compatible(4096, 32).unwrap_err().to_string();
        assert!(
            err.contains("d_in = 4") && err.contains("hidden size is 4096"),
            "{err}"
        );
        assert!(
            err.contains(&dir.join(WEIGHTS_FILE).display().to_string()),
            "{err}"
        );
        let err = sae.check_compatible(4, 5).unwrap_err().to_string();
        assert!(
            err.contains("layer 5") && err.contains("has 5 layers"),
            "{err}"
        );
        let odd = Sae::random(cfg(4, 8, 2), "encoder_out", 0, &Device::Cpu).unwrap();
        assert!(
            odd.check_compatible(4, 6)
                .unwrap_err()
                .to_string()
                .contains("names no decoder layer")
        );
    }

    #[test]
    fn from_tensors_checks_shapes_and_save_checks_name() {
        let z = |s: &[usize]| zeros(s, DType::F32);
        let err = Sae::from_tensors(
            cfg(3, 4, 2),
            "h".into(),
            z(&[4, 3]),
            z(&[5]),
            z(&[4, 3]),
            z(&[3]),
        );
        let err = err.unwrap_err().to_string();
        assert!(
            err.contains("`encoder.bias` has shape [5], expected [4]"),
            "{err}"
        );
        let err = Sae::from_tensors(
            cfg(3, 4, 9),
            "h".into(),
            z(&[4, 3]),
            z(&[4]),
            z(&[4, 3]),
            z(&[3]),
        );
        assert!(format!("{:#}", err.unwrap_err()).contains("k = 9"));
        let bad = Sae::random(cfg(3, 4, 2), "a/b", 0, &Device::Cpu).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        assert!(
            bad.save(tmp.path())
                .unwrap_err()
                .to_string()
                .contains("folder name")
        );
    }
}
