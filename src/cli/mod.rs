//! The command line: clap's types ([`args`]), one runner per command ([`run`]) and the output
//! conventions shared by all ([`output`]). The settings step lives beside each command's flags:
//! it turns them into the core's typed options, so nothing below this module sees the parser.

pub mod args;
mod choices;
pub mod output;
pub mod run;

use std::process::ExitCode;

use clap::Parser;

/// Parse the command line, run it, and turn the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match run::dispatch(cli) {
        Ok(code) => code,
        // The reader of `--out -` went away: what it read was complete as far as it wanted.
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
