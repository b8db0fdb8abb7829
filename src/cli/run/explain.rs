//! Runs `glint --batch explain`: a batch, a preview, or a seed export/import, with its output.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::cli::args::{ExplainArgs, ModelArgs};
use crate::cli::output::{block_on, exit_partial, print_or_json};
use crate::explain::seed_json::{SEED_EXPLAINER, export_seed_json, import_seed_json};
use crate::explain::settings::ExplainSettings;
use crate::explain::{BatchOptions, BatchSummary, Explainer, run_batch};
use crate::store::{FeatureFilter, Store};

/// The explainer settings named by the flags.
pub fn settings(args: &ExplainArgs) -> ExplainSettings {
    ExplainSettings {
        base_url: args.base_url.clone(),
        explainer_model: args.explainer_model.clone(),
        api_key_env: args.api_key_env.clone(),
        headers: args.headers.clone(),
        timeout: args.timeout,
        retries: args.retries,
        examples: args.examples,
        quantiles: args.quantiles,
        style: args.style,
        max_side: args.max_side,
        prompt_file: args.prompt_file.clone(),
        temperature: args.temperature,
        max_tokens: args.max_tokens,
        sglang_multi_images: args.sglang_multi_images,
        dataset: args.dataset.clone(),
    }
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
    let filter = FeatureFilter::parse(&args.features, &store.manifest().hookpoint)?;
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
    let explainer = Explainer::new(&store, settings(args).config(model.max_pixels)?)?;
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
    Ok(exit_partial(
        !summary.failed.is_empty() || summary.stopped.is_some(),
    ))
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
