//! What every command prints the same way: JSON or lines, the async runtime of the network
//! commands, exit codes, and a closed standard output treated as the reader's choice.

use std::future::Future;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Exit status of a run that left work undone (failures, or stopped early); a rerun continues.
pub const EXIT_PARTIAL: u8 = 3;

/// Exit status of a command line that names no command where one is needed.
pub const EXIT_USAGE: u8 = 2;

/// Run `job` to the end on a fresh multi-threaded runtime (the CLI has no runtime of its own).
pub fn block_on<T>(job: impl Future<Output = Result<T>>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(job)
}

/// Print `value` as pretty JSON when `json` (for scripts), else the line(s) from `text`.
pub fn print_or_json<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}

/// Success, or [`EXIT_PARTIAL`] when `partial`.
pub fn exit_partial(partial: bool) -> ExitCode {
    if partial {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    }
}

/// Whether `err` comes from writing to a closed pipe (`glint … --out - | head`): the reader
/// stopped reading, which is not a failure of the command.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_and_broken_pipes() {
        assert_eq!(block_on(async { Ok(7) }).unwrap(), 7);
        assert!(block_on(async { Err::<(), _>(anyhow::anyhow!("x")) }).is_err());
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the export");
        assert!(is_broken_pipe(&pipe));
        assert!(!is_broken_pipe(&anyhow::anyhow!("disk full")));
    }
}
