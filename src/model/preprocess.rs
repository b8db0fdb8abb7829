//! Image preprocessing: anyres views normalised for the CLIP tower.
//!
//! Reproduces transformers' `LlavaNextImageProcessor` for one image:
//! 1. convert to RGB (alpha dropped without compositing, like PIL's `convert("RGB")`; EXIF
//!    orientation is not applied, as PIL's `Image.open` does not either);
//! 2. base view: the whole image squashed to `s x s` (`resize(image, (s, s))`, not a centre crop);
//! 3. tiles: aspect-fit resize into the best pinpoint canvas, zero padding centred with the odd
//!    pixel at the bottom/right (transformers >= 4.46; 4.45.2 padded both sides by the floor and
//!    so could leave the canvas one pixel short), cut row-major into `tile_px` squares;
//! 4. rescale by 1/255 (f64, then f32) and normalise with the CLIP mean/std (f32), channel-first.
//!
//! The per-view "resize shortest edge to s, centre-crop to crop_size" of transformers is a no-op
//! when `s == crop_size`, which every LLaVA-NeXT checkpoint ships; other combinations are refused.
//! Bicubic and bilinear resizing is Pillow's own fixed-point resampler ([`crate::util::pillow`]),
//! so every 8-bit pixel equals what transformers' PIL processor makes; nearest and Lanczos use
//! the image crate's filters and may differ by a grey level.

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use image::imageops::{self, FilterType};
use image::{DynamicImage, RgbImage};
use serde::{Deserialize, Deserializer, Serialize};

use super::anyres::ImageLayout;
pub use super::image_file::{ImageLimits, load_image, load_image_within};
use crate::util::image_processor::{IntOr, check_scaling, de_triple, level_lut};
use crate::util::pillow;

/// `size` of the processor: `{"shortest_edge": n}` or `{"height": h, "width": w}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SizeDict {
    /// Target of the shortest edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortest_edge: Option<u32>,
    /// Explicit height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Explicit width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
}

/// `crop_size` of the processor: the side of every view fed to the vision tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CropSize {
    /// Crop height.
    pub height: u32,
    /// Crop width.
    pub width: u32,
}

/// `preprocessor_config.json` of a LLaVA-NeXT checkpoint; unknown keys are ignored.
///
/// Defaults follow transformers' class except `size`/`crop_size`, which default to 336 (the value
/// every LLaVA-NeXT checkpoint stores) instead of the class's 224.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageProcessorConfig {
    /// Resize views (always effectively on; kept for round trips).
    pub do_resize: bool,
    /// Base-view target size.
    #[serde(deserialize_with = "de_size")]
    pub size: SizeDict,
    /// PIL resampling filter id (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic).
    pub resample: u32,
    /// Centre-crop views (a no-op for supported configs; kept for round trips).
    pub do_center_crop: bool,
    /// Side of each view.
    #[serde(deserialize_with = "de_crop")]
    pub crop_size: CropSize,
    /// Multiply pixel values by `rescale_factor`.
    pub do_rescale: bool,
    /// Usually 1/255.
    pub rescale_factor: f64,
    /// Normalise with `image_mean` / `image_std`.
    pub do_normalize: bool,
    /// Per-channel mean (RGB).
    #[serde(deserialize_with = "de_triple")]
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    #[serde(deserialize_with = "de_triple")]
    pub image_std: [f32; 3],
    /// Pad the view axis of a batch (irrelevant for single images).
    pub do_pad: bool,
    /// Convert to RGB first (always done here; the model needs three channels).
    pub do_convert_rgb: bool,
    /// Candidate canvases `[height, width]`; the model config's list is the one that counts.
    pub image_grid_pinpoints: Option<Vec<[u32; 2]>>,
}

impl Default for ImageProcessorConfig {
    fn default() -> Self {
        Self {
            do_resize: true,
            size: SizeDict {
                shortest_edge: Some(336),
                height: None,
                width: None,
            },
            resample: 3,
            do_center_crop: true,
            crop_size: CropSize {
                height: 336,
                width: 336,
            },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
            do_pad: true,
            do_convert_rgb: true,
            image_grid_pinpoints: None,
        }
    }
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<SizeDict, D::Error> {
    // A bare int means the shortest edge (transformers: default_to_square=False for `size`).
    Ok(match IntOr::<SizeDict>::deserialize(d)? {
        IntOr::Int(n) => SizeDict {
            shortest_edge: Some(n),
            ..SizeDict::default()
        },
        IntOr::Other(s) => s,
    })
}

fn de_crop<'de, D: Deserializer<'de>>(d: D) -> Result<CropSize, D::Error> {
    Ok(match IntOr::<CropSize>::deserialize(d)? {
        IntOr::Int(n) => CropSize {
            height: n,
            width: n,
        },
        IntOr::Other(c) => c,
    })
}

impl ImageProcessorConfig {
    /// Parse `preprocessor_config.json` text; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!("{origin}: not a LLaVA-NeXT preprocessor_config.json: {e}")
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Side of every view in pixels (the crop size).
    pub fn tile_px(&self) -> u32 {
        self.crop_size.height
    }

    /// Side of the squashed base view before the (no-op) crop.
    pub fn base_px(&self) -> u32 {
        match (self.size.shortest_edge, self.size.height, self.size.width) {
            (Some(s), _, _) => s,
            (None, Some(h), Some(w)) => h.min(w),
            _ => 0,
        }
    }

    /// Reject settings this port does not reproduce, saying which key to fix.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let CropSize { height, width } = self.crop_size;
        if height == 0 || height != width {
            bail!("{origin}: crop_size {height}x{width} must be square and non-zero");
        }
        if self.base_px() != height {
            bail!(
                "{origin}: size {:?} does not match crop_size {height}; only configs whose base size \
                 equals the crop size (as in every LLaVA-NeXT checkpoint) are supported",
                self.size
            );
        }
        self.filter().with_context(|| origin.to_string())?;
        check_scaling(origin, self.rescale_factor, &self.image_std)
    }

    /// The resampler for the PIL `resample` id.
    pub fn filter(&self) -> Result<Resample> {
        Ok(match self.resample {
            0 => Resample::Approximate(FilterType::Nearest),
            1 => Resample::Approximate(FilterType::Lanczos3),
            2 => Resample::Pillow(pillow::Filter::Bilinear),
            3 => Resample::Pillow(pillow::Filter::Bicubic),
            r => bail!("resample {r} is not supported (use 0, 1, 2 or 3 = bicubic)"),
        })
    }

    /// Normalised value of every u8 level per channel, computed as transformers does.
    fn lut(&self) -> [[f32; 256]; 3] {
        level_lut(
            self.do_rescale.then_some(self.rescale_factor),
            self.do_normalize
                .then_some((&self.image_mean, &self.image_std)),
        )
    }
}

/// How views are resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// Pillow's resampler, exact for 8-bit images.
    Pillow(pillow::Filter),
    /// An image-crate filter close to PIL's.
    Approximate(FilterType),
}

impl Resample {
    /// `rgb` resized to `w x h`.
    fn resize(self, rgb: &RgbImage, w: u32, h: u32) -> Result<RgbImage> {
        match self {
            Resample::Pillow(filter) => {
                let (iw, ih) = rgb.dimensions();
                let px = pillow::resize(
                    rgb.as_raw(),
                    (iw as usize, ih as usize),
                    3,
                    (w as usize, h as usize),
                    filter,
                );
                RgbImage::from_raw(w, h, px)
                    .with_context(|| format!("resizing to {w}x{h} gave a buffer of another size"))
            }
            Resample::Approximate(filter) => Ok(imageops::resize(rgb, w, h, filter)),
        }
    }
}

/// Pixel values of all views of one image plus the token geometry they imply.
pub struct PreprocessedImage {
    /// f32 `[views, 3, tile_px, tile_px]` on the CPU: base view first, then tiles row-major.
    pub pixel_values: Tensor,
    /// Anyres geometry of this image.
    pub layout: ImageLayout,
}

/// Write one `t x t` window of `src` at (x0, y0) into `out` channel-first, through the LUT.
fn write_view(out: &mut [f32], src: &RgbImage, x0: u32, y0: u32, t: u32, lut: &[[f32; 256]; 3]) {
    let plane = (t * t) as usize;
    for y in 0..t {
        for x in 0..t {
            let px = src.get_pixel(x0 + x, y0 + y).0;
            let i = (y * t + x) as usize;
            for c in 0..3 {
                out[c * plane + i] = lut[c][px[c] as usize];
            }
        }
    }
}

/// Turn an image into the views and geometry LLaVA-NeXT expects.
pub fn preprocess(
    img: &DynamicImage,
    cfg: &ImageProcessorConfig,
    pinpoints: &[(u32, u32)],
    patch_px: u32,
) -> Result<PreprocessedImage> {
    cfg.validate("image processor config")?;
    let converted;
    let rgb: &RgbImage = match img.as_rgb8() {
        Some(rgb) => rgb,
        None => {
            converted = img.to_rgb8();
            &converted
        }
    };
    let (w, h) = rgb.dimensions();
    let t = cfg.tile_px();
    let layout = ImageLayout::new((h, w), pinpoints, t, patch_px)?;
    let filter = cfg.filter()?;

    let base = filter.resize(rgb, t, t)?;
    let (rh, rw) = layout.resized;
    let resized = filter.resize(rgb, rw, rh)?;
    let (bh, bw) = layout.best;
    let mut canvas = RgbImage::new(bw, bh); // zero = black padding, as transformers pads
    imageops::replace(
        &mut canvas,
        &resized,
        layout.pad.1 as i64,
        layout.pad.0 as i64,
    );

    let lut = cfg.lut();
    let view_len = 3 * (t * t) as usize;
    let views = layout.num_views();
    let mut data = vec![0.0f32; views * view_len];
    let mut chunks = data.chunks_mut(view_len);
    if let Some(out) = chunks.next() {
        write_view(out, &base, 0, 0, t, &lut);
    }
    for ty in 0..layout.tiles.0 {
        for tx in 0..layout.tiles.1 {
            if let Some(out) = chunks.next() {
                write_view(out, &canvas, tx * t, ty * t, t, &lut);
            }
        }
    }
    let pixel_values = Tensor::from_vec(data, (views, 3, t as usize, t as usize), &Device::Cpu)?;
    Ok(PreprocessedImage {
        pixel_values,
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, Rgba, RgbaImage};

    const PINS: [(u32, u32); 5] = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

    fn run(img: &DynamicImage) -> PreprocessedImage {
        preprocess(img, &ImageProcessorConfig::default(), &PINS, 14).unwrap()
    }

    /// Values as `[view][channel][y][x]`.
    fn values(p: &PreprocessedImage) -> Vec<Vec<Vec<Vec<f32>>>> {
        let dims = p.pixel_values.dims().to_vec();
        let flat: Vec<f32> = p.pixel_values.flatten_all().unwrap().to_vec1().unwrap();
        let (v, c, t) = (dims[0], dims[1], dims[2]);
        (0..v)
            .map(|vi| {
                (0..c)
                    .map(|ci| {
                        (0..t)
                            .map(|y| {
                                let start = ((vi * c + ci) * t + y) * t;
                                flat[start..start + t].to_vec()
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    fn norm(c: usize, v: u8) -> f32 {
        let mean = [0.481_454_66f32, 0.457_827_5, 0.408_210_73];
        let std = [0.268_629_54f32, 0.261_302_6, 0.275_777_1];
        (v as f32 / 255.0 - mean[c]) / std[c]
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn view_counts_and_shapes() {
        for (w, h, views) in [
            (640, 480, 5),
            (1000, 1000, 5),
            (300, 300, 3),
            (336, 336, 3),
            (672, 336, 3),
            (336, 1008, 4),
            (500, 375, 5),
        ] {
            let p = run(&DynamicImage::ImageRgb8(RgbImage::new(w, h)));
            assert_eq!(p.pixel_values.dims(), &[views, 3, 336, 336], "{w}x{h}");
            assert_eq!(p.layout.num_views(), views);
            assert_eq!(p.layout.original, (h, w));
        }
    }

    #[test]
    fn uniform_colour_and_padding_values() {
        let rgb = [200u8, 100, 50];
        let p = run(&DynamicImage::ImageRgb8(RgbImage::from_pixel(
            640,
            480,
            Rgb(rgb),
        )));
        assert_eq!(p.layout.pad, (84, 0));
        let v = values(&p);
        for c in 0..3 {
            let inside = norm(c, rgb[c]);
            let padded = norm(c, 0);
            assert!(
                v[0][c].iter().flatten().all(|&x| close(x, inside)),
                "base c{c}"
            );
            for (tile, top_tile) in [(1, true), (2, true), (3, false), (4, false)] {
                for (y, row) in v[tile][c].iter().enumerate() {
                    // Canvas rows [84, 588) hold the image; tiles 1-2 start at 0, tiles 3-4 at 336.
                    let canvas_y = y + if top_tile { 0 } else { 336 };
                    let want = if (84..588).contains(&canvas_y) {
                        inside
                    } else {
                        padded
                    };
                    assert!(
                        row.iter().all(|&x| close(x, want)),
                        "tile {tile} row {y} c{c}: {} vs {want}",
                        row[0]
                    );
                }
            }
        }
    }

    #[test]
    fn odd_padding_remainder_goes_to_the_bottom() {
        // 1000 x 330 (W x H) fits the (336, 1008) canvas as 333 rows: 1 pad row on top, 2 below.
        let img = RgbImage::from_pixel(1000, 330, Rgb([255, 255, 255]));
        let p = run(&DynamicImage::ImageRgb8(img));
        assert_eq!((p.layout.resized, p.layout.pad), ((333, 1008), (1, 0)));
        let v = values(&p);
        assert_eq!(v.len(), 4);
        for view in &v[1..] {
            let col: Vec<f32> = view[0].iter().map(|row| row[500 % 336]).collect();
            assert!(close(col[0], norm(0, 0)) && close(col[1], norm(0, 255)));
            assert!(close(col[333], norm(0, 255)) && close(col[334], norm(0, 0)));
            assert!(close(col[335], norm(0, 0)));
        }
    }

    #[test]
    fn tiles_are_row_major_and_base_is_a_squash() {
        // 1008 x 336 (W x H): red | green | blue thirds, canvas (336, 1008) with no padding.
        let img = RgbImage::from_fn(1008, 336, |x, _| match x / 336 {
            0 => Rgb([255, 0, 0]),
            1 => Rgb([0, 255, 0]),
            _ => Rgb([0, 0, 255]),
        });
        let p = run(&DynamicImage::ImageRgb8(img));
        assert_eq!(p.layout.best, (336, 1008));
        let v = values(&p);
        for (tile, lit) in [(1, 0), (2, 1), (3, 2)] {
            for (c, plane) in v[tile].iter().enumerate() {
                let want = norm(c, if c == lit { 255 } else { 0 });
                assert!(
                    plane.iter().flatten().all(|&x| close(x, want)),
                    "tile {tile}"
                );
            }
        }
        // A centre crop would lose the red and blue thirds; the squash keeps both edges.
        assert!(close(v[0][0][168][0], norm(0, 255)) && close(v[0][2][168][0], norm(2, 0)));
        assert!(close(v[0][2][168][335], norm(2, 255)) && close(v[0][0][168][335], norm(0, 0)));
        assert!(close(v[0][1][168][168], norm(1, 255)));
    }

    #[test]
    fn grey_and_rgba_inputs() {
        let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(300, 200, Luma([77])));
        let v = values(&run(&grey));
        for (c, plane) in v[0].iter().enumerate() {
            assert!(close(plane[10][10], norm(c, 77)));
        }
        // Alpha is dropped, not composited: a fully transparent pixel keeps its colour.
        let rgba = DynamicImage::ImageRgba8(RgbaImage::from_pixel(300, 200, Rgba([10, 20, 30, 0])));
        let v = values(&run(&rgba));
        for (c, want) in [10u8, 20, 30].into_iter().enumerate() {
            assert!(close(v[0][c][100][100], norm(c, want)));
        }
        let la = DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(
            50,
            60,
            image::LumaA([9, 128]),
        ));
        assert_eq!(run(&la).pixel_values.dims()[1], 3);
    }

    #[test]
    fn config_parsing() {
        let hub = r#"{
          "aspect_ratio_setting": "anyres",
          "crop_size": {"height": 336, "width": 336},
          "do_center_crop": true, "do_convert_rgb": true, "do_normalize": true,
          "do_pad": true, "do_rescale": true, "do_resize": true,
          "image_grid_pinpoints": [[336,672],[672,336],[672,672],[1008,336],[336,1008]],
          "image_mean": [0.48145466, 0.4578275, 0.40821073],
          "image_processor_type": "LlavaNextImageProcessor",
          "image_std": [0.26862954, 0.26130258, 0.27577711],
          "processor_class": "LlavaNextProcessor",
          "resample": 3, "rescale_factor": 0.00392156862745098,
          "size": {"shortest_edge": 336}
        }"#;
        let cfg = ImageProcessorConfig::from_json(hub, "hub.json").unwrap();
        assert_eq!(cfg.tile_px(), 336);
        assert_eq!(cfg.image_grid_pinpoints.as_ref().map(|p| p.len()), Some(5));
        assert_eq!(cfg.image_mean, ImageProcessorConfig::default().image_mean);

        let ints = r#"{"crop_size": 224, "size": 224, "image_mean": 0.5, "image_std": 0.5}"#;
        let cfg = ImageProcessorConfig::from_json(ints, "ints.json").unwrap();
        assert_eq!(
            (cfg.tile_px(), cfg.base_px(), cfg.image_mean),
            (224, 224, [0.5; 3])
        );
        let hw = r#"{"size": {"height": 336, "width": 400}}"#;
        assert_eq!(
            ImageProcessorConfig::from_json(hw, "hw").unwrap().base_px(),
            336
        );

        let cfg = ImageProcessorConfig::from_json("{}", "empty").unwrap();
        assert_eq!((cfg.tile_px(), cfg.resample), (336, 3));

        let err = ImageProcessorConfig::from_json(r#"{"size": {"shortest_edge": 224}}"#, "x.json")
            .unwrap_err();
        assert!(err.to_string().contains("x.json") && err.to_string().contains("crop_size"));
        let err = ImageProcessorConfig::from_json(r#"{"resample": 5}"#, "r.json").unwrap_err();
        assert!(format!("{err:#}").contains("resample 5"), "{err:#}");
        let err = ImageProcessorConfig::from_json("[1,2]", "bad.json").unwrap_err();
        assert!(err.to_string().contains("bad.json"));
    }
}
