//! What tmux says about itself and the terminal outside it, read with `tmux display`, never
//! changing its options.

use std::process::{Command, Stdio};

/// The tmux option that lets a program reach the terminal outside tmux.
pub const PASSTHROUGH_HINT: &str = "tmux set -g allow-passthrough on";

/// What the workbench needs to know about the tmux it runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tmux {
    /// Whether `allow-passthrough` lets wrapped sequences through to the outer terminal.
    pub passthrough: bool,
    /// Whether tmux draws sixel images itself (tmux 3.4+ built with sixel, on a sixel terminal).
    pub sixel: bool,
    /// Whether a client is attached (a detached session has no outer terminal to ask).
    pub attached: bool,
    /// The outer terminal's cell size in pixels, (width, height).
    pub cell: Option<(u16, u16)>,
}

/// The `tmux display` format whose output [`Tmux::parse`] reads, one field a line.
const FORMAT: &str = "#{allow-passthrough}\n#{client_termname}\n#{client_termfeatures}\n\
                      #{client_cell_width}\n#{client_cell_height}";

impl Tmux {
    /// Ask the tmux server this pane belongs to; `None` outside tmux. A tmux that cannot be
    /// asked counts as detached: nothing is sent past it.
    pub fn ask() -> Option<Tmux> {
        std::env::var_os("TMUX")?;
        let out = Command::new("tmux")
            .args(["display-message", "-p", FORMAT])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success());
        Some(out.map_or_else(Tmux::default, |o| {
            Tmux::parse(&String::from_utf8_lossy(&o.stdout))
        }))
    }

    /// Read the lines of [`FORMAT`] as tmux expands it.
    pub fn parse(text: &str) -> Tmux {
        let mut lines = text.lines().map(str::trim);
        let mut next = || lines.next().unwrap_or("");
        // A flag in tmux 3.3 (`1`), a choice since 3.4 (`on`, `all`); before 3.3 there is no such
        // option (it expands to nothing) and passthrough needs none.
        let passthrough = matches!(next(), "" | "1" | "on" | "all");
        let attached = !next().is_empty();
        let sixel = next().split(',').any(|f| f == "sixel");
        let w = next().parse().ok().filter(|&w: &u16| w > 0);
        let h = next().parse().ok().filter(|&h: &u16| h > 0);
        Tmux {
            passthrough,
            sixel,
            attached,
            cell: w.zip(h),
        }
    }

    /// Whether sequences wrapped for passthrough reach a terminal.
    pub fn reaches_outer(&self) -> bool {
        self.passthrough && self.attached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attached_tmux_3_3_with_passthrough() {
        let t = Tmux::parse("1\nxterm\n256,bpaste,ccolour,clipboard,mouse,RGB,title\n6\n13\n");
        assert_eq!(
            t,
            Tmux {
                passthrough: true,
                sixel: false,
                attached: true,
                cell: Some((6, 13)),
            }
        );
        assert!(t.reaches_outer());
    }

    #[test]
    fn tmux_with_its_own_sixel_and_passthrough_off() {
        let t = Tmux::parse("off\nxterm\n256,RGB,sixel,title\n10\n20\n");
        assert!(t.sixel && !t.passthrough && !t.reaches_outer());
        // `all` (tmux 3.4) also lets wrapped sequences through.
        assert!(Tmux::parse("all\nxterm\n\n\n\n").passthrough);
    }

    #[test]
    fn a_detached_session_reaches_nothing() {
        let t = Tmux::parse("1\n\n\n0\n0\n");
        assert!(t.passthrough && !t.attached && !t.reaches_outer());
        assert_eq!(t.cell, None);
        assert!(!Tmux::parse("0\nxterm\n\n6\n13\n").passthrough);
    }

    #[test]
    fn tmux_before_3_3_passes_through_without_an_option() {
        // There the option expands to nothing.
        let t = Tmux::parse("\nxterm-256color\n256,RGB,title\n\n\n");
        assert!(t.passthrough && t.attached && t.reaches_outer());
    }
}
