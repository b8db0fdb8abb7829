//! Asking the terminal what it is and can draw: one query written at start (through tmux's
//! passthrough when tmux lets it reach the terminal outside), the answers read for a short while.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use super::choose::Facts;
use super::replies::{Replies, query};
use super::tmux::Tmux;

/// How long to wait for the answers; a terminal that answers at all does so well within it,
/// and the status report that closes the query ends the wait early.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(1000);

/// Query the terminal; call in raw mode, before anything else reads standard input.
pub fn probe() -> Facts {
    let tmux = Tmux::ask();
    let wrap = tmux.as_ref().is_some_and(Tmux::reaches_outer);
    // Unwrapped, tmux would take the kitty probe for a window title.
    let kitty = tmux.is_none() || wrap;
    let mut replies = Replies::parse(&exchange(&query(wrap, kitty), ANSWER_TIMEOUT));
    replies.cell = replies
        .cell
        .or_else(|| tmux.as_ref().and_then(|t| t.cell))
        .or_else(cell_from_window);
    Facts { replies, tmux }
}

/// The cell size from the terminal's pixel size, when it tells the kernel one.
fn cell_from_window() -> Option<(u16, u16)> {
    let w = crossterm::terminal::window_size().ok()?;
    let (cw, ch) = (
        w.width.checked_div(w.columns)?,
        w.height.checked_div(w.rows)?,
    );
    (cw > 0 && ch > 0).then_some((cw, ch))
}

/// Write `query` and read what comes back until the closing status report or `timeout`.
fn exchange(query: &str, timeout: Duration) -> Vec<u8> {
    let mut out = std::io::stdout();
    if out
        .write_all(query.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return Vec::new();
    }
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(wait) = Timespec::try_from(left) else {
            break;
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        if left.is_zero() || !matches!(poll(&mut fds, Some(&wait)), Ok(1..)) {
            break;
        }
        // Read the file descriptor itself: std's buffered stdin could keep bytes from the
        // event reader that starts after this.
        match rustix::io::read(fd, &mut buf) {
            Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
        if Replies::parse(&got).complete {
            break;
        }
    }
    got
}
