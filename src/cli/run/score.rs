//! Runs `glint --batch score`: the scorer of the chosen method built from the flags, the run,
//! and its report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::args::{ModelArgs, PositivesFrom, ScoreArgs};
use crate::cli::output::{block_on, exit_partial, print_or_json};
use crate::clip::ClipScorer;
use crate::explain::select::dataset_root;
use crate::llm::{ChatClient, ClientConfig, Endpoint};
use crate::score::clip::ClipRun;
use crate::score::detection::{PositiveSource, SampleOptions};
use crate::score::iou::{IouScorer, MaskSource, Threshold};
use crate::score::masks::{GroundTruth, Grounding};
use crate::score::prompt::{Builtin, ScorePrompt};
use crate::score::refine::Refiner;
use crate::score::{Method, RunOptions, ScoreJob, ScoreSummary, Scorer, run_scores};
use crate::session::ModelSpec;
use crate::store::{FeatureFilter, Store};

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
pub fn build_job(model: &ModelSpec, args: &ScoreArgs, store: &Store) -> Result<ScoreJob> {
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
        positives_from: match args.positives_from {
            PositivesFrom::Range => PositiveSource::Range,
            PositivesFrom::Top => PositiveSource::Top,
        },
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
        Method::Clip => clip_scorer(model, args, &root)?,
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
    let features = FeatureFilter::parse(&args.features, &store.manifest().hookpoint)?;
    let job = build_job(&model.spec()?, args, &store)?;
    let opts = RunOptions {
        features,
        force: args.force,
        progress_bar: std::io::stderr().is_terminal() && !args.json,
    };
    let summary = block_on(run_scores(&job, &store, &opts))?;
    print_or_json(args.json, &summary, || format_summary(&summary))?;
    Ok(exit_partial(!summary.failed.is_empty()))
}

/// The summary as lines for people.
pub fn format_summary(s: &ScoreSummary) -> String {
    let mean = s.mean.map_or("-".into(), |m| format!("{m:.4}"));
    let mut out = format!(
        "scored {} features by {} with {} (hash {}): mean {mean}, {} sample failures",
        s.scored,
        s.method.name(),
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

/// The CLIP scorer named by the arguments.
fn clip_scorer(model: &ModelSpec, args: &ScoreArgs, root: &Path) -> Result<Scorer> {
    if args.examples == 0 {
        bail!("--examples 0 leaves nothing to score; the original uses 5");
    }
    let device = model.device.open()?;
    let scorer = ClipScorer::load(&args.clip_model, &device)
        .with_context(|| format!("--clip-model {}", args.clip_model))?;
    Ok(Scorer::Local(Box::new(ClipRun {
        scorer,
        model: args.clip_model.clone(),
        examples: args.examples,
        baseline_runs: args.baseline_runs,
        seed: args.seed,
        root: root.to_path_buf(),
        max_pixels: model.max_pixels,
    })))
}
