//! Runs `glint bench store` and prints its report.

use anyhow::Result;

use crate::store::bench::{StoreBenchOptions, StoreBenchReport, run_store_bench};

/// `glint bench store`.
pub fn run(a: &crate::cli::args::StoreBenchArgs) -> Result<()> {
    let opts = StoreBenchOptions {
        latents: a.latents,
        k: a.k,
        tokens: a.tokens,
        images: a.images,
        top_n: a.top_n,
        range_sample: a.range_sample,
        profile: a.profile,
        seed: a.seed,
        commit_every: a.commit_every,
        out: a.out.clone(),
    };
    let r = run_store_bench(&opts)?;
    // The baseline: the same codes, no range sample (into a temporary folder of its own).
    let baseline = if a.range_cost {
        Some(run_store_bench(&StoreBenchOptions {
            range_sample: 0,
            out: None,
            ..opts
        })?)
    } else {
        None
    };
    if a.json {
        let out = match &baseline {
            Some(b) => serde_json::json!({ "run": r, "without_range_sample": b }),
            None => serde_json::to_value(&r)?,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_report(&r);
    if let Some(b) = &baseline {
        print_range_cost(&r, b);
    }
    Ok(())
}

fn print_report(r: &StoreBenchReport) {
    let rate = |x: &Option<crate::store::bench::Rates>| {
        x.as_ref()
            .map_or("-".into(), |r| format!("{:.2}", r.images_per_second))
    };
    println!(
        "store bench ({:?}, {} latents, k {}, {} tokens, {} images, top {}, range sample {}): \
         {:.2} images/s ({:.2e} codes/s); first 10% {} images/s, last 10% {}",
        r.profile,
        r.latents,
        r.k,
        r.tokens,
        r.images,
        r.top_n,
        r.range_sample,
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
}

/// What keeping the range sample cost against the run without it.
fn print_range_cost(r: &StoreBenchReport, b: &StoreBenchReport) {
    let busy = |x: &StoreBenchReport| x.stages.aggregate_s + x.stages.commit_prepare_s;
    let features = r.latents as f64;
    println!(
        "  range sample cost: aggregation + commit building {:.2} s vs {:.2} s without ({:.3}×), \
         images/s {:.3}× · store +{:.1} MB, {:.0} B/feature (of which {:.0} B/feature in sample \
         lists)",
        busy(r),
        busy(b),
        busy(r) / busy(b).max(1e-9),
        r.overall.images_per_second / b.overall.images_per_second.max(1e-9),
        (r.disk.store_bytes as f64 - b.disk.store_bytes as f64) / 1e6,
        (r.disk.store_bytes as f64 - b.disk.store_bytes as f64) / features,
        r.disk.range_bytes as f64 / features
    );
}
