//! Runs `glint --batch export`: the original's layout, or the feature table as CSV or JSON.

use std::io::Write;

use anyhow::{Context, Result, bail};

use crate::cli::args::{ExportArgs, ExportFormat, ModelArgs};
use crate::jobs::pages::{compute_missing_pages, page_targets};
use crate::score::export::{EMPTY_EXPORT_REASON, TableFormat, render_table};
use crate::session::Session;
use crate::store::{FeatureFilter, Store};

/// `glint --batch export`.
pub fn run(model: &ModelArgs, args: &ExportArgs) -> Result<()> {
    if args.pages.is_some() && args.format != ExportFormat::Json {
        bail!("--pages fills the feature pages of the JSON export: add --format json");
    }
    let table = match args.format {
        ExportFormat::Seed => None,
        ExportFormat::Csv => Some(TableFormat::Csv),
        ExportFormat::Json => Some(TableFormat::Json),
        ExportFormat::Filter => return write_list(args),
    };
    if let Some(format) = table {
        return write_table(model, args, format);
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
fn write_table(model: &ModelArgs, args: &ExportArgs, format: TableFormat) -> Result<()> {
    let store = Store::open(&args.store)?;
    if let Some(features) = &args.pages {
        fill_pages(model, &store, features)?;
    }
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

/// Compute the pages of `features` that the store does not keep yet, with the model.
fn fill_pages(model: &ModelArgs, store: &Store, features: &str) -> Result<()> {
    let m = store.manifest();
    let filter = FeatureFilter::parse(features, &m.hookpoint).context("--pages")?;
    let ids = page_targets(store, &filter)?;
    let session = Session::open(&model.spec()?, Some(m.layer))?;
    let done = compute_missing_pages(&session, store, &ids, &mut |i, n, f| {
        eprintln!("page {}/{n}: feature {f}", i + 1);
    })?;
    eprintln!(
        "pages: {} computed, {} kept already",
        done.computed, done.kept
    );
    Ok(())
}
