//! `glint sample-data`.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `glint sample-data`.
#[derive(Debug, Args)]
pub struct SampleDataArgs {
    /// Output folder.
    #[arg(long, default_value = "sample-data")]
    pub out: PathBuf,
    /// Seed for every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write a randomly initialised SAE (the committed one is trained).
    #[arg(long)]
    pub random_sae: bool,
    /// Train the tiny model on generated shapes images (captions and questions), then score it
    /// on held-out ones.
    #[arg(long)]
    pub train_model: bool,
    /// Optimizer steps of --train-model's vision stage (the colour and shape under each patch).
    #[arg(long, default_value_t = 300)]
    pub vision_steps: usize,
    /// Optimizer steps of --train-model's answer stage.
    #[arg(long, default_value_t = 2000)]
    pub train_steps: usize,
    /// Images per step of --train-model (each with all its questions).
    #[arg(long, default_value_t = 8)]
    pub train_batch: usize,
    /// Peak learning rate of --train-model.
    #[arg(long, default_value_t = 3e-3)]
    pub train_lr: f64,
    /// Weight of the patch-label loss beside the answers' in --train-model's answer stage.
    #[arg(long, default_value_t = 0.5)]
    pub probe_weight: f64,
    /// Held-out questions of each kind asked after --train-model.
    #[arg(long, default_value_t = 200)]
    pub eval_questions: usize,
}
