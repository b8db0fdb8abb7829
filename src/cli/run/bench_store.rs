//! Runs `glint bench store` and prints its report.

use anyhow::Result;

/// `glint bench store`.
pub fn run(a: &crate::cli::args::StoreBenchArgs) -> Result<()> {
    use crate::store::bench::{StoreBenchOptions, run_store_bench};
    let r = run_store_bench(&StoreBenchOptions {
        latents: a.latents,
        k: a.k,
        tokens: a.tokens,
        images: a.images,
        top_n: a.top_n,
        profile: a.profile,
        seed: a.seed,
        commit_every: a.commit_every,
        out: a.out.clone(),
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let rate = |x: &Option<crate::store::bench::Rates>| {
        x.as_ref()
            .map_or("-".into(), |r| format!("{:.2}", r.images_per_second))
    };
    println!(
        "store bench ({:?}, {} latents, k {}, {} tokens, {} images, top {}): {:.2} images/s \
         ({:.2e} codes/s); first 10% {} images/s, last 10% {}",
        r.profile,
        r.latents,
        r.k,
        r.tokens,
        r.images,
        r.top_n,
        r.overall.images_per_second,
        r.overall.codes_per_second,
        rate(&r.first_10pct),
        rate(&r.last_10pct)
    );
    let d = &r.disk;
    println!(
        "  written {:.1} MB ({:.0} KB/image) · store {:.1} MB ({:.0} KB/image) · examples listed \
         {}, stored {}, most stored {} (bound {})",
        r.bytes_written as f64 / 1e6,
        r.bytes_written_per_image / 1e3,
        d.store_bytes as f64 / 1e6,
        d.store_bytes_per_image / 1e3,
        d.listed_examples,
        d.stored_examples,
        d.most_stored_examples,
        d.stored_examples_bound
    );
    let s = &r.stages;
    println!(
        "  busy seconds: codes {:.1} · aggregation {:.1} · commits {:.1} built, {:.1} written",
        r.generate_s, s.aggregate_s, s.commit_prepare_s, s.commit_write_s
    );
    Ok(())
}
