//! `glint --batch train`.

use std::path::PathBuf;

use clap::Args;

use crate::heatmap::Upsample;
use crate::jobs::train::TrainOptions;
use crate::sae::evaluate::{ImageRank, MapGrid};
use crate::session::encode::TokenSelection;

/// Arguments of `glint --batch train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Images: a JSONL manifest (masks in it enable the feature check) or a folder. Defaults to the
    /// sample shapes.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Use only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Root the SAE is written to, as <out>/model.layers.<L>/{cfg.json, sae.safetensors}.
    #[arg(long)]
    pub out: PathBuf,
    /// Folder for the checkpoint, log, report and activation cache (default: --out).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Decoder layer whose output is read (default: the middle layer).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Dictionary width (default: 32 x the hidden size).
    #[arg(long)]
    pub latents: Option<usize>,
    /// Latents kept per token.
    #[arg(long, default_value_t = 32)]
    pub k: usize,
    /// Optimizer steps (default: one epoch).
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Passes over the training images.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Tokens per optimizer step (a batch holds between this and twice this many).
    #[arg(long, default_value_t = 4096)]
    pub batch_tokens: usize,
    /// Tokens gathered (whole images) before shuffling.
    #[arg(long, default_value_t = 32768)]
    pub buffer_tokens: usize,
    /// Peak learning rate (default: 2e-4 / sqrt(latents / 2^14)).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Linear warm-up steps (default: a tenth of the run, at most 1000).
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Weight of the AuxK loss on dead latents (0 turns it off).
    #[arg(long, default_value_t = 1.0 / 32.0)]
    pub auxk_alpha: f64,
    /// A latent idle for more than this many tokens counts as dead.
    #[arg(long, default_value_t = 10_000_000)]
    pub dead_threshold: u64,
    /// Add the multi-TopK (4k) loss term.
    #[arg(long)]
    pub multi_topk: bool,
    /// Seed of the initialisation, data order and held-out split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Which positions are training tokens.
    #[arg(long, value_enum, default_value_t = TokenSelection::Image)]
    pub tokens: TokenSelection,
    /// Images held out of training to measure FVU on.
    #[arg(long, default_value_t = 0)]
    pub holdout: usize,
    /// Checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 1000)]
    pub save_every: u64,
    /// Progress line and log record every N steps.
    #[arg(long, default_value_t = 50)]
    pub log_every: u64,
    /// Stop after N steps in this invocation (with a checkpoint); --resume continues.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Continue the run checkpointed in the work folder (same options).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Discard a checkpoint, log and report already in the work folder.
    #[arg(long)]
    pub force: bool,
    /// Keep the activations on disk (<work>/activations) so the model runs once per image.
    #[arg(long)]
    pub cache_activations: bool,
    /// Skip training; evaluate the SAE already in --out.
    #[arg(long, conflicts_with_all = ["resume", "force"])]
    pub eval_only: bool,
    /// Skip the feature-mask evaluation.
    #[arg(long)]
    pub no_eval: bool,
    /// Grid of the activation maps in the feature evaluation.
    #[arg(long, value_enum, default_value_t = MapGrid::Auto)]
    pub eval_grid: MapGrid,
    /// Upsampling of the activation maps to pixels in the feature evaluation.
    #[arg(long, value_enum, default_value_t = Upsample::Bilinear)]
    pub eval_upsample: Upsample,
    /// A map pixel is active above this fraction of the image's maximum activation.
    #[arg(long, default_value_t = 0.5)]
    pub eval_threshold: f32,
    /// Ranking of a feature's images in the feature evaluation.
    #[arg(long, value_enum, default_value_t = ImageRank::Max)]
    pub eval_rank: ImageRank,
    /// Top images per feature in the feature evaluation.
    #[arg(long, default_value_t = 10)]
    pub eval_top: usize,
}

impl From<TrainArgs> for TrainOptions {
    fn from(a: TrainArgs) -> Self {
        TrainOptions {
            dataset: a.dataset,
            limit: a.limit,
            out: a.out,
            work: a.work,
            layer: a.layer,
            latents: a.latents,
            k: a.k,
            steps: a.steps,
            epochs: a.epochs,
            batch_tokens: a.batch_tokens,
            buffer_tokens: a.buffer_tokens,
            lr: a.lr,
            warmup_steps: a.warmup_steps,
            auxk_alpha: a.auxk_alpha,
            dead_threshold: a.dead_threshold,
            multi_topk: a.multi_topk,
            seed: a.seed,
            tokens: a.tokens,
            holdout: a.holdout,
            save_every: a.save_every,
            log_every: a.log_every,
            stop_after: a.stop_after,
            resume: a.resume,
            force: a.force,
            cache_activations: a.cache_activations,
            eval_only: a.eval_only,
            no_eval: a.no_eval,
            eval_grid: a.eval_grid,
            eval_upsample: a.eval_upsample,
            eval_threshold: a.eval_threshold,
            eval_rank: a.eval_rank,
            eval_top: a.eval_top,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{Cli, Command};
    use crate::jobs::train::{REPORT_FILE, format_report, run_train};
    use crate::session::ModelSpec;
    use clap::Parser;

    fn parse(args: &[&str]) -> (ModelSpec, TrainOptions) {
        let cli = Cli::try_parse_from([&["glint", "--batch", "train"], args].concat()).unwrap();
        match cli.command {
            Some(Command::Train(t)) => (cli.model.spec().unwrap(), t.into()),
            other => panic!("not a train command: {other:?}"),
        }
    }

    /// A few steps on one sample image (another held out), then the same SAE evaluated again with
    /// --eval-only.
    #[test]
    fn trains_on_sample_images_and_reevaluates() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, work) = (tmp.path().join("out"), tmp.path().join("work"));
        let dataset = crate::sample::default_dataset();
        let common = [
            "--dataset",
            dataset.to_str().unwrap(),
            "--limit",
            "2",
            "--holdout",
            "1",
            "--latents",
            "32",
            "--k",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--work",
            work.to_str().unwrap(),
            "--cache-activations",
        ];
        let extra = [
            "--steps",
            "6",
            "--batch-tokens",
            "256",
            "--buffer-tokens",
            "1024",
            "--log-every",
            "2",
        ];
        let (m, a) = parse(&[&common[..], &extra[..]].concat());
        let r = run_train(&m, &a).unwrap();
        assert!(r.finished && r.step == 6 && r.train_images == 1, "{r:?}");
        assert_eq!(r.sae_dir, out.join("model.layers.2"));
        let h = r.heldout.clone().unwrap();
        assert!(
            h.fvu.is_finite() && h.fvu > 0.0 && h.l0 <= 4.0 && h.tokens > 500,
            "{h:?}"
        );
        let f = r.features.clone().unwrap();
        assert_eq!(f.images, 2);
        assert!(f.summary.scored > 0);
        let cached = std::fs::read_dir(work.join("activations")).unwrap().count();
        assert_eq!(cached, 3, "two images and the cache key");
        let text = std::fs::read_to_string(work.join(REPORT_FILE)).unwrap();
        assert!(text.contains("\"heldout\""), "{text}");
        assert!(format_report(&r).contains("held-out: 1 images"));

        let (m, a) = parse(&[&common[..], &["--eval-only"][..]].concat());
        let again = run_train(&m, &a).unwrap();
        assert!(again.config.is_none());
        assert_eq!(again.heldout.unwrap().fvu, h.fvu);
        assert_eq!(again.features.unwrap().summary.scored, f.summary.scored);

        let (m, a) = parse(&[
            "--dataset",
            dataset.to_str().unwrap(),
            "--limit",
            "2",
            "--holdout",
            "2",
            "--out",
            "x",
        ]);
        assert!(
            run_train(&m, &a)
                .unwrap_err()
                .to_string()
                .contains("no training images")
        );
    }
}
