//! Runs `glint --batch train` and prints its report.

use anyhow::Result;

use crate::cli::args::{ModelArgs, TrainArgs};
use crate::jobs::train::{format_report, run_train};

/// Train (or evaluate) an SAE as the flags ask.
pub fn run(model: &ModelArgs, args: TrainArgs) -> Result<()> {
    let report = run_train(&model.spec()?, &args.into())?;
    print!("{}", format_report(&report));
    Ok(())
}
