//! Runs `glint bench pages` and prints its report.

use anyhow::{Context, Result, bail};

use crate::cli::args::{ModelArgs, PagesBenchArgs};
use crate::dashboard::COFIRING_IMAGES;
use crate::jobs::bench::pages::{PagesBenchOptions, run_pages_bench};
use crate::session::Session;

/// `glint bench pages`.
pub fn run(model: &ModelArgs, a: &PagesBenchArgs) -> Result<()> {
    let folder = a.images.clone().unwrap_or_else(|| {
        let manifest = crate::sample::default_dataset();
        manifest.with_file_name("images")
    });
    let mut images: Vec<_> = std::fs::read_dir(&folder)
        .with_context(|| format!("{}: cannot list the co-firing images", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| crate::dataset::is_image(p))
        .collect();
    images.sort();
    images.truncate(COFIRING_IMAGES);
    if images.is_empty() {
        bail!("{}: no image to count co-firing over", folder.display());
    }
    let session = Session::open(&model.spec()?, None)?;
    let r = run_pages_bench(
        &session,
        &PagesBenchOptions {
            features: a.features,
            images,
        },
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "feature pages ({} latents, d {}, {} features, median / slowest ms):",
        r.latents,
        r.d_model,
        r.features.len()
    );
    let row = |name: &str, m: &crate::jobs::bench::pages::Millis| {
        println!("  {name:<44} {:>9.2} / {:.2}", m.median, m.max);
    };
    row(
        "page computed (logit lens + both neighbours)",
        &r.page_uncached_ms,
    );
    row("· logit lens", &r.logit_lens_ms);
    row("· decoder neighbours", &r.decoder_neighbours_ms);
    row("· encoder neighbours", &r.encoder_neighbours_ms);
    if let Some(c) = &r.cofiring_ms {
        row(&format!("co-firing over {} images", r.cofiring_images), c);
    }
    row("page kept, read back from the store", &r.page_cached_ms);
    println!(
        "  baseline: one pass over the decoder {:.2} ms; decoder neighbours {:.1}× that",
        r.decoder_pass_ms, r.neighbours_over_pass
    );
    Ok(())
}
