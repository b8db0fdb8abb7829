//! Pieces shared by the ports of Hugging Face image processors (LLaVA-NeXT's and CLIP's): the
//! config forms they accept and the rescale-then-normalise step, in transformers' precision.

use anyhow::{Result, bail};
use serde::{Deserialize, Deserializer};

/// A `preprocessor_config.json` size given as a bare number or as its dict form.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum IntOr<T> {
    /// A bare number; what it stands for depends on the key.
    Int(u32),
    /// The dict form.
    Other(T),
}

/// A per-channel value given as one number or three (HF image processors accept both).
pub(crate) fn de_triple<'de, D: Deserializer<'de>>(d: D) -> Result<[f32; 3], D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Triple {
        One(f32),
        Three([f32; 3]),
    }
    Ok(match Triple::deserialize(d)? {
        Triple::One(v) => [v; 3],
        Triple::Three(v) => v,
    })
}

/// Refuse a `rescale_factor` or `image_std` that would make pixel values infinite or NaN;
/// `origin` names the config file.
pub(crate) fn check_scaling(origin: &str, rescale_factor: f64, image_std: &[f32; 3]) -> Result<()> {
    if !(rescale_factor.is_finite() && rescale_factor > 0.0) {
        bail!("{origin}: rescale_factor {rescale_factor} must be positive");
    }
    if image_std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        bail!("{origin}: image_std {image_std:?} must be positive");
    }
    Ok(())
}

/// Processed value of every 8-bit level per channel: times `rescale` when given (the product in
/// f64, then rounded to f32, as numpy does it), then `(x - mean) / std` in f32 when `normalize`
/// gives `(mean, std)`. A table lookup per pixel is then exact and cheap.
pub(crate) fn level_lut(
    rescale: Option<f64>,
    normalize: Option<(&[f32; 3], &[f32; 3])>,
) -> [[f32; 256]; 3] {
    let mut lut = [[0.0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, out) in table.iter_mut().enumerate() {
            let mut x = match rescale {
                Some(factor) => (v as f64 * factor) as f32,
                None => v as f32,
            };
            if let Some((mean, std)) = normalize {
                x = (x - mean[c]) / std[c];
            }
            *out = x;
        }
    }
    lut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "de_triple")]
        v: [f32; 3],
        n: IntOr<[u32; 2]>,
    }

    #[test]
    fn forms_parse() {
        let t: T = serde_json::from_str(r#"{"v": 0.5, "n": 3}"#).unwrap();
        assert_eq!(t.v, [0.5; 3]);
        assert!(matches!(t.n, IntOr::Int(3)));
        let t: T = serde_json::from_str(r#"{"v": [1, 2, 3], "n": [4, 5]}"#).unwrap();
        assert_eq!(t.v, [1.0, 2.0, 3.0]);
        assert!(matches!(t.n, IntOr::Other([4, 5])));
        assert!(serde_json::from_str::<T>(r#"{"v": [1, 2], "n": 1}"#).is_err());
    }

    #[test]
    fn lut_rescales_in_f64_then_normalises_in_f32() {
        let (mean, std) = ([0.5f32, 0.0, 0.25], [0.5f32, 1.0, 2.0]);
        let lut = level_lut(Some(1.0 / 255.0), Some((&mean, &std)));
        assert_eq!(lut[0][0], -1.0);
        assert_eq!(lut[0][255], 1.0);
        assert_eq!(lut[1][51], (51.0f64 / 255.0) as f32);
        assert_eq!(lut[2][255], (1.0 - 0.25) / 2.0);
        let raw = level_lut(None, None);
        assert_eq!((raw[0][7], raw[2][255]), (7.0, 255.0));
        assert_eq!(level_lut(Some(2.0), None)[1][3], 6.0);
    }

    #[test]
    fn bad_scaling_is_refused_by_name() {
        check_scaling("p.json", 1.0 / 255.0, &[0.2; 3]).unwrap();
        let e = check_scaling("p.json", 0.0, &[0.2; 3]).unwrap_err();
        assert_eq!(e.to_string(), "p.json: rescale_factor 0 must be positive");
        let e = check_scaling("p.json", 1.0, &[0.2, 0.0, 0.2]).unwrap_err();
        assert!(e.to_string().starts_with("p.json: image_std"), "{e}");
        assert!(check_scaling("p.json", f64::NAN, &[0.2; 3]).is_err());
    }
}
