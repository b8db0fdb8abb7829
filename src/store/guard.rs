//! Guards around sled: its panics caught without their default report, and the free space a
//! write needs checked before it starts.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Once;

use anyhow::{Result, bail};

thread_local! {
    /// Set while a guarded sled call runs on this thread.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

/// Run `f` (a sled call), turning a panic into `Err` without printing sled's panic message:
/// the caller reports the damage in glint's own words instead.
pub(crate) fn catch_sled<T>(f: impl FnOnce() -> T) -> Result<T, ()> {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.map_err(drop)
}

/// Free space the store keeps on its disk beyond what a write needs, in bytes; the environment
/// variable `GLINT_MIN_FREE_BYTES` overrides it.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;

/// The reserve in force (see [`DEFAULT_MIN_FREE_BYTES`]).
fn min_free_bytes() -> u64 {
    std::env::var("GLINT_MIN_FREE_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MIN_FREE_BYTES)
}

/// Refuse to write `bytes` into the store at `dir` unless its disk has room for them several
/// times over (sled logs a batch, then may rewrite segments) plus the reserve. A write that
/// fails half way on a full disk can leave sled unable to read what was committed, so glint
/// never starts one.
pub(crate) fn ensure_room(dir: &Path, bytes: u64) -> Result<()> {
    let probe = if dir.exists() {
        dir
    } else {
        dir.ancestors().find(|p| p.exists()).unwrap_or(dir)
    };
    let Ok(free) = fs2::available_space(probe) else {
        // A file system that cannot say (rare) is not refused.
        return Ok(());
    };
    let need = bytes.saturating_mul(3).saturating_add(min_free_bytes());
    if free < need {
        bail!(
            "not enough free space for the store {}: {} free, a write needs {} (3 × {} of data \
             plus a reserve of {}); nothing was written and what is committed is intact. Free \
             some space (or move the store to a larger disk) and run this again; \
             GLINT_MIN_FREE_BYTES sets the reserve",
            dir.display(),
            human(free),
            human(need),
            human(bytes),
            human(min_free_bytes()),
        );
    }
    Ok(())
}

/// Bytes in MiB or GiB for messages.
fn human(bytes: u64) -> String {
    let mib = bytes as f64 / f64::from(1 << 20);
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_panics_become_errors_and_others_still_panic() {
        assert_eq!(catch_sled(|| 3), Ok(3));
        assert_eq!(
            catch_sled(|| -> u32 { panic!("tried to serialize") }),
            Err(())
        );
        // The guard leaves the thread's panics reported as before.
        let outside = std::panic::catch_unwind(|| panic!("ordinary"));
        assert!(outside.is_err());
        assert!(!QUIET.with(Cell::get));
    }

    #[test]
    fn room_is_checked_against_the_disk() {
        let tmp = tempfile::tempdir().unwrap();
        ensure_room(tmp.path(), 1 << 10).unwrap();
        let free = fs2::available_space(tmp.path()).unwrap();
        let msg = format!("{:#}", ensure_room(tmp.path(), free).unwrap_err());
        assert!(
            msg.contains(&tmp.path().display().to_string()) && msg.contains("nothing was written"),
            "{msg}"
        );
        // A store folder not made yet is judged by the disk it will be on.
        ensure_room(&tmp.path().join("a/b"), 1 << 10).unwrap();
    }
}
