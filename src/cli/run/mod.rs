//! One runner per command: typed options from the flags, the job, its output and exit code.

mod attribute;
mod bench;
mod bench_pages;
mod bench_store;
mod cache;
mod explain;
mod export;
mod import;
mod merge;
mod probe;
mod sample_data;
mod score;
mod steer;
mod train;

use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;

use super::args::{Cli, Command};
use super::output::EXIT_USAGE;

/// Run what the command line asks for.
pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    let ok = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    let model = &cli.model;
    match cli.command {
        Some(Command::Probe(args)) => ok(probe::run(model, &args)),
        Some(Command::SampleData(args)) => ok(sample_data::run(&args)),
        Some(Command::Cache(args)) => ok(cache::run(model, &args)),
        Some(Command::Merge(args)) => ok(merge::run(&args)),
        Some(Command::Export(args)) => ok(export::run(model, &args)),
        Some(Command::Import(args)) => ok(import::run(model, &args)),
        Some(Command::Explain(args)) => explain::run(model, &args),
        Some(Command::Bench(args)) => ok(bench::run(model, &args)),
        Some(Command::Train(args)) => ok(train::run(model, args)),
        Some(Command::Score(args)) => score::run(model, &args),
        Some(Command::Attribute(args)) => ok(attribute::run(model, &args)),
        Some(Command::Steer(args)) => ok(steer::run(model, &args)),
        None if cli.batch => {
            eprint!("{}", batch_usage());
            Ok(ExitCode::from(EXIT_USAGE))
        }
        None => ok(crate::tui::launch::main(
            &model.spec()?,
            cli.cache.as_deref(),
            &cli.graphics,
            &cli.theme,
        )),
    }
}

/// What `glint --batch` alone prints: the headless commands, one a line.
pub fn batch_usage() -> String {
    let mut out = String::from("glint --batch needs a command; the headless commands are:\n");
    let cmd = Cli::command();
    for sub in cmd.get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        out += &format!("  {:<12} {about}\n", sub.get_name());
    }
    out +=
        "run `glint --batch <command> --help` for its flags; `glint` alone opens the workbench\n";
    out
}
