//! Training the sample world's tiny LLaVA-NeXT end to end on the shapes world: every weight
//! (vision tower, projector, language model) learns from captions and short answers about
//! generated images, with candle's autograd on the CPU.
//!
//! Images are planned and drawn on the fly from the seed (never the 64 committed ones, which
//! keep seed 0), so a run is deterministic on one machine and reads no data from disk.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use image::DynamicImage;

use super::qa::{QaPair, questions};
use super::shapes::{ImagePlan, ShapesSpec, plan_shapes, render};
use crate::model::anyres::ImageLayout;
use crate::model::config::LlavaNextConfig;
use crate::model::llava_next::{ImageInput, LlavaNext};
use crate::model::preprocess::{ImageProcessorConfig, preprocess};
use crate::model::tap::{ForwardOptions, LogitPositions, Until};
use crate::model::tokenizer::PromptTokenizer;
use crate::util::rng::SeededRng;

/// Settings of one training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainModelSpec {
    /// Seed of the initial weights and of every image and question drawn.
    pub seed: u64,
    /// Optimizer steps.
    pub steps: usize,
    /// Questions per step (each about its own image).
    pub batch: usize,
    /// Peak learning rate (AdamW; linear warm-up over the first 5% of steps, then cosine decay
    /// to a tenth).
    pub lr: f64,
}

impl Default for TrainModelSpec {
    fn default() -> Self {
        Self {
            seed: 0,
            steps: 2000,
            batch: 8,
            lr: 3e-3,
        }
    }
}

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
        let (pixel_values, layout) = self.prepare(plan)?;
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
        })
    }

    /// The model's views of `plan`'s image.
    pub fn prepare(&self, plan: &ImagePlan) -> Result<(Tensor, ImageLayout)> {
        let image = DynamicImage::ImageRgb8(render(plan)?.image);
        let pre = preprocess(&image, &self.processor, &self.pinpoints, self.patch)
            .with_context(|| format!("{}: preprocessing failed", plan.id))?;
        Ok((pre.pixel_values, pre.layout))
    }
}

/// The token that ends an answer (`<|eot_id|>`).
pub fn end_of_turn(tok: &PromptTokenizer) -> Result<u32> {
    let eot = super::tokenizer_gen::EOT_TOKEN;
    tok.token_to_id(eot)
        .with_context(|| format!("the sample tokenizer has no {eot} token"))
}

/// The model's weights as trainable variables, with the model built over them.
pub struct Trainable {
    config: LlavaNextConfig,
    vars: VarMap,
}

impl Trainable {
    /// Variables holding `weights` (by Hugging Face name) for a model of `config`.
    pub fn new(config: &LlavaNextConfig, weights: &BTreeMap<String, Tensor>) -> Result<Self> {
        let vars = VarMap::new();
        {
            let mut data = vars
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("the variable map is poisoned"))?;
            for (name, t) in weights {
                data.insert(name.clone(), Var::from_tensor(t)?);
            }
        }
        Ok(Self {
            config: config.clone(),
            vars,
        })
    }

    /// The model over the current values. Built afresh after every step: loading stacks q, k
    /// and v into one matrix, a copy that an in-place update would leave behind.
    pub fn model(&self) -> Result<LlavaNext> {
        let vb = VarBuilder::from_varmap(&self.vars, DType::F32, &Device::Cpu);
        LlavaNext::load(&self.config, vb).context("building the sample model over its variables")
    }

    /// Every variable, for the optimizer.
    pub fn vars(&self) -> Vec<Var> {
        self.vars.all_vars()
    }

    /// The current values by name.
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let data = self
            .vars
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("the variable map is poisoned"))?;
        data.iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?)))
            .collect()
    }
}

/// Mean cross-entropy of `model`'s predictions of the answer tokens of `ex`, recording a
/// backward through every weight.
pub fn answer_loss(model: &LlavaNext, ex: &Example) -> Result<Tensor> {
    let images = [ImageInput {
        pixel_values: &ex.pixel_values,
        layout: &ex.layout,
    }];
    let (embeds, _) = model.embed_sequence_with(&ex.ids, &images, true)?;
    let opts = ForwardOptions {
        tap: None,
        until: Until::Logits(LogitPositions::All),
        differentiable: true,
    };
    let logits = model
        .forward(&embeds, 0, None, opts)?
        .logits
        .context("the forward returned no logits")?
        .squeeze(0)?;
    // The placeholder id stands for the image's tokens in the sequence; position p predicts
    // the token at p + 1.
    let image_at = ex
        .ids
        .iter()
        .position(|&id| id == model.config().image_token_index)
        .context("an example without its image placeholder")?;
    let shift = ex.layout.num_image_tokens() - 1;
    let positions: Vec<u32> = ex
        .targets
        .iter()
        .map(|&i| {
            let at = if i > image_at { i + shift } else { i };
            (at - 1) as u32
        })
        .collect();
    if ex.targets.is_empty() || ex.targets.iter().any(|&i| i <= image_at) {
        bail!("an example needs answers after its image");
    }
    let predicted = logits.index_select(&Tensor::new(positions.as_slice(), &Device::Cpu)?, 0)?;
    let targets: Vec<u32> = ex.targets.iter().map(|&i| ex.ids[i]).collect();
    let targets = Tensor::new(targets.as_slice(), &Device::Cpu)?;
    Ok(candle_nn::loss::cross_entropy(&predicted, &targets)?)
}

/// Learning rate at `step` of `spec`: linear warm-up, then cosine decay to a tenth of the peak.
pub fn learning_rate(spec: &TrainModelSpec, step: usize) -> f64 {
    let warm = (spec.steps / 20).max(1);
    if step < warm {
        return spec.lr * (step + 1) as f64 / warm as f64;
    }
    let done = (step - warm) as f64 / (spec.steps - warm).max(1) as f64;
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * done.min(1.0)).cos());
    spec.lr * (0.1 + 0.9 * cosine)
}

/// One optimizer step over `batch`: the mean answer loss, backward, AdamW. Returns the loss.
pub fn train_step(trainable: &Trainable, opt: &mut AdamW, batch: &[Example]) -> Result<f32> {
    let model = trainable.model()?;
    let mut total: Option<Tensor> = None;
    for ex in batch {
        let loss = answer_loss(&model, ex)?;
        total = Some(match total {
            None => loss,
            Some(t) => (t + loss)?,
        });
    }
    let loss = (total.context("an empty batch")? / batch.len() as f64)?;
    let value = loss.to_scalar::<f32>()?;
    if !value.is_finite() {
        bail!("the training loss became {value}; lower the learning rate");
    }
    let grads = loss.backward()?;
    opt.step(&grads)?;
    Ok(value)
}

/// AdamW over `trainable`'s variables at the peak rate of `spec`.
pub fn optimizer(trainable: &Trainable, spec: &TrainModelSpec) -> Result<AdamW> {
    let params = ParamsAdamW {
        lr: spec.lr,
        weight_decay: 0.01,
        ..Default::default()
    };
    Ok(AdamW::new(trainable.vars(), params)?)
}

/// What a training run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainModelReport {
    /// Optimizer steps taken.
    pub steps: usize,
    /// Conversations (images) trained on.
    pub images: usize,
    /// Wall time of the training loop, in seconds.
    pub seconds: f64,
    /// Mean loss over the first and the last tenth of the steps.
    pub first_loss: f32,
    /// See `first_loss`.
    pub last_loss: f32,
    /// Held-out scores of the trained model, per kind of question.
    pub scores: super::model_eval::Scores,
}

/// Train the checkpoint in `dir` (as [`super::checkpoint::write_sample_checkpoint`] wrote it:
/// its config and tokenizer are read, its weights start from `spec.seed`'s), write the trained
/// weights back, and score them on `eval_per_kind` held-out questions of every kind.
pub fn train_sample_model(
    dir: &std::path::Path,
    spec: &TrainModelSpec,
    eval_per_kind: usize,
    progress: bool,
) -> Result<TrainModelReport> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("{}: cannot read", config_path.display()))?;
    let config = LlavaNextConfig::from_json(&text, &config_path.display().to_string())?;
    let tok = PromptTokenizer::from_dir(dir, config.image_token_index)?;
    let trainable = Trainable::new(
        &config,
        &super::checkpoint::sample_weights(&config, spec.seed)?,
    )?;
    let mut opt = optimizer(&trainable, spec)?;
    let mut source = ExampleSource::new(&config, spec.seed, "train")?;
    let bar = crate::util::progress::bar(progress, spec.steps, "train", "steps", false);
    let started = std::time::Instant::now();
    let mut losses = Vec::with_capacity(spec.steps);
    for step in 0..spec.steps {
        opt.set_learning_rate(learning_rate(spec, step));
        let batch = (0..spec.batch.max(1))
            .map(|_| {
                let (plan, qas) = source.next_conversation()?;
                source.example(&plan, &qas, &tok)
            })
            .collect::<Result<Vec<_>>>()?;
        let loss = train_step(&trainable, &mut opt, &batch)
            .with_context(|| format!("training step {step}"))?;
        losses.push(loss);
        match &bar {
            Some(b) => {
                b.set_message(format!("loss {loss:.3}"));
                b.inc(1);
            }
            None if (step + 1) % (spec.steps / 20).max(1) == 0 => {
                eprintln!("train: step {}/{}, loss {loss:.3}", step + 1, spec.steps);
            }
            None => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    super::checkpoint::write_weights(dir, &trainable.tensors()?)?;
    let model = trainable.model()?;
    let mut held_out = ExampleSource::new(&config, spec.seed, "eval")?;
    let scores = super::model_eval::evaluate(&model, &tok, &mut held_out, eval_per_kind)?;
    let tenth = (losses.len() / 10).max(1);
    let mean = |xs: &[f32]| xs.iter().sum::<f32>() / xs.len().max(1) as f32;
    Ok(TrainModelReport {
        steps: spec.steps,
        images: spec.steps * spec.batch.max(1),
        seconds,
        first_loss: mean(&losses[..tenth.min(losses.len())]),
        last_loss: mean(&losses[losses.len().saturating_sub(tenth)..]),
        scores,
    })
}

/// A freshly written sample checkpoint of `seed` with its config and tokenizer, for tests.
#[cfg(test)]
pub(crate) fn test_world(seed: u64) -> (tempfile::TempDir, LlavaNextConfig, PromptTokenizer) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = super::checkpoint::write_sample_checkpoint(dir.path(), seed)
        .expect("the sample checkpoint");
    let tok = PromptTokenizer::from_dir(dir.path(), config.image_token_index)
        .expect("the sample tokenizer");
    (dir, config, tok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::checkpoint::sample_weights;

    #[test]
    fn a_few_steps_on_one_batch_lower_its_loss() {
        let (_dir, config, tok) = test_world(1);
        let spec = TrainModelSpec {
            seed: 1,
            steps: 10,
            batch: 1,
            lr: 3e-3,
        };
        let trainable = Trainable::new(&config, &sample_weights(&config, 1).unwrap()).unwrap();
        let mut opt = optimizer(&trainable, &spec).unwrap();
        let mut source = ExampleSource::new(&config, 1, "test").unwrap();
        let batch: Vec<Example> = (0..spec.batch)
            .map(|_| {
                let (plan, qas) = source.next_conversation().unwrap();
                source.example(&plan, &qas, &tok).unwrap()
            })
            .collect();
        let losses: Vec<f32> = (0..spec.steps)
            .map(|_| train_step(&trainable, &mut opt, &batch).unwrap())
            .collect();
        assert!(losses.last().unwrap() < &(losses[0] * 0.7), "{losses:?}");
    }
}
