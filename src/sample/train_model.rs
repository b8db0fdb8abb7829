//! Training the sample world's tiny LLaVA-NeXT end to end on the shapes world, with candle's
//! autograd on the CPU, in two stages: first the vision tower and projector learn to carry the
//! colour and shape under every patch into the image tokens (a dense loss, cheap: no language
//! model); then every weight learns from captions and short answers about the images, the dense
//! loss kept beside the answers' so the image tokens keep what they carry.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};

pub use super::train_examples::{Example, ExampleSource, end_of_turn};

use super::patch_probe::PatchProbe;
use crate::model::config::LlavaNextConfig;
use crate::model::llava_next::{LlavaNext, pack_image_features};
use crate::model::tap::{ForwardOptions, LogitPositions, Until};
use crate::model::tokenizer::PromptTokenizer;

/// Settings of one training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainModelSpec {
    /// Seed of the initial weights and of every image and question drawn.
    pub seed: u64,
    /// Optimizer steps of the vision stage (images and their patch labels, no language model).
    pub vision_steps: usize,
    /// Optimizer steps of the answer stage.
    pub steps: usize,
    /// Images per step (each with all its questions in the answer stage).
    pub batch: usize,
    /// Peak learning rate (AdamW; per stage, linear warm-up over its first 5% of steps, then
    /// cosine decay to a tenth).
    pub lr: f64,
    /// Weight of the patch-label loss beside the answers' in the answer stage.
    pub probe_weight: f64,
}

impl Default for TrainModelSpec {
    fn default() -> Self {
        Self {
            seed: 0,
            vision_steps: 300,
            steps: 2000,
            batch: 8,
            lr: 3e-3,
            probe_weight: 0.5,
        }
    }
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

/// Losses of one example, each recording a backward through every weight it reads.
pub struct ExampleLoss {
    /// Mean cross-entropy of the answer tokens; `None` for an image without a conversation.
    pub answers: Option<Tensor>,
    /// The patch-label loss of the image's tokens.
    pub probe: Tensor,
    /// Patches on objects whose colour, and whose shape, the probe read right, and patches on
    /// objects.
    pub probe_right: (usize, usize, usize),
}

/// The losses of `model` (and `probe`) on `ex`: the projector's output is probed for the
/// patch labels, then packed into the sequence the language model reads.
pub fn example_loss(model: &LlavaNext, probe: &PatchProbe, ex: &Example) -> Result<ExampleLoss> {
    let views = model.view_features_with(&ex.pixel_values, true)?;
    let probed = probe.loss(&views, &ex.labels)?;
    let probe_right = (probed.colour_right, probed.shape_right, probed.on_objects);
    if ex.ids.is_empty() {
        return Ok(ExampleLoss {
            answers: None,
            probe: probed.loss,
            probe_right,
        });
    }
    let image_id = model.config().image_token_index;
    let image_at = ex
        .ids
        .iter()
        .position(|&id| id == image_id)
        .context("an example without its image placeholder")?;
    if ex.targets.is_empty() || ex.targets.iter().any(|&i| i <= image_at) {
        bail!("an example needs answers after its image");
    }
    let image = pack_image_features(&views, &ex.layout, model.image_newline())?;
    let mut pieces = Vec::with_capacity(3);
    if image_at > 0 {
        pieces.push(model.llm().embed_ids(&ex.ids[..image_at])?);
    }
    pieces.push(image);
    pieces.push(model.llm().embed_ids(&ex.ids[image_at + 1..])?);
    let embeds = Tensor::cat(&pieces, 0)?.unsqueeze(0)?;
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
    // The placeholder stands for the image's tokens; position p predicts the token at p + 1.
    let shift = ex.layout.num_image_tokens() - 1;
    let positions: Vec<u32> = ex
        .targets
        .iter()
        .map(|&i| (if i > image_at { i + shift } else { i } - 1) as u32)
        .collect();
    let predicted = logits.index_select(&Tensor::new(positions.as_slice(), &Device::Cpu)?, 0)?;
    let targets: Vec<u32> = ex.targets.iter().map(|&i| ex.ids[i]).collect();
    let targets = Tensor::new(targets.as_slice(), &Device::Cpu)?;
    Ok(ExampleLoss {
        answers: Some(candle_nn::loss::cross_entropy(&predicted, &targets)?),
        probe: probed.loss,
        probe_right,
    })
}

/// Learning rate at `step` of a stage of `steps` steps peaking at `lr`: linear warm-up, then
/// cosine decay to a tenth of the peak.
pub fn learning_rate(lr: f64, steps: usize, step: usize) -> f64 {
    let warm = (steps / 20).max(1);
    if step < warm {
        return lr * (step + 1) as f64 / warm as f64;
    }
    let done = (step - warm) as f64 / (steps - warm).max(1) as f64;
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * done.min(1.0)).cos());
    lr * (0.1 + 0.9 * cosine)
}

/// What one step measured.
#[derive(Debug, Clone, Copy)]
pub struct StepLoss {
    /// The loss optimised: the answers' plus `probe_weight` times the probe's (the probe's
    /// alone in the vision stage).
    pub total: f32,
    /// Share of patches on objects whose colour the probe read right.
    pub colour_accuracy: f32,
    /// Share of patches on objects whose shape the probe read right.
    pub shape_accuracy: f32,
}

/// One optimizer step over `batch`: the mean loss, backward, AdamW.
pub fn train_step(
    trainable: &Trainable,
    probe: &PatchProbe,
    opt: &mut AdamW,
    batch: &[Example],
    probe_weight: f64,
) -> Result<StepLoss> {
    let model = trainable.model()?;
    let mut total: Option<Tensor> = None;
    let (mut colour, mut shape, mut on) = (0, 0, 0);
    for ex in batch {
        let l = example_loss(&model, probe, ex)?;
        colour += l.probe_right.0;
        shape += l.probe_right.1;
        on += l.probe_right.2;
        let loss = match l.answers {
            Some(a) => (a + (l.probe * probe_weight)?)?,
            None => l.probe,
        };
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
    Ok(StepLoss {
        total: value,
        colour_accuracy: colour as f32 / on.max(1) as f32,
        shape_accuracy: shape as f32 / on.max(1) as f32,
    })
}

/// AdamW over `trainable`'s and `probe`'s variables at the peak rate of `spec`.
pub fn optimizer(
    trainable: &Trainable,
    probe: &PatchProbe,
    spec: &TrainModelSpec,
) -> Result<AdamW> {
    let params = ParamsAdamW {
        lr: spec.lr,
        weight_decay: 0.01,
        ..Default::default()
    };
    let mut vars = trainable.vars();
    vars.extend(probe.vars());
    Ok(AdamW::new(vars, params)?)
}

/// What one stage of a training run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageReport {
    /// Optimizer steps taken.
    pub steps: usize,
    /// Images trained on.
    pub images: usize,
    /// Wall time of the stage, in seconds.
    pub seconds: f64,
    /// Mean loss over the first and the last tenth of the steps.
    pub first_loss: f32,
    /// See `first_loss`.
    pub last_loss: f32,
    /// Mean share of object patches whose colour the probe read right, over the last tenth.
    pub colour_accuracy: f32,
    /// Mean share of object patches whose shape the probe read right, over the last tenth.
    pub shape_accuracy: f32,
}

/// What a training run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainModelReport {
    /// The vision stage (patch labels only).
    pub vision: StageReport,
    /// The answer stage.
    pub answers: StageReport,
    /// Held-out scores of the trained model, per kind of question.
    pub scores: super::model_eval::Scores,
}

/// Run one stage of `steps` steps over batches drawn by `draw`, with a progress bar named
/// `name`.
fn run_stage(
    name: &str,
    steps: usize,
    spec: &TrainModelSpec,
    model: (&Trainable, &PatchProbe, &mut AdamW),
    progress: bool,
    mut draw: impl FnMut() -> Result<Example>,
) -> Result<StageReport> {
    let (trainable, probe, opt) = model;
    let bar = crate::util::progress::bar(progress, steps, name, "steps", false);
    let started = std::time::Instant::now();
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps {
        opt.set_learning_rate(learning_rate(spec.lr, steps, step));
        let batch = (0..spec.batch.max(1))
            .map(|_| draw())
            .collect::<Result<Vec<_>>>()?;
        let loss = train_step(trainable, probe, opt, &batch, spec.probe_weight)
            .with_context(|| format!("{name} step {step}"))?;
        losses.push(loss);
        let line = format!(
            "loss {:.3}, patches: colour {:.0}%, shape {:.0}%",
            loss.total,
            100.0 * loss.colour_accuracy,
            100.0 * loss.shape_accuracy
        );
        match &bar {
            Some(b) => {
                b.set_message(line);
                b.inc(1);
            }
            None if (step + 1) % (steps / 20).max(1) == 0 => {
                eprintln!("{name}: step {}/{steps}, {line}", step + 1);
            }
            None => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let tenth = (losses.len() / 10).max(1);
    let mean = |xs: &[StepLoss], f: fn(&StepLoss) -> f32| {
        xs.iter().map(f).sum::<f32>() / xs.len().max(1) as f32
    };
    let (first, last) = (
        &losses[..tenth.min(losses.len())],
        &losses[losses.len().saturating_sub(tenth)..],
    );
    Ok(StageReport {
        steps,
        images: steps * spec.batch.max(1),
        seconds: started.elapsed().as_secs_f64(),
        first_loss: mean(first, |l| l.total),
        last_loss: mean(last, |l| l.total),
        colour_accuracy: mean(last, |l| l.colour_accuracy),
        shape_accuracy: mean(last, |l| l.shape_accuracy),
    })
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
    let probe = PatchProbe::new(config.text_config.hidden_size, spec.seed)?;
    let mut opt = optimizer(&trainable, &probe, spec)?;
    let mut source = ExampleSource::new(&config, spec.seed, "train")?;
    let vision = run_stage(
        "vision",
        spec.vision_steps,
        spec,
        (&trainable, &probe, &mut opt),
        progress,
        || {
            let plan = source.next_plan()?;
            source.image_only(&plan)
        },
    )?;
    let answers = run_stage(
        "answers",
        spec.steps,
        spec,
        (&trainable, &probe, &mut opt),
        progress,
        || {
            let (plan, qas) = source.next_conversation()?;
            source.example(&plan, &qas, &tok)
        },
    )?;
    super::checkpoint::write_weights(dir, &trainable.tensors()?)?;
    let model = trainable.model()?;
    let mut held_out = ExampleSource::new(&config, spec.seed, "eval")?;
    let scores = super::model_eval::evaluate(&model, &tok, &mut held_out, eval_per_kind)?;
    Ok(TrainModelReport {
        vision,
        answers,
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
            ..TrainModelSpec::default()
        };
        let trainable = Trainable::new(&config, &sample_weights(&config, 1).unwrap()).unwrap();
        let probe = PatchProbe::new(config.text_config.hidden_size, 1).unwrap();
        let mut opt = optimizer(&trainable, &probe, &spec).unwrap();
        let mut source = ExampleSource::new(&config, 1, "test").unwrap();
        let batch: Vec<Example> = (0..spec.batch)
            .map(|_| {
                let (plan, qas) = source.next_conversation().unwrap();
                source.example(&plan, &qas, &tok).unwrap()
            })
            .collect();
        let losses: Vec<f32> = (0..spec.steps)
            .map(|_| {
                train_step(&trainable, &probe, &mut opt, &batch, spec.probe_weight)
                    .unwrap()
                    .total
            })
            .collect();
        assert!(losses.last().unwrap() < &(losses[0] * 0.7), "{losses:?}");
    }
}
