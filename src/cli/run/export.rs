//! Runs `glint --batch export`: the original's layout, or the feature table as CSV or JSON.

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::args::{ExportArgs, ExportFormat};
use crate::score::export::{EMPTY_EXPORT_REASON, TableFormat, render_table};
use crate::store::Store;

/// `glint --batch export`.
pub fn run(args: &ExportArgs) -> Result<()> {
    let table = match args.format {
        ExportFormat::Seed => None,
        ExportFormat::Csv => Some(TableFormat::Csv),
        ExportFormat::Json => Some(TableFormat::Json),
    };
    if let Some(format) = table {
        return write_table(args, format);
    }
    let store = Store::open(&args.store)?;
    let files =
        crate::store::export_seed(&store, &args.out, args.n_splits, args.reproduce_split_bug)?;
    println!("wrote {} files under {}", files.len(), args.out.display());
    Ok(())
}

/// The feature table to a file, or to standard output for `--out -`.
fn write_table(args: &ExportArgs, format: TableFormat) -> Result<()> {
    let store = Store::open(&args.store)?;
    let (text, rows) = render_table(&store, format)?;
    if args.out.as_os_str() == "-" {
        std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing the export to standard output")?;
        return Ok(());
    }
    std::fs::write(&args.out, text)
        .with_context(|| format!("{}: cannot write the export", args.out.display()))?;
    match rows {
        0 => eprintln!(
            "wrote 0 features to {}: {EMPTY_EXPORT_REASON}",
            args.out.display()
        ),
        n => eprintln!("wrote {n} features to {}", args.out.display()),
    }
    Ok(())
}
