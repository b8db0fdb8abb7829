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
    /// The outer terminal's XTVERSION text as tmux read it, e.g. `XTerm(379)`.
    pub outer: Option<String>,
    /// The outer terminal's cell size in pixels, (width, height).
    pub cell: Option<(u16, u16)>,
}

/// The `tmux display` format whose output [`Tmux::parse`] reads, one field a line.
const FORMAT: &str = "#{allow-passthrough}\n#{client_termname}\n#{client_termtype}\n\
                      #{client_termfeatures}\n#{client_cell_width}\n#{client_cell_height}";

impl Tmux {
    /// Ask the tmux server this pane belongs to; `None` outside tmux or when tmux cannot answer.
    pub fn ask() -> Option<Tmux> {
        std::env::var_os("TMUX")?;
        let out = Command::new("tmux")
            .args(["display-message", "-p", FORMAT])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success());
        // Inside tmux but no answer (an old tmux, another user's server): no passthrough known.
        Some(out.map_or_else(Tmux::default, |o| {
            Tmux::parse(&String::from_utf8_lossy(&o.stdout))
        }))
    }

    /// Read the lines of [`FORMAT`] as tmux expands it.
    pub fn parse(text: &str) -> Tmux {
        let mut lines = text.lines().map(str::trim);
        let mut next = || lines.next().unwrap_or("");
        let passthrough = matches!(next(), "on" | "all" | "1");
        let attached = !next().is_empty();
        let outer = Some(next()).filter(|t| !t.is_empty()).map(String::from);
        let sixel = next().split(',').any(|f| f == "sixel");
        let w = next().parse().ok().filter(|&w: &u16| w > 0);
        let h = next().parse().ok().filter(|&h: &u16| h > 0);
        Tmux {
            passthrough,
            sixel,
            attached,
            outer,
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
        let t = Tmux::parse(
            "on\nxterm\nXTerm(379)\n256,bpaste,ccolour,clipboard,mouse,RGB,title\n6\n13\n",
        );
        assert_eq!(
            t,
            Tmux {
                passthrough: true,
                sixel: false,
                attached: true,
                outer: Some("XTerm(379)".into()),
                cell: Some((6, 13)),
            }
        );
        assert!(t.reaches_outer());
    }

    #[test]
    fn tmux_with_its_own_sixel_and_passthrough_off() {
        let t = Tmux::parse("off\nxterm\nXTerm(390)\n256,RGB,sixel,title\n10\n20\n");
        assert!(t.sixel && !t.passthrough && !t.reaches_outer());
        // `all` (tmux 3.4) also lets wrapped sequences through.
        assert!(Tmux::parse("all\nxterm\n\n\n\n\n").passthrough);
    }

    #[test]
    fn a_detached_session_or_an_old_tmux_reaches_nothing() {
        let t = Tmux::parse("on\n\n\n\n0\n0\n");
        assert!(t.passthrough && !t.attached && !t.reaches_outer());
        assert_eq!(t.cell, None);
        // tmux before 3.3 has no such option: the format expands to nothing.
        assert_eq!(Tmux::parse(""), Tmux::default());
    }
}
