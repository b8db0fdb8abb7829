//! Runs `glint --batch cache` and prints its summary.

use std::io::IsTerminal;

use anyhow::Result;

use crate::cli::args::{CacheArgs, ModelArgs};
use crate::dataset::{Dataset, DatasetOptions, Shard};
use crate::jobs::cache::{CacheOptions, run_cache};
use crate::sample;
use crate::session::Session;

/// `glint --batch cache`.
pub fn run(model: &ModelArgs, args: &CacheArgs) -> Result<()> {
    let session = Session::open(&model.spec()?, None)?;
    let spec = args.dataset.clone().unwrap_or_else(sample::default_dataset);
    let opts = DatasetOptions {
        limit: args.limit,
        shuffle_seed: args.shuffle.then_some(args.seed),
        split: args.split.clone(),
    };
    let dataset = Dataset::open(&spec, &opts)?;
    let shard = match &args.shard {
        Some(s) => Some(Shard::parse(s)?),
        None => Shard::from_env(|k| std::env::var(k).ok())?,
    };
    let features = args.feature_filter(session.sae.hookpoint())?;
    let opts = CacheOptions {
        out: args.out.clone(),
        top_n: args.top_n,
        rank: args.rank,
        features,
        shard,
        commit_every: args.commit_every,
        progress_bar: std::io::stderr().is_terminal() && !args.json,
        tokens: args.tokens,
        range_sample: args.range_sample,
    };
    let summary = run_cache(&session, &dataset, &opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "cached {} images ({} resumed, {} skipped) into {} · {:.2} images/s · {:.0} tokens/s · store {:.1} MB, {:.0} KB/image",
            summary.images_done,
            summary.images_resumed,
            summary.skipped.len(),
            summary.store,
            summary.images_per_second,
            summary.tokens_per_second,
            summary.store_bytes as f64 / 1e6,
            summary.store_bytes_per_image / 1e3
        );
        let st = &summary.stages;
        println!(
            "  busy seconds per stage: waiting for images {:.1} · device {:.1} · aggregation {:.1} · commits {:.1} built, {:.1} written",
            st.wait_for_images_s,
            st.device_s,
            st.aggregate_s,
            st.commit_prepare_s,
            st.commit_write_s
        );
        for s in &summary.skipped {
            println!("  skipped {} ({}): {}", s.index, s.path, s.reason);
        }
        for u in &summary.unlisted {
            println!("  not listed {}: {}", u.path, u.reason);
        }
    }
    Ok(())
}
