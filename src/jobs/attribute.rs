//! `glint --batch attribute`: the original's attribution-patching JSON in, the latents behind
//! each answer out (JSON), and optionally the original's filter file of the top latents.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::attribute::{
    AttributeOptions, AttributionItem, AttributionResult, Attributor, CodeChange,
    LatentAttribution, Part, Timing, TokenChoice, filter_json, top_latents,
};
use crate::model::anyres::ImageLayout;
use crate::session::Session;

/// What `glint --batch attribute` is asked to do.
#[derive(Debug, Clone)]
pub struct AttributeJob {
    /// JSON list of `{"prompt", "answer", "baseline", "image"}` (the original's probing data).
    pub data: PathBuf,
    /// Output JSON: one entry per item with its top latents.
    pub out: PathBuf,
    /// Latents listed per item.
    pub top: usize,
    /// Also write a filter file of the top K latents (`{"model.layers.L": [ids…]}`).
    pub create_filters: Option<usize>,
    /// Rank by the image-token part of the attribution instead of the total.
    pub image_only: bool,
    /// Rank the listed latents by magnitude instead of signed value (filters stay signed).
    pub by_abs: bool,
    /// Folder of the filter file `filters_top_<K>_<data stem>.json`.
    pub filters_dir: PathBuf,
    /// Wrap each prompt in the chat template (the original's prompts are formatted already).
    pub chat: bool,
    /// Skip the plain (SAE-free) forward that checks the patched metric.
    pub no_plain_check: bool,
    /// Also time one ablation forward per item, to compare with a per-latent loop.
    pub time_ablation: bool,
}

/// One item's entry in the output JSON.
#[derive(Debug, Clone, Serialize)]
pub struct ItemReport {
    /// Index in the data file.
    pub index: usize,
    /// The prompt as given.
    pub prompt: String,
    /// The image as resolved.
    pub image: Option<String>,
    /// Answer token.
    pub answer: TokenChoice,
    /// Baseline token.
    pub baseline: TokenChoice,
    /// Metric of the plain model.
    pub plain_metric: Option<f64>,
    /// Metric with the SAE spliced in.
    pub patched_metric: f64,
    /// Sequence positions.
    pub positions: usize,
    /// Image positions.
    pub image_positions: usize,
    /// Active (position, latent) pairs.
    pub active_pairs: usize,
    /// Distinct latents active anywhere.
    pub active_latents: usize,
    /// Mean relative SAE error at the tap.
    pub sae_rel_error: f64,
    /// What `top` is ranked by.
    pub ranked_by: Part,
    /// Image geometry for drawing `image_map`s.
    pub layout: Option<ImageLayout>,
    /// The top latents.
    pub top: Vec<LatentAttribution>,
    /// Stage timings in seconds.
    pub timing: Timing,
    /// With `--time-ablation`: one ablation forward, and the per-latent loop it implies.
    pub ablation: Option<AblationTiming>,
}

/// Cost of the per-latent alternative, from one timed ablation forward.
#[derive(Debug, Clone, Serialize)]
pub struct AblationTiming {
    /// One forward with the top latent zero-ablated (SAE with its error node, no backward).
    pub ablation_s: f64,
    /// `ablation_s` × the SAE's latents: a loop that ablates every latent once.
    pub per_latent_loop_s: f64,
}

/// Read the original's JSON list of items; relative images resolve against the working folder,
/// then against the data file's folder.
pub fn read_items(path: &Path) -> Result<Vec<AttributionItem>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the attribution data", path.display()))?;
    let mut items: Vec<AttributionItem> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON list of {{\"prompt\", \"answer\", \"baseline\", \"image\"}}",
            path.display()
        )
    })?;
    if items.is_empty() {
        bail!("{}: the list of items is empty", path.display());
    }
    let base = path.parent().unwrap_or(Path::new("."));
    for (i, item) in items.iter_mut().enumerate() {
        if let Some(img) = &item.image
            && !img.exists()
        {
            let near = base.join(img);
            if !near.exists() {
                bail!(
                    "{}: item {i}: image {} not found (also tried {})",
                    path.display(),
                    img.display(),
                    near.display()
                );
            }
            item.image = Some(near);
        }
    }
    Ok(items)
}

/// Filter file path as the original names it: `filters_top_<k>_<data stem>.json`.
pub fn filter_path(dir: &Path, k: usize, data: &Path) -> PathBuf {
    let stem = data
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    dir.join(format!("filters_top_{k}_{stem}.json"))
}

/// Attribute every item; write the report and, when asked, the filter file.
pub fn run_attribute(session: &Session, args: &AttributeJob) -> Result<Vec<ItemReport>> {
    let items = read_items(&args.data)?;
    let opts = AttributeOptions {
        chat: args.chat,
        max_pixels: session.max_pixels,
        check_plain: !args.no_plain_check,
    };
    let part = if args.image_only {
        Part::Image
    } else {
        Part::Total
    };
    let attributor = Attributor::from_session(session);
    let mut reports = Vec::with_capacity(items.len());
    let mut lists: Vec<Vec<LatentAttribution>> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let t0 = Instant::now();
        let context = || format!("{}: item {index}", args.data.display());
        let prepared = attributor.prepare(item, &opts).with_context(context)?;
        let prepare_s = t0.elapsed().as_secs_f64();
        let mut r = attributor
            .run(&prepared, opts.check_plain)
            .with_context(context)?;
        r.timing.prepare_s = prepare_s;
        let ablation = match (args.time_ablation, r.latents.first()) {
            (true, Some(top)) => {
                let t1 = Instant::now();
                attributor.metric(&prepared, &CodeChange::Zero(vec![top.latent]), false)?;
                let s = t1.elapsed().as_secs_f64();
                Some(AblationTiming {
                    ablation_s: s,
                    per_latent_loop_s: s * session.sae.num_latents() as f64,
                })
            }
            _ => None,
        };
        eprintln!(
            "{}",
            summary_line(index, &r, part, t0.elapsed().as_secs_f64())
        );
        let ranked = r.ranked(part, args.by_abs);
        reports.push(ItemReport {
            index,
            prompt: item.prompt.clone(),
            image: item.image.as_ref().map(|p| p.display().to_string()),
            answer: r.answer.clone(),
            baseline: r.baseline.clone(),
            plain_metric: r.plain_metric,
            patched_metric: r.patched_metric,
            positions: r.positions,
            image_positions: r.image_positions,
            active_pairs: r.active_pairs,
            active_latents: r.latents.len(),
            sae_rel_error: r.sae_rel_error,
            ranked_by: part,
            layout: r.layout.clone(),
            top: ranked.into_iter().take(args.top).collect(),
            timing: r.timing.clone(),
            ablation,
        });
        if args.create_filters.is_some() {
            lists.push(r.latents);
        }
    }
    write_json(&args.out, &reports)?;
    eprintln!(
        "attribution: {} item(s) → {}",
        reports.len(),
        args.out.display()
    );
    if let Some(k) = args.create_filters {
        if k == 0 {
            bail!("--create-filters 0 selects no latent; give K ≥ 1");
        }
        let ids = top_latents(lists.iter().map(Vec::as_slice), part, k);
        let path = filter_path(&args.filters_dir, k, &args.data);
        write_json(&path, &filter_json(session.sae.hookpoint(), &ids))?;
        eprintln!(
            "filters: top {} latent(s) by {} attribution → {}",
            ids.len(),
            if args.image_only { "image" } else { "total" },
            path.display()
        );
    }
    Ok(reports)
}

fn summary_line(index: usize, r: &AttributionResult, part: Part, secs: f64) -> String {
    let top: Vec<String> = r
        .ranked(part, false)
        .iter()
        .take(5)
        .map(|l| format!("{} ({:+.4})", l.latent, part.of(l)))
        .collect();
    let plain = r
        .plain_metric
        .map(|p| format!(" (plain {p:.6})"))
        .unwrap_or_default();
    format!(
        "item {index}: M = {:.6}{plain}, {} active pairs over {} latents, top {}; {secs:.2} s",
        r.patched_metric,
        r.active_pairs,
        r.latents.len(),
        top.join(", ")
    )
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_read_the_original_format_and_resolve_images_near_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"x").unwrap();
        let data = dir.path().join("probe.json");
        let text =
            r#"[{"prompt": "p <image>", "answer": "Ġred", "baseline": "Ġblue", "image": "a.png"}]"#;
        std::fs::write(&data, text).unwrap();
        let items = read_items(&data).unwrap();
        assert_eq!(
            items[0].image.as_deref(),
            Some(dir.path().join("a.png").as_path())
        );
        assert_eq!(items[0].answer, "Ġred");
        std::fs::write(
            &data,
            r#"[{"prompt": "p", "answer": "a", "baseline": "b", "image": "gone.png"}]"#,
        )
        .unwrap();
        let err = format!("{:#}", read_items(&data).unwrap_err());
        assert!(err.contains("gone.png"), "{err}");
        std::fs::write(&data, "[]").unwrap();
        assert!(read_items(&data).is_err());
    }

    #[test]
    fn filter_path_follows_the_original() {
        let p = filter_path(Path::new("filters"), 50, Path::new("data/digit.json"));
        assert_eq!(p, Path::new("filters/filters_top_50_digit.json"));
    }
}
