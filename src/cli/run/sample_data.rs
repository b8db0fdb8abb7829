//! Runs `glint sample-data`.

use anyhow::Result;

use crate::cli::args::SampleDataArgs;

/// Regenerate the sample world and say what was written.
pub fn run(args: &SampleDataArgs) -> Result<()> {
    let summary = crate::sample::generate_sample_world(&args.out, args.seed, args.random_sae)?;
    println!(
        "wrote {}: {} images, {} objects, {:.1} MB",
        args.out.display(),
        summary.images,
        summary.objects,
        summary.bytes as f64 / 1e6
    );
    Ok(())
}
