//! Runs `glint --batch attribute`.

use anyhow::Result;

use crate::cli::args::{AttributeArgs, ModelArgs};
use crate::jobs::attribute::run_attribute;
use crate::session::Session;

/// Open the session at `--layer` and attribute every item.
pub fn run(model: &ModelArgs, args: &AttributeArgs) -> Result<()> {
    let session = Session::open(&model.spec()?, args.layer)?;
    run_attribute(&session, &args.job())?;
    Ok(())
}
