//! `glint --batch score`: arguments, building the scorer of the chosen method, and the report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::detection::SampleOptions;
use super::fuzzing::FuzzType;
use super::iou::{IouScorer, MaskSource, Threshold};
use super::masks::{GroundTruth, Grounding};
use super::prompt::{Builtin, ScorePrompt};
use super::refine::Refiner;
use super::{Method, RunOptions, ScoreJob, ScoreSummary, Scorer, run_scores};
use crate::cli::ModelArgs;
use crate::explain::client::{ChatClient, ClientConfig};
use crate::explain::command::{EXIT_PARTIAL, parse_features};
use crate::explain::select::dataset_root;
use crate::explain::setup::{Endpoint, block_on, print_or_json};
use crate::store::Store;

/// Arguments of `glint --batch score`.
#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    /// Scoring method.
    #[arg(long, value_enum)]
    pub method: Method,
    /// Store folder.
    #[arg(long, default_value = "glint-cache")]
    pub store: PathBuf,
    /// Features: `all`, a range `A..B`, a list `3,17,42`, or the original's filter JSON file.
    #[arg(long, default_value = "all")]
    pub features: String,
    /// Score the newest explanation by this explainer model (default: each feature's newest).
    #[arg(long, value_name = "NAME")]
    pub explainer_model: Option<String>,
    /// Score again features already scored with the same settings.
    #[arg(long)]
    pub force: bool,
    /// Dataset folder or manifest, if it moved since caching.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Shorten explanations into grounding labels with a text model first (the original's step 1).
    #[arg(long)]
    pub refine: bool,
    /// Server of the refining text model (default: --base-url).
    #[arg(long, value_name = "URL")]
    pub refine_url: Option<String>,
    /// Refining text model (the original's judge).
    #[arg(long, default_value = "meta-llama/Llama-3.1-8B-Instruct")]
    pub refine_model: String,
    /// Refinement template file (default: the shipped refine-v1).
    #[arg(long)]
    pub refine_prompt_file: Option<PathBuf>,
    /// Judge server for detection and fuzzing: root, its `/v1`, or the full chat-completions URL.
    #[arg(
        long,
        default_value = "http://localhost:12345",
        env = "GLINT_SCORE_URL"
    )]
    pub base_url: String,
    /// Judge model (vision) for detection and fuzzing.
    #[arg(
        long,
        default_value = "lmms-lab/llava-onevision-qwen2-72b-ov",
        value_name = "NAME"
    )]
    pub scorer_model: String,
    /// Environment variable holding the API key (unset: no Authorization header).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Seconds allowed per request attempt.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// Retries per request on timeouts, 429 and 5xx.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Mark image parts `"modalities": "multi-images"` (sglang).
    #[arg(long)]
    pub sglang_multi_images: bool,
    /// Judge template file for detection or fuzzing (default: the shipped v1).
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// IOU: grounding service URL (docs/grounding.md); without it, the dataset's ground truth.
    #[arg(long, value_name = "URL")]
    pub grounding_url: Option<String>,
    /// IOU: activation map rule: original (the original's mask < 224 on the base view), any,
    /// a fraction of the image's max (e.g. 0.3) over all tiles, or abs:VALUE.
    #[arg(long, default_value = "original")]
    pub threshold: String,
    /// IOU and CLIP: top images per feature.
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
    /// Detection and fuzzing: activating images, spread over the stored ranking.
    #[arg(long, default_value_t = 10)]
    pub positives: usize,
    /// Detection and fuzzing: non-activating (or, for fuzzing, falsely highlighted) images.
    #[arg(long, default_value_t = 10)]
    pub negatives: usize,
    /// Detection and fuzzing: images per request.
    #[arg(long, default_value_t = 5)]
    pub per_prompt: usize,
    /// Seed of every random draw (negatives, fake highlights, shuffles, CLIP baseline).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Detection and fuzzing: longest side of an image sent, in pixels.
    #[arg(long, default_value_t = 448)]
    pub max_side: u32,
    /// Fuzzing: fakes on non-activating images (default) or elsewhere on the activating ones (active).
    #[arg(long, value_enum, default_value_t = FuzzType::Default)]
    pub fuzz_type: FuzzType,
    /// Fuzzing: tokens at or above this fraction of the example's max are highlighted.
    #[arg(long, default_value_t = 0.3)]
    pub highlight: f32,
    /// CLIP: model folder or hub id in the Hugging Face layout.
    #[arg(long, default_value = "openai/clip-vit-base-patch32")]
    pub clip_model: String,
    /// CLIP: runs of random images for the baseline (0: none; the original uses 30 of 5).
    #[arg(long, default_value_t = 30)]
    pub baseline_runs: usize,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

fn client_config(args: &ScoreArgs, base_url: &str, model: &str) -> Result<ClientConfig> {
    Endpoint {
        base_url,
        model,
        api_key_env: &args.api_key_env,
        headers: &args.headers,
        timeout: args.timeout,
        retries: args.retries,
        sglang_multi_images: args.sglang_multi_images,
    }
    .client_config()
}

/// The labelled manifest of the store's dataset: `--dataset` or the recorded path when it is a
/// file, else `manifest.jsonl` in the dataset folder.
fn manifest_path(store: &Store, root: &Path, over: Option<&Path>) -> PathBuf {
    let recorded = Path::new(&store.manifest().dataset);
    [over, Some(recorded)]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.join("manifest.jsonl"))
}

/// The scoring job named by the arguments.
pub fn build_job(model: &ModelArgs, args: &ScoreArgs, store: &Store) -> Result<ScoreJob> {
    let root = dataset_root(
        &store.manifest().dataset,
        store.dir(),
        args.dataset.as_deref(),
    )?;
    let refiner = if args.refine {
        let url = args.refine_url.as_deref().unwrap_or(&args.base_url);
        Some(Refiner {
            client: ChatClient::new(client_config(args, url, &args.refine_model)?)?,
            prompt: ScorePrompt::load(args.refine_prompt_file.as_deref(), Builtin::Refine)?,
        })
    } else {
        None
    };
    let samples = SampleOptions {
        positives: args.positives,
        negatives: args.negatives,
        per_prompt: args.per_prompt,
        seed: args.seed,
        max_side: args.max_side,
        max_pixels: model.max_pixels,
    };
    let judge = |which| -> Result<(ChatClient, ScorePrompt)> {
        let client = ChatClient::new(client_config(args, &args.base_url, &args.scorer_model)?)?;
        Ok((
            client,
            ScorePrompt::load(args.prompt_file.as_deref(), which)?,
        ))
    };
    let scorer = match args.method {
        Method::Iou => {
            let source = match &args.grounding_url {
                Some(url) => {
                    MaskSource::Service(Grounding::new(url, Duration::from_secs_f64(args.timeout))?)
                }
                None => {
                    let path = manifest_path(store, &root, args.dataset.as_deref());
                    let gt = GroundTruth::load(&path)?.with_context(|| {
                        format!("{} has no object masks; pass --grounding-url to ground labels with a service", path.display())
                    })?;
                    MaskSource::Truth(gt)
                }
            };
            if args.examples == 0 {
                bail!("--examples 0 leaves nothing to score; the original uses 5");
            }
            Scorer::Iou(IouScorer {
                source,
                threshold: args.threshold.parse::<Threshold>()?,
                examples: args.examples,
                root: root.clone(),
                max_pixels: model.max_pixels,
            })
        }
        Method::Detection | Method::Fuzzing => {
            if args.positives == 0 && args.negatives == 0 {
                bail!("--positives and --negatives are both 0; nothing to show the judge");
            }
            let fuzzing = args.method == Method::Fuzzing;
            if fuzzing && !(0.0..=1.0).contains(&args.highlight) {
                bail!(
                    "--highlight {} must be a fraction between 0 and 1",
                    args.highlight
                );
            }
            let (client, prompt) = judge(if fuzzing {
                Builtin::Fuzzing
            } else {
                Builtin::Detection
            })?;
            Scorer::Judge {
                client,
                prompt,
                samples,
                fuzz: fuzzing.then_some((args.fuzz_type, args.highlight)),
            }
        }
        Method::Clip => super::clip::build(model, args, &root)?,
    };
    Ok(ScoreJob {
        method: args.method,
        scorer,
        refiner,
        explainer_model: args.explainer_model.clone(),
        root,
    })
}

/// Run `glint --batch score`.
pub fn run(model: &ModelArgs, args: &ScoreArgs) -> Result<ExitCode> {
    let store = Store::open(&args.store)?;
    let features = parse_features(&args.features, &store.manifest().hookpoint)?;
    let job = build_job(model, args, &store)?;
    let opts = RunOptions {
        features,
        force: args.force,
        progress_bar: std::io::stderr().is_terminal() && !args.json,
    };
    let summary = block_on(run_scores(&job, &store, &opts))?;
    print_or_json(args.json, &summary, || format_summary(&summary))?;
    Ok(if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    })
}

/// The summary as lines for people.
pub fn format_summary(s: &ScoreSummary) -> String {
    let mean = s.mean.map_or("-".into(), |m| format!("{m:.4}"));
    let mut out = format!(
        "scored {} features by {} with {} (hash {}): mean {mean}, {} sample failures",
        s.scored,
        s.method.as_str(),
        s.model,
        s.prompt_hash,
        s.sample_failures
    );
    if s.declined > 0 {
        out += &format!(
            "\n  {} declined by the explainer (stored without a value)",
            s.declined
        );
    }
    out += &format!(
        "\nskipped {} already scored, {} without an explanation",
        s.already_scored, s.unexplained
    );
    if !s.failed.is_empty() {
        out += &format!("\nfailed {} (run again to retry):", s.failed.len());
        for (f, why) in &s.failed {
            out += &format!("\n  feature {f}: {why}");
        }
    }
    out + &format!("\n{:.1} s", s.seconds)
}
