//! What lies under every patch of every view the model sees of a shapes image: the colour and
//! shape of the object covering it, or background. The labels come from the exact masks pushed
//! through the model's own preprocessing, so they follow the anyres geometry (resizing, padding,
//! tiling) without a second implementation of it.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, GrayImage, RgbImage};

use super::shapes::{Colour, ImagePlan, Shape};
use crate::model::preprocess::{ImageProcessorConfig, preprocess};

/// Classes of a colour (or shape) label: background, then [`Colour::ALL`] (or [`Shape::ALL`]).
pub const LABEL_CLASSES: usize = 7;

/// Least covered share of a patch for it to be labelled with its object.
const COVERED: f32 = 0.5;

/// Per-patch labels of one image's views, `[views * patches]` in the views' row-major order.
pub struct PatchLabels {
    /// 0 for background, else 1 + the index of the object's colour in [`Colour::ALL`].
    pub colour: Vec<u32>,
    /// 0 for background, else 1 + the index of the object's shape in [`Shape::ALL`].
    pub shape: Vec<u32>,
}

impl PatchLabels {
    /// The colour labels as a tensor on the CPU.
    pub fn colour_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::new(self.colour.as_slice(), &Device::Cpu)?)
    }

    /// The shape labels as a tensor on the CPU.
    pub fn shape_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::new(self.shape.as_slice(), &Device::Cpu)?)
    }

    /// How many patches lie on an object.
    pub fn on_objects(&self) -> usize {
        self.colour.iter().filter(|&&c| c != 0).count()
    }
}

/// Class index of a colour label.
pub fn colour_class(c: Colour) -> u32 {
    1 + Colour::ALL.iter().position(|&x| x == c).unwrap_or(0) as u32
}

/// Class index of a shape label.
pub fn shape_class(s: Shape) -> u32 {
    1 + Shape::ALL.iter().position(|&x| x == s).unwrap_or(0) as u32
}

/// Labels of every patch of `plan`'s views, from its rendered `masks` (one per object, in plan
/// order): a patch takes the object covering most of it when that is at least half of it.
///
/// Masks travel three at a time as the channels of one image through `processor` without
/// normalisation, so a view's pixel is the share of it an object covers (padding covers none).
pub fn patch_labels(
    plan: &ImagePlan,
    masks: &[GrayImage],
    processor: &ImageProcessorConfig,
    pinpoints: &[(u32, u32)],
    patch: u32,
) -> Result<PatchLabels> {
    let (w, h) = (plan.width, plan.height);
    let mut coverage = ImageProcessorConfig {
        do_normalize: false,
        do_rescale: true,
        rescale_factor: 1.0 / 255.0,
        // Shares of a patch need no sharper resampling than this.
        resample: 2,
        ..processor.clone()
    };
    coverage.image_mean = [0.0; 3];
    coverage.image_std = [1.0; 3];
    let mut best: Vec<(f32, Option<usize>)> = Vec::new();
    for (chunk, group) in masks.chunks(3).enumerate() {
        let mut packed = RgbImage::new(w, h);
        for (channel, mask) in group.iter().enumerate() {
            for (x, y, p) in mask.enumerate_pixels() {
                packed.get_pixel_mut(x, y).0[channel] = p.0[0];
            }
        }
        let pre = preprocess(
            &DynamicImage::ImageRgb8(packed),
            &coverage,
            pinpoints,
            patch,
        )
        .with_context(|| format!("{}: preprocessing its masks failed", plan.id))?;
        // [views, 3, g, g]: each channel's share of each patch.
        let shares = pre
            .pixel_values
            .to_dtype(DType::F32)?
            .avg_pool2d(patch as usize)?;
        let (views, _, g, _) = shares.dims4()?;
        let shares = shares.permute((1, 0, 2, 3))?.reshape((3, views * g * g))?;
        let shares = shares.to_vec2::<f32>()?;
        if best.is_empty() {
            best = vec![(0.0, None); views * g * g];
        }
        for (channel, share) in shares.iter().take(group.len()).enumerate() {
            for (slot, &covered) in best.iter_mut().zip(share) {
                if covered > slot.0 {
                    *slot = (covered, Some(chunk * 3 + channel));
                }
            }
        }
    }
    let (mut colour, mut shape) = (
        Vec::with_capacity(best.len()),
        Vec::with_capacity(best.len()),
    );
    for (covered, k) in best {
        match k.filter(|_| covered >= COVERED).map(|k| &plan.objects[k]) {
            Some(obj) => {
                colour.push(colour_class(obj.colour));
                shape.push(shape_class(obj.shape));
            }
            None => {
                colour.push(0);
                shape.push(0);
            }
        }
    }
    Ok(PatchLabels { colour, shape })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::shapes::{ShapesSpec, plan_shapes, render};

    #[test]
    fn labels_follow_the_masks_in_every_view() {
        let (_dir, config, _tok) = crate::sample::train_model::test_world(3);
        let processor = ImageProcessorConfig::from_json(
            &crate::sample::checkpoint::sample_preprocessor().to_string(),
            "sample preprocessor",
        )
        .unwrap();
        let plans = plan_shapes(&ShapesSpec { seed: 3, count: 7 }).unwrap();
        for plan in &plans {
            let rendered = render(plan).unwrap();
            let labels = patch_labels(
                plan,
                &rendered.masks,
                &processor,
                &config.pinpoints(),
                config.vision_config.patch_size as u32,
            )
            .unwrap();
            let pre = preprocess(
                &DynamicImage::ImageRgb8(rendered.image.clone()),
                &processor,
                &config.pinpoints(),
                14,
            )
            .unwrap();
            let views = pre.pixel_values.dim(0).unwrap();
            assert_eq!(labels.colour.len(), views * 576, "{}", plan.id);
            // Every object is seen in the base view and in the tiles, with its own labels.
            for obj in &plan.objects {
                let (c, s) = (colour_class(obj.colour), shape_class(obj.shape));
                let hits = |range: std::ops::Range<usize>| {
                    range
                        .filter(|&i| labels.colour[i] == c && labels.shape[i] == s)
                        .count()
                };
                assert!(
                    hits(0..576) > 0,
                    "{}: {:?} not in the base view",
                    plan.id,
                    obj
                );
                assert!(
                    hits(576..views * 576) >= hits(0..576),
                    "{}: {:?} should cover at least as many patches in the tiles",
                    plan.id,
                    obj
                );
            }
            // Labels pair a colour with its object's shape, never one without the other.
            assert!(
                labels
                    .colour
                    .iter()
                    .zip(&labels.shape)
                    .all(|(&c, &s)| (c == 0) == (s == 0))
            );
        }
    }
}
