//! CLIP's image processor: resize the shortest side, centre-crop, rescale, normalise.
//!
//! Follows transformers' PIL-backed `CLIPImageProcessor` (the only backend before
//! transformers 5, so the one the original scorer ran): RGB conversion (alpha dropped),
//! `PIL.Image.resize` with the configured filter (reproduced exactly by [`super::resample`]),
//! a centre crop that zero-pads when the image is smaller than the crop, `x * rescale_factor`
//! in f64 then f32, and `(x - mean) / std` in f32. transformers 5's default torchvision backend
//! resamples differently and can differ by a grey level.

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};
use serde::{Deserialize, Deserializer};

use super::resample::{Filter, resize};
use crate::util::image_processor::{IntOr, check_scaling, level_lut};

/// `size` of the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ResizeTo {
    /// `{"shortest_edge": n}` (or a bare int): scale so the short side is `n`.
    ShortestEdge {
        /// Target of the short side.
        shortest_edge: u32,
    },
    /// `{"height": h, "width": w}`: squash to exactly this size.
    Exact {
        /// Target height.
        height: u32,
        /// Target width.
        width: u32,
    },
}

/// `crop_size` of the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Crop {
    /// Crop height.
    pub height: u32,
    /// Crop width.
    pub width: u32,
}

/// `preprocessor_config.json` of a CLIP checkpoint; defaults are `CLIPImageProcessor`'s.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipProcessorConfig {
    /// Resize before cropping.
    pub do_resize: bool,
    /// Resize target.
    #[serde(deserialize_with = "de_size")]
    pub size: ResizeTo,
    /// PIL filter id (3 = bicubic).
    pub resample: u32,
    /// Centre-crop after resizing.
    pub do_center_crop: bool,
    /// Crop size.
    #[serde(deserialize_with = "de_crop")]
    pub crop_size: Crop,
    /// Multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// Usually 1/255.
    pub rescale_factor: f64,
    /// Normalise with `image_mean` / `image_std`.
    pub do_normalize: bool,
    /// Per-channel mean (RGB).
    #[serde(deserialize_with = "crate::util::image_processor::de_triple")]
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    #[serde(deserialize_with = "crate::util::image_processor::de_triple")]
    pub image_std: [f32; 3],
}

impl Default for ClipProcessorConfig {
    fn default() -> Self {
        Self {
            do_resize: true,
            size: ResizeTo::ShortestEdge { shortest_edge: 224 },
            resample: 3,
            do_center_crop: true,
            crop_size: Crop {
                height: 224,
                width: 224,
            },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
        }
    }
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<ResizeTo, D::Error> {
    Ok(match IntOr::<ResizeTo>::deserialize(d)? {
        IntOr::Int(n) => ResizeTo::ShortestEdge { shortest_edge: n },
        IntOr::Other(s) => s,
    })
}

fn de_crop<'de, D: Deserializer<'de>>(d: D) -> Result<Crop, D::Error> {
    Ok(match IntOr::<Crop>::deserialize(d)? {
        IntOr::Int(n) => Crop {
            height: n,
            width: n,
        },
        IntOr::Other(c) => c,
    })
}

impl ClipProcessorConfig {
    /// Parse `preprocessor_config.json` text; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("{origin}: not a CLIP preprocessor_config.json: {e}"))?;
        Filter::from_pil(cfg.resample).with_context(|| origin.to_string())?;
        check_scaling(origin, cfg.rescale_factor, &cfg.image_std)?;
        Ok(cfg)
    }

    /// `(height, width)` of the processed image.
    pub fn output_size(&self) -> (u32, u32) {
        if self.do_center_crop {
            (self.crop_size.height, self.crop_size.width)
        } else {
            match self.size {
                ResizeTo::Exact { height, width } => (height, width),
                // Uncropped shortest-edge output depends on the image; only square inputs fit.
                ResizeTo::ShortestEdge { shortest_edge } => (shortest_edge, shortest_edge),
            }
        }
    }

    /// `(height, width)` after the resize step, as transformers computes it.
    fn resized_size(&self, h: u32, w: u32) -> (u32, u32) {
        match self.size {
            ResizeTo::Exact { height, width } => (height, width),
            ResizeTo::ShortestEdge { shortest_edge: s } => {
                let (short, long) = (h.min(w), h.max(w));
                // Python: int(s * long / short), a true division then truncation.
                let new_long = ((u64::from(s) * u64::from(long)) as f64 / f64::from(short)) as u32;
                if w <= h { (new_long, s) } else { (s, new_long) }
            }
        }
    }

    /// Normalised value of every byte per channel, computed in transformers' precision.
    fn lut(&self) -> [[f32; 256]; 3] {
        level_lut(
            self.do_rescale.then_some(self.rescale_factor),
            self.do_normalize
                .then_some((&self.image_mean, &self.image_std)),
        )
    }

    /// The resized and cropped 8-bit image, before rescaling.
    pub fn crop_image(&self, img: &DynamicImage) -> Result<RgbImage> {
        let mut rgb = img.to_rgb8();
        let (w, h) = rgb.dimensions();
        if w == 0 || h == 0 {
            bail!("image has zero size ({w}x{h})");
        }
        if self.do_resize {
            let (nh, nw) = self.resized_size(h, w);
            if nh == 0 || nw == 0 {
                bail!("image {w}x{h} is too thin to resize for CLIP");
            }
            rgb = resize(&rgb, nw, nh, Filter::from_pil(self.resample)?);
        }
        if !self.do_center_crop {
            return Ok(rgb);
        }
        let (w, h) = rgb.dimensions();
        let Crop {
            height: ch,
            width: cw,
        } = self.crop_size;
        // Offsets use Python's floor division; rows/columns outside the image are zero padding.
        let top = (i64::from(h) - i64::from(ch)).div_euclid(2);
        let left = (i64::from(w) - i64::from(cw)).div_euclid(2);
        Ok(RgbImage::from_fn(cw, ch, |x, y| {
            let (sx, sy) = (left + i64::from(x), top + i64::from(y));
            if (0..i64::from(w)).contains(&sx) && (0..i64::from(h)).contains(&sy) {
                *rgb.get_pixel(sx as u32, sy as u32)
            } else {
                image::Rgb([0, 0, 0])
            }
        }))
    }

    /// `[n, 3, H, W]` f32 pixel values on the CPU for a batch of images.
    pub fn pixel_values(&self, images: &[DynamicImage]) -> Result<Tensor> {
        let (oh, ow) = self.output_size();
        let lut = self.lut();
        let plane = (oh * ow) as usize;
        let mut data = Vec::with_capacity(images.len() * 3 * plane);
        for (i, img) in images.iter().enumerate() {
            let crop = self
                .crop_image(img)
                .with_context(|| format!("CLIP preprocessing of image {i}"))?;
            if crop.dimensions() != (ow, oh) {
                bail!(
                    "CLIP preprocessing of image {i}: got {}x{}, expected {ow}x{oh}; \
                     set do_center_crop in preprocessor_config.json",
                    crop.width(),
                    crop.height()
                );
            }
            for (c, table) in lut.iter().enumerate() {
                data.extend(crop.pixels().map(|p| table[p.0[c] as usize]));
            }
        }
        Ok(Tensor::from_vec(
            data,
            (images.len(), 3, oh as usize, ow as usize),
            &Device::Cpu,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn cfg(size: u32, crop: u32) -> ClipProcessorConfig {
        ClipProcessorConfig {
            size: ResizeTo::ShortestEdge {
                shortest_edge: size,
            },
            crop_size: Crop {
                height: crop,
                width: crop,
            },
            ..Default::default()
        }
    }

    #[test]
    fn resize_follows_the_shortest_edge() {
        let c = cfg(224, 224);
        assert_eq!(c.resized_size(336, 672), (224, 448));
        assert_eq!(c.resized_size(375, 500), (224, 298)); // 298.67 truncated
        assert_eq!(c.resized_size(1008, 336), (672, 224));
        assert_eq!(c.resized_size(224, 224), (224, 224));
    }

    #[test]
    fn centre_crop_takes_the_middle_and_pads_small_images() {
        // 6 wide, 2 high; no resize: crop 4x4 keeps columns 1..5 and pads one row above and below.
        let img = RgbImage::from_fn(6, 2, |x, _| Rgb([x as u8 * 10 + 1, 0, 0]));
        let c = ClipProcessorConfig {
            do_resize: false,
            ..cfg(4, 4)
        };
        let out = c.crop_image(&DynamicImage::ImageRgb8(img)).unwrap();
        assert_eq!(out.dimensions(), (4, 4));
        let row = |y: u32| (0..4).map(|x| out.get_pixel(x, y).0[0]).collect::<Vec<_>>();
        assert_eq!(row(0), [0, 0, 0, 0]);
        assert_eq!(row(1), [11, 21, 31, 41]);
        assert_eq!(row(2), [11, 21, 31, 41]);
        assert_eq!(row(3), [0, 0, 0, 0]);
    }

    #[test]
    fn values_are_rescaled_and_normalised_channel_first() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 30, Rgb([255, 0, 128])));
        let c = cfg(8, 8);
        let px = c.pixel_values(&[img.clone(), img]).unwrap();
        assert_eq!(px.dims(), &[2, 3, 8, 8]);
        let v = px.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = |ch: usize, b: u8| (b as f32 / 255.0 - c.image_mean[ch]) / c.image_std[ch];
        assert!((v[0] - want(0, 255)).abs() < 1e-6);
        assert!((v[64] - want(1, 0)).abs() < 1e-6);
        assert!((v[128 + 63] - want(2, 128)).abs() < 1e-6);
        assert_eq!(v[..192], v[192..]);
    }

    #[test]
    fn config_forms_parse() {
        let hub = r#"{"crop_size": 224, "do_center_crop": true, "do_normalize": true,
            "do_resize": true, "feature_extractor_type": "CLIPFeatureExtractor",
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}"#;
        let c = ClipProcessorConfig::from_json(hub, "p.json").unwrap();
        assert_eq!(c.size, ResizeTo::ShortestEdge { shortest_edge: 224 });
        assert_eq!(c.output_size(), (224, 224));
        let exact = r#"{"size": {"height": 32, "width": 48}, "do_center_crop": false}"#;
        let c = ClipProcessorConfig::from_json(exact, "p.json").unwrap();
        assert_eq!(c.output_size(), (32, 48));
        let err = ClipProcessorConfig::from_json(r#"{"resample": 0}"#, "p.json").unwrap_err();
        assert!(format!("{err:#}").contains("p.json"), "{err:#}");
        let err = ClipProcessorConfig::from_json(r#"{"size": "big"}"#, "p.json").unwrap_err();
        assert!(err.to_string().contains("not a CLIP preprocessor"));
    }
}
