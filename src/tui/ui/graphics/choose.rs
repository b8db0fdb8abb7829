//! Which picture protocol to draw with: one pure rule over what the terminal (and tmux) said.

use ratatui_image::picker::ProtocolType;

use super::GraphicsMode;
use super::replies::{Replies, parse_xtversion};
use super::tmux::{PASSTHROUGH_HINT, Tmux};

/// The first kitty with unicode placeholders, which ratatui-image's kitty protocol draws with.
const KITTY_PLACEHOLDERS: [u32; 2] = [0, 28];

/// Everything the choice depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The answers of the terminal that will draw (the outer one when queried through tmux).
    pub replies: Replies,
    /// Set inside tmux.
    pub tmux: Option<Tmux>,
}

/// The protocol to draw with and how to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The protocol.
    pub protocol: ProtocolType,
    /// Whether each image is wrapped for tmux's passthrough.
    pub wrap: bool,
    /// Why a better protocol was not taken, and what would enable it, for the status line.
    pub note: Option<String>,
}

impl Choice {
    fn new(protocol: ProtocolType, wrap: bool) -> Choice {
        Choice {
            protocol,
            wrap,
            note: None,
        }
    }

    fn halfblocks(note: Option<String>) -> Choice {
        Choice {
            note,
            ..Choice::new(ProtocolType::Halfblocks, false)
        }
    }
}

/// Whether the terminal named `name` at `version` draws kitty's unicode placeholders; unknown
/// versions of kitty are taken to (the protocol has had them since 2023).
pub fn kitty_placeholders(name: &str, version: &[u32]) -> bool {
    match name {
        "kitty" => version.is_empty() || version >= &KITTY_PLACEHOLDERS[..],
        // Both answer the kitty probe but draw no placeholders.
        "wezterm" | "konsole" => false,
        _ => true,
    }
}

/// Pick the protocol for `mode` given `facts`; never one that is known to draw nothing.
pub fn choose(mode: GraphicsMode, facts: &Facts) -> Choice {
    let tmux = facts.tmux.as_ref();
    // Whether a protocol sequence reaches the terminal that answered the query.
    let direct = tmux.is_none_or(Tmux::reaches_outer);
    let wrap = tmux.is_some();
    let tmux_sixel = tmux.is_some_and(|t| t.sixel);
    let blocked = || {
        Choice::halfblocks(Some(format!(
            "for sixel/kitty in tmux run `{PASSTHROUGH_HINT}`"
        )))
    };
    let r = &facts.replies;
    let (name, version) = parse_xtversion(r.version.as_deref().unwrap_or(""));
    let old_kitty = || {
        let v: Vec<String> = version.iter().map(u32::to_string).collect();
        format!(
            "kitty {} lacks unicode placeholders (needs 0.28)",
            v.join(".")
        )
    };
    let placeholders = kitty_placeholders(&name, &version);
    match mode {
        GraphicsMode::Halfblocks => Choice::halfblocks(None),
        GraphicsMode::Sixel if tmux_sixel => Choice::new(ProtocolType::Sixel, false),
        GraphicsMode::Sixel | GraphicsMode::Kitty | GraphicsMode::Iterm2 if !direct => blocked(),
        GraphicsMode::Kitty if !placeholders => Choice::halfblocks(Some(old_kitty())),
        GraphicsMode::Sixel => Choice::new(ProtocolType::Sixel, wrap),
        GraphicsMode::Kitty => Choice::new(ProtocolType::Kitty, wrap),
        GraphicsMode::Iterm2 => Choice::new(ProtocolType::Iterm2, wrap),
        GraphicsMode::Auto => {
            let sixel = r.da1.contains(&4);
            if direct && r.kitty && placeholders {
                Choice::new(ProtocolType::Kitty, wrap)
            } else if tmux_sixel {
                // tmux keeps its own images across redraws; passed-through ones it cannot.
                Choice::new(ProtocolType::Sixel, false)
            } else if direct && matches!(name.as_str(), "iterm2" | "wezterm" | "mintty") {
                // These draw iTerm2 images best (WezTerm answers sixel too).
                Choice::new(ProtocolType::Iterm2, wrap)
            } else if direct && sixel {
                Choice::new(ProtocolType::Sixel, wrap)
            } else if !direct && tmux.is_some_and(|t| t.attached) {
                blocked()
            } else if direct && r.kitty {
                Choice::halfblocks(Some(old_kitty()))
            } else {
                Choice::halfblocks(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(version: &str, da1: &[u16], kitty: bool) -> Replies {
        Replies {
            version: Some(version.into()),
            da1: da1.to_vec(),
            kitty,
            complete: true,
            ..Replies::default()
        }
    }

    fn tmux(passthrough: bool, sixel: bool) -> Option<Tmux> {
        Some(Tmux {
            passthrough,
            sixel,
            attached: true,
            ..Tmux::default()
        })
    }

    fn auto(replies: Replies, tmux: Option<Tmux>) -> Choice {
        choose(GraphicsMode::Auto, &Facts { replies, tmux })
    }

    #[test]
    fn kitty_draws_placeholders_from_0_28() {
        assert!(!kitty_placeholders("kitty", &[0, 26, 5]));
        assert!(!kitty_placeholders("kitty", &[0, 27, 99]));
        assert!(kitty_placeholders("kitty", &[0, 28]));
        assert!(kitty_placeholders("kitty", &[0, 35, 2]));
        assert!(kitty_placeholders("kitty", &[1]));
        assert!(kitty_placeholders("ghostty", &[1, 0]));
        assert!(!kitty_placeholders("wezterm", &[20240203]));
    }

    #[test]
    fn old_kitty_falls_back_to_half_blocks_and_says_why() {
        let old = term("kitty(0.26.5)", &[62], true);
        let c = auto(old.clone(), None);
        assert_eq!(c.protocol, ProtocolType::Halfblocks);
        assert!(
            c.note
                .as_deref()
                .is_some_and(|n| n.contains("kitty 0.26.5")),
            "{c:?}"
        );
        let forced = choose(
            GraphicsMode::Kitty,
            &Facts {
                replies: old,
                tmux: None,
            },
        );
        assert_eq!(forced.protocol, ProtocolType::Halfblocks);
        let new = auto(term("kitty(0.35.2)", &[62], true), None);
        assert_eq!(new, Choice::new(ProtocolType::Kitty, false));
    }

    #[test]
    fn an_old_kitty_that_answered_sixel_would_get_sixel() {
        let c = auto(term("kitty(0.20.0)", &[62, 4], true), None);
        assert_eq!(c, Choice::new(ProtocolType::Sixel, false));
    }

    #[test]
    fn sixel_terminals_get_sixel_wrapped_only_in_tmux() {
        let xterm = term("XTerm(379)", &[63, 1, 2, 4, 6], false);
        assert_eq!(
            auto(xterm.clone(), None),
            Choice::new(ProtocolType::Sixel, false)
        );
        assert_eq!(
            auto(xterm.clone(), tmux(true, false)),
            Choice::new(ProtocolType::Sixel, true)
        );
        assert_eq!(
            auto(term("XTerm(379)", &[63, 1, 2], false), None),
            Choice::halfblocks(None)
        );
    }

    #[test]
    fn tmux_without_passthrough_names_the_option() {
        // Without passthrough the query reached tmux itself.
        let inner = term("tmux 3.3a", &[1, 2], false);
        for mode in [GraphicsMode::Auto, GraphicsMode::Sixel, GraphicsMode::Kitty] {
            let facts = Facts {
                replies: inner.clone(),
                tmux: tmux(false, false),
            };
            let c = choose(mode, &facts);
            assert_eq!(c.protocol, ProtocolType::Halfblocks);
            assert!(
                c.note
                    .as_deref()
                    .is_some_and(|n| n.contains(PASSTHROUGH_HINT)),
                "{c:?}"
            );
        }
        // A detached session has no terminal to show pictures on: nothing to advise.
        let detached = Some(Tmux {
            attached: false,
            ..Tmux::default()
        });
        assert_eq!(auto(inner, detached), Choice::halfblocks(None));
    }

    #[test]
    fn tmux_with_its_own_sixel_draws_it_unwrapped() {
        let inner = term("tmux 3.5a", &[1, 2, 4], false);
        assert_eq!(
            auto(inner.clone(), tmux(false, true)),
            Choice::new(ProtocolType::Sixel, false)
        );
        let facts = Facts {
            replies: inner,
            tmux: tmux(false, true),
        };
        assert_eq!(
            choose(GraphicsMode::Sixel, &facts),
            Choice::new(ProtocolType::Sixel, false)
        );
        // A new kitty outside is still better, and reachable with passthrough.
        let kitty = term("kitty(0.35.2)", &[62], true);
        assert_eq!(
            auto(kitty, tmux(true, true)),
            Choice::new(ProtocolType::Kitty, true)
        );
    }

    #[test]
    fn forced_protocols_are_kept_where_they_can_draw() {
        let silent = Facts::default();
        assert_eq!(
            choose(GraphicsMode::Sixel, &silent),
            Choice::new(ProtocolType::Sixel, false)
        );
        assert_eq!(
            choose(GraphicsMode::Iterm2, &silent),
            Choice::new(ProtocolType::Iterm2, false)
        );
        assert_eq!(
            choose(GraphicsMode::Kitty, &silent),
            Choice::new(ProtocolType::Kitty, false)
        );
        let through = Facts {
            replies: Replies::default(),
            tmux: tmux(true, false),
        };
        assert_eq!(
            choose(GraphicsMode::Kitty, &through),
            Choice::new(ProtocolType::Kitty, true)
        );
        assert_eq!(
            choose(GraphicsMode::Halfblocks, &through),
            Choice::halfblocks(None)
        );
        assert_eq!(auto(Replies::default(), None), Choice::halfblocks(None));
    }

    #[test]
    fn iterm2_family_is_recognised_by_name() {
        let c = auto(
            term("WezTerm 20240203-110809-5046fc22", &[65, 4], true),
            None,
        );
        assert_eq!(c, Choice::new(ProtocolType::Iterm2, false));
        assert_eq!(
            auto(term("iTerm2 3.5.0", &[62], false), None),
            Choice::new(ProtocolType::Iterm2, false)
        );
    }
}
