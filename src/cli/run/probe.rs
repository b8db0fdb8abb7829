//! Runs `glint probe` and prints its report (or JSON, a dump, an inline heatmap).

use anyhow::Result;

use crate::cli::args::{ModelArgs, ProbeArgs};
use crate::jobs::probe::{format_report, probe, write_dump};
use crate::session::Session;

/// Probe one image and print what fires.
pub fn run(model: &ModelArgs, args: &ProbeArgs) -> Result<()> {
    let session = Session::open(&model.spec()?, args.layer)?;
    let result = probe(&session, &args.image, args.prompt.as_deref(), args.top)?;
    if let Some(path) = &args.dump {
        write_dump(&result, path, session.model.config.image_token_index)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result.report)?);
    } else {
        print!("{}", format_report(&result.report, args.top));
        if let Some(path) = &args.dump {
            println!("\nwrote {}", path.display());
        }
    }
    if args.show {
        crate::tui::show::print_strongest(&result, &args.image, "dark")?;
    }
    Ok(())
}
