//! `glint --batch explain`: from parsed arguments to a batch run, a preview, or a seed
//! export/import, with its terminal output.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::batch::{BatchOptions, BatchSummary, run_batch};
use super::client::ClientConfig;
use super::explainer::{Explainer, ExplainerConfig};
use super::prompt::PromptTemplate;
use super::seed_json::{SEED_EXPLAINER, export_seed_json, import_seed_json};
use super::select::{EvidenceOptions, EvidenceStyle};
use super::setup::{Endpoint, block_on, print_or_json};
use crate::cli::{ExplainArgs, ModelArgs};
use crate::store::{FeatureFilter, Store};

/// Exit status of a run that left features unexplained (failures, or stopped early).
pub const EXIT_PARTIAL: u8 = 3;

/// `--features`: `all`, `A..B` / `A..=B`, `3,17,42`, or the original's filter JSON file.
pub fn parse_features(text: &str, hookpoint: &str) -> Result<FeatureFilter> {
    let t = text.trim();
    if t == "all" {
        return Ok(FeatureFilter::All);
    }
    if t.contains("..") {
        return FeatureFilter::parse_range(t);
    }
    if !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
    {
        let list = t
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse::<u32>()
                    .with_context(|| format!("--features {text:?}: {s:?} is not a feature index"))
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(FeatureFilter::list(list));
    }
    let path = Path::new(t);
    if !path.is_file() {
        bail!(
            "--features {text:?}: not `all`, a range like 0..100, a list like 3,17 or a filter JSON file"
        );
    }
    let json = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the filter file", path.display()))?;
    FeatureFilter::from_seed_json(&json, hookpoint)
        .with_context(|| format!("{}: bad filter file", path.display()))
}

/// The explainer settings named by the arguments.
pub fn explainer_config(model: &ModelArgs, args: &ExplainArgs) -> Result<ExplainerConfig> {
    let endpoint = Endpoint {
        base_url: &args.base_url,
        model: args.explainer_model.as_deref().unwrap_or(SEED_EXPLAINER),
        api_key_env: &args.api_key_env,
        headers: &args.headers,
        timeout: args.timeout,
        retries: args.retries,
        sglang_multi_images: args.sglang_multi_images,
    };
    if args.max_answer_bytes == 0 {
        bail!("--max-answer-bytes 0 would refuse every answer; give a size in bytes");
    }
    let client = ClientConfig {
        temperature: args.temperature,
        max_tokens: (args.max_tokens > 0).then_some(args.max_tokens),
        max_answer_bytes: args.max_answer_bytes,
        retry_paid: args.retry_paid,
        ..endpoint.client_config()?
    };
    let style: EvidenceStyle = args
        .style
        .parse()
        .with_context(|| format!("--style {}", args.style))?;
    if args.examples == 0 {
        bail!("--examples 0 would show the explainer nothing; the original uses 5");
    }
    let evidence = EvidenceOptions {
        style,
        examples: args.examples,
        extra_quantiles: args.quantiles,
        max_side: args.max_side,
        max_pixels: model.max_pixels,
    };
    let prompt = match &args.prompt_file {
        Some(p) => PromptTemplate::from_file(p)?,
        None => PromptTemplate::builtin(),
    };
    Ok(ExplainerConfig {
        client,
        evidence,
        prompt,
        dataset: args.dataset.clone(),
    })
}

/// Run `glint --batch explain`.
pub fn run(model: &ModelArgs, args: &ExplainArgs) -> Result<ExitCode> {
    // `--model` is the global LLaVA flag; taking it for the explainer's name would send the
    // wrong model to a paid server, so say so instead of ignoring it.
    if model.model.is_some() && std::env::var_os("GLINT_MODEL").is_none() {
        bail!(
            "--model names the LLaVA model, which explain does not use; name the explainer with --explainer-model"
        );
    }
    let store = Store::open(&args.store)?;
    let filter = parse_features(&args.features, &store.manifest().hookpoint)?;
    if let Some(path) = &args.export_seed {
        let (file, n) = export_seed_json(&store, path, args.explainer_model.as_deref(), &filter)?;
        print_or_json(
            args.json,
            &serde_json::json!({"file": file.display().to_string(), "explanations": n}),
            || format!("wrote {n} explanations to {}", file.display()),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &args.import_seed {
        let who = args.explainer_model.as_deref().unwrap_or(SEED_EXPLAINER);
        let s = import_seed_json(&store, path, who, &filter)?;
        print_or_json(args.json, &s, || {
            format!(
                "imported {} explanations from {} file(s) into {} ({} for other hookpoints, {} skipped)",
                s.imported,
                s.files,
                args.store.display(),
                s.other_hookpoints,
                s.skipped
            )
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = explainer_config(model, args)?;
    config.client.notices = super::client::Notices::stderr();
    let explainer = Explainer::new(&store, config)?;
    if let Some(dir) = &args.preview {
        return preview(&explainer, &store, &filter, args, dir);
    }
    let opts = BatchOptions {
        features: filter,
        concurrency: args.concurrency,
        max_failures: args.max_failures,
        redo: args.redo,
        retry_unparsed: args.retry_unparsed,
        progress_bar: std::io::stderr().is_terminal() && !args.json,
        handle_ctrl_c: true,
    };
    let summary = block_on(run_batch(&explainer, &store, &opts))?;
    print_or_json(args.json, &summary, || format_summary(&summary))?;
    let partial = !summary.failed.is_empty() || summary.stopped.is_some();
    Ok(if partial {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}

/// Write the images and request body of each feature that a run would explain under `dir`.
fn preview(
    explainer: &Explainer,
    store: &Store,
    filter: &FeatureFilter,
    args: &ExplainArgs,
    dir: &Path,
) -> Result<ExitCode> {
    let mut written = 0usize;
    for item in store.features() {
        let (f, _) = item?;
        if !filter.contains(f) || (!args.redo && explainer.existing(store, f)?.is_some()) {
            continue;
        }
        let images = explainer.evidence_now(store, f)?;
        let fdir = dir.join(format!("feature{f}"));
        std::fs::create_dir_all(&fdir)
            .with_context(|| format!("{}: cannot create", fdir.display()))?;
        for (k, img) in images.iter().enumerate() {
            let p = fdir.join(format!("{k}_image{}.png", img.image));
            std::fs::write(&p, &img.png)
                .with_context(|| format!("{}: cannot write", p.display()))?;
        }
        let body = serde_json::to_vec_pretty(&explainer.request_body(&images))?;
        std::fs::write(fdir.join("request.json"), body)
            .with_context(|| format!("{}: cannot write", fdir.display()))?;
        written += 1;
    }
    print_or_json(
        args.json,
        &serde_json::json!({"features": written, "dir": dir.display().to_string()}),
        || {
            format!(
                "wrote the evidence and request of {written} features under {} (nothing sent)",
                dir.display()
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The summary as lines for people.
pub fn format_summary(s: &BatchSummary) -> String {
    let mut out = format!(
        "explained {} features with {} at {} (prompt {}, hash {})",
        s.done, s.model, s.base_url_host, s.prompt, s.prompt_hash
    );
    if !s.unparsed.is_empty() {
        out += &format!(
            "\n  {} answered without [EXPLANATION]: (stored with the fallback text): {:?}",
            s.unparsed.len(),
            s.unparsed
        );
    }
    if s.declined > 0 {
        out += &format!(
            "\n  {} declined (\"Unable to produce descriptions\")",
            s.declined
        );
    }
    out += &format!(
        "\nskipped {} already explained, {} that never fired",
        s.already_explained, s.never_fired
    );
    if s.replayed > 0 {
        out += &format!(
            "\n{} answers taken from the journal of paid answers (not asked for again)",
            s.replayed
        );
    }
    if s.maybe_billed > 0 {
        out += &format!(
            "\n{} requests may have been billed without a stored answer (timed out, broken off, oversize, malformed, or in flight when an earlier run was killed)",
            s.maybe_billed
        );
    }
    if !s.failed.is_empty() {
        out += &format!("\nfailed {}:", s.failed.len());
        for e in &s.failed {
            out += &format!("\n  feature {}: {}", e.feature, e.reason);
        }
    }
    if let Some(why) = &s.stopped {
        out += &format!(
            "\n{why}; {} features not started (run again to continue)",
            s.not_started
        );
    }
    out += &format!(
        "\n{} requests · tokens {} prompt + {} completion (reported by {} answers) · {:.1} s",
        s.requests, s.usage.prompt_tokens, s.usage.completion_tokens, s.usage_reported, s.seconds
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_arguments() {
        assert_eq!(parse_features("all", "h").unwrap(), FeatureFilter::All);
        assert_eq!(
            parse_features("2..5", "h").unwrap(),
            FeatureFilter::Range(2, 5)
        );
        assert_eq!(
            parse_features("9, 3,3", "h").unwrap(),
            FeatureFilter::List(vec![3, 9])
        );
        assert_eq!(
            parse_features("7", "h").unwrap(),
            FeatureFilter::List(vec![7])
        );
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("filter.json");
        std::fs::write(&f, r#"{"model.layers.24": [4, 1]}"#).unwrap();
        let got = parse_features(&f.display().to_string(), "model.layers.24").unwrap();
        assert_eq!(got, FeatureFilter::List(vec![1, 4]));
        assert!(
            format!(
                "{:#}",
                parse_features(&f.display().to_string(), "x").unwrap_err()
            )
            .contains("filter.json")
        );
        assert!(
            parse_features("some", "h")
                .unwrap_err()
                .to_string()
                .contains("a range like")
        );
    }
}
