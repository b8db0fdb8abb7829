//! Runs `glint --batch merge`.

use anyhow::Result;

use crate::cli::args::MergeArgs;

/// `glint --batch merge`.
pub fn run(args: &MergeArgs) -> Result<()> {
    let store = crate::store::merge(&args.out, &args.shards)?;
    let p = store.progress()?;
    println!(
        "merged {} shards into {}: {} images",
        args.shards.len(),
        args.out.display(),
        p.images
    );
    Ok(())
}
