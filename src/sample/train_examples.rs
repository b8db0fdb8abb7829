//! What the sample model is trained on: generated shapes images, each with every question it
//! can answer as one conversation and the colour and shape under each of its patches.
//!
//! Images are planned and drawn on the fly from the seed (never the 64 committed ones, which
//! keep seed 0), so a run is deterministic on one machine and reads no data from disk.

use anyhow::{Context, Result};
use candle_core::Tensor;
use image::DynamicImage;

use super::patch_labels::{PatchLabels, patch_labels};
use super::qa::{QaPair, questions};
use super::shapes::{ImagePlan, ShapesSpec, plan_shapes, render};
use crate::model::anyres::ImageLayout;
use crate::model::config::LlavaNextConfig;
use crate::model::preprocess::{ImageProcessorConfig, preprocess};
use crate::model::tokenizer::PromptTokenizer;
use crate::util::rng::SeededRng;

/// One example: an image's views and a conversation about it, every question the image can
/// answer in turn (sharing one pass over the image tokens).
pub struct Example {
    /// Preprocessed views `[views, 3, 336, 336]`.
    pub pixel_values: Tensor,
    /// Anyres geometry of the image.
    pub layout: ImageLayout,
    /// Prompt ids (one `<image>` placeholder in the first turn), answers and ends of turn.
    pub ids: Vec<u32>,
    /// Indices into `ids` of the answer and end-of-turn tokens (the loss covers only these).
    pub targets: Vec<usize>,
    /// The colour and shape under every patch of every view.
    pub labels: PatchLabels,
}

/// Images planned at once; a source plans the next block when it runs out.
const PLAN_BLOCK: usize = 1024;

/// Draws examples from the shapes world: image after image planned from the seed, each with
/// one of its questions.
pub struct ExampleSource {
    plan_seed: u64,
    blocks: u64,
    plans: std::vec::IntoIter<ImagePlan>,
    rng: SeededRng,
    processor: ImageProcessorConfig,
    pinpoints: Vec<(u32, u32)>,
    patch: u32,
}

impl ExampleSource {
    /// A source for `config`'s geometry; `stream` ("train", "eval") keeps the draws apart.
    pub fn new(config: &LlavaNextConfig, seed: u64, stream: &str) -> Result<Self> {
        let processor = ImageProcessorConfig::from_json(
            &super::checkpoint::sample_preprocessor().to_string(),
            "sample preprocessor",
        )?;
        let mut seeds = SeededRng::for_name(seed, &format!("train-model/{stream}"));
        Ok(Self {
            // Seed 0 plans the committed images; nudge away from it so they stay held out.
            plan_seed: seeds.next_u64().max(1),
            blocks: 0,
            plans: Vec::new().into_iter(),
            rng: SeededRng::new(seeds.next_u64()),
            processor,
            pinpoints: config.pinpoints(),
            patch: config.vision_config.patch_size as u32,
        })
    }

    /// The next planned image.
    pub fn next_plan(&mut self) -> Result<ImagePlan> {
        if let Some(plan) = self.plans.next() {
            return Ok(plan);
        }
        let spec = ShapesSpec {
            seed: self.plan_seed.wrapping_add(self.blocks),
            count: PLAN_BLOCK,
        };
        self.blocks += 1;
        self.plans = plan_shapes(&spec)?.into_iter();
        self.plans
            .next()
            .context("the shapes planner planned no image")
    }

    /// The next image and its questions in a drawn order.
    pub fn next_conversation(&mut self) -> Result<(ImagePlan, Vec<QaPair>)> {
        let plan = self.next_plan()?;
        let mut asked = questions(&plan, &mut self.rng);
        self.rng.shuffle(&mut asked);
        Ok((plan, asked))
    }

    /// Draw `plan` and encode the conversation `qas` about it for the model.
    pub fn example(
        &self,
        plan: &ImagePlan,
        qas: &[QaPair],
        tok: &PromptTokenizer,
    ) -> Result<Example> {
        let (pixel_values, layout, labels) = self.prepare_labelled(plan)?;
        let eot = end_of_turn(tok)?;
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        for (turn, qa) in qas.iter().enumerate() {
            if turn == 0 {
                ids = tok.chat_prompt_ids(&qa.question, true)?;
            } else {
                ids.extend(tok.encode(&tok.render_chat(&qa.question, false)?, false)?);
            }
            let mut answer = tok.encode(&qa.answer, false)?;
            answer.push(eot);
            targets.extend(ids.len()..ids.len() + answer.len());
            ids.extend(answer);
        }
        Ok(Example {
            pixel_values,
            layout,
            ids,
            targets,
            labels,
        })
    }

    /// Draw `plan` alone, with no conversation (the vision stage's examples).
    pub fn image_only(&self, plan: &ImagePlan) -> Result<Example> {
        let (pixel_values, layout, labels) = self.prepare_labelled(plan)?;
        Ok(Example {
            pixel_values,
            layout,
            ids: Vec::new(),
            targets: Vec::new(),
            labels,
        })
    }

    /// The model's views of `plan`'s image.
    pub fn prepare(&self, plan: &ImagePlan) -> Result<(Tensor, ImageLayout)> {
        let image = DynamicImage::ImageRgb8(render(plan)?.image);
        let pre = preprocess(&image, &self.processor, &self.pinpoints, self.patch)
            .with_context(|| format!("{}: preprocessing failed", plan.id))?;
        Ok((pre.pixel_values, pre.layout))
    }

    /// [`ExampleSource::prepare`], with the labels of every patch.
    pub fn prepare_labelled(&self, plan: &ImagePlan) -> Result<(Tensor, ImageLayout, PatchLabels)> {
        let rendered = render(plan)?;
        let labels = patch_labels(
            plan,
            &rendered.masks,
            &self.processor,
            &self.pinpoints,
            self.patch,
        )?;
        let image = DynamicImage::ImageRgb8(rendered.image);
        let pre = preprocess(&image, &self.processor, &self.pinpoints, self.patch)
            .with_context(|| format!("{}: preprocessing failed", plan.id))?;
        Ok((pre.pixel_values, pre.layout, labels))
    }
}

/// The token that ends an answer (`<|eot_id|>`).
pub fn end_of_turn(tok: &PromptTokenizer) -> Result<u32> {
    let eot = super::tokenizer_gen::EOT_TOKEN;
    tok.token_to_id(eot)
        .with_context(|| format!("the sample tokenizer has no {eot} token"))
}
