//! Runs `glint --batch export`: the original's layout, or the feature table as CSV or JSON.

use std::io::Write;

use anyhow::{Context, Result, bail};

use crate::cli::args::{ExportArgs, ExportFormat};
use crate::score::export::{EMPTY_EXPORT_REASON, TableFormat, render_table};
use crate::store::Store;

/// `glint --batch export`.
pub fn run(args: &ExportArgs) -> Result<()> {
    let table = match args.format {
        ExportFormat::Seed => None,
        ExportFormat::Csv => Some(TableFormat::Csv),
        ExportFormat::Json => Some(TableFormat::Json),
        ExportFormat::Filter => return write_list(args),
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

/// One feature list as the original system's filter file.
fn write_list(args: &ExportArgs) -> Result<()> {
    let store = Store::open(&args.store)?;
    let names = || {
        store
            .lists()
            .map(|l| l.into_iter().map(|l| l.name).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let Some(name) = &args.list else {
        bail!(
            "--format filter writes one feature list: name it with --list (lists: {})",
            names()
        );
    };
    let Some(list) = store.list(name)? else {
        bail!(
            "store {} has no feature list {name:?} (lists: {})",
            args.store.display(),
            names()
        );
    };
    let text = list.filter_json(&store.manifest().hookpoint);
    write_out(&args.out, &text)?;
    if args.out.as_os_str() != "-" {
        eprintln!(
            "wrote list {name:?} ({} features) to {}",
            list.entries.len(),
            args.out.display()
        );
    }
    Ok(())
}

/// `text` to the file `out`, or to standard output for `-`.
fn write_out(out: &std::path::Path, text: &str) -> Result<()> {
    if out.as_os_str() == "-" {
        return std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing the export to standard output");
    }
    std::fs::write(out, text).with_context(|| format!("{}: cannot write the export", out.display()))
}

/// The feature table to a file, or to standard output for `--out -`.
fn write_table(args: &ExportArgs, format: TableFormat) -> Result<()> {
    let store = Store::open(&args.store)?;
    let (text, rows) = render_table(&store, format)?;
    write_out(&args.out, &text)?;
    if args.out.as_os_str() == "-" {
        return Ok(());
    }
    match rows {
        0 => eprintln!(
            "wrote 0 features to {}: {EMPTY_EXPORT_REASON}",
            args.out.display()
        ),
        n => eprintln!("wrote {n} features to {}", args.out.display()),
    }
    Ok(())
}
