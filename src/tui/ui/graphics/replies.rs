//! The terminal query glint sends at start and the parse of its answers: a pure function of the
//! bytes read back, so every reply form is unit-tested without a terminal.

/// Raw colour channels of a terminal's background, scaled to 8 bits.
pub type Rgb = (u8, u8, u8);

/// What the terminal answered to [`query`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replies {
    /// XTVERSION text, e.g. `kitty(0.26.5)` or `XTerm(379)`.
    pub version: Option<String>,
    /// Primary device attributes (DA1), e.g. `[63, 1, 2, 4]`; 4 means sixel.
    pub da1: Vec<u16>,
    /// Whether the kitty graphics probe was answered `OK`.
    pub kitty: bool,
    /// Cell size in pixels, (width, height), from `CSI 16 t`.
    pub cell: Option<(u16, u16)>,
    /// Background colour, from OSC 11.
    pub background: Option<Rgb>,
    /// Whether the closing status report came back (everything before it has been answered).
    pub complete: bool,
}

/// ESC, and the string terminator `ESC \`.
const ESC: &str = "\x1b";

/// The query: XTVERSION, the kitty graphics probe (only when `kitty`), DA1, cell size, OSC 11,
/// and a status report last, which every terminal answers, so its reply marks the end. With
/// `wrap` it is sent through tmux's passthrough to the terminal outside tmux.
pub fn query(wrap: bool, kitty: bool) -> String {
    let mut q = String::new();
    q += "\x1b[>0q";
    if kitty {
        // A one-pixel query image (a=q): answered, never shown.
        q += "\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\";
    }
    q += "\x1b[c\x1b[16t\x1b]11;?\x07\x1b[5n";
    if wrap { passthrough(&q) } else { q }
}

/// `seq` inside tmux's passthrough: `ESC P tmux; … ESC \` with every inner ESC doubled.
pub fn passthrough(seq: &str) -> String {
    let (start, escape, end) =
        ratatui_image::picker::cap_parser::Parser::tmux_start_escape_end(true);
    format!("{start}{}{end}", seq.replace(ESC, escape))
}

impl Replies {
    /// Parse everything read back; unknown or cut-off sequences are skipped.
    pub fn parse(bytes: &[u8]) -> Replies {
        let text = String::from_utf8_lossy(bytes);
        let mut r = Replies::default();
        let mut rest: &str = &text;
        while let Some(at) = rest.find(ESC) {
            rest = &rest[at + 1..];
            let Some(kind) = rest.chars().next() else {
                break;
            };
            rest = &rest[kind.len_utf8()..];
            let (body, after) = match kind {
                '[' => match rest.find(|c: char| ('@'..='~').contains(&c)) {
                    Some(end) => (&rest[..=end], &rest[end + 1..]),
                    None => break,
                },
                'P' | '_' | ']' => match string_end(rest) {
                    Some((end, len)) => (&rest[..end], &rest[end + len..]),
                    None => break,
                },
                _ => continue,
            };
            rest = after;
            match kind {
                '[' => r.csi(body),
                'P' => {
                    if let Some(v) = body.strip_prefix(">|") {
                        r.version = Some(v.trim().to_string());
                    }
                }
                '_' => r.kitty |= body.starts_with("Gi=31;OK"),
                _ => {
                    if let Some(c) = body.strip_prefix("11;") {
                        r.background = parse_colour(c).or(r.background);
                    }
                }
            }
        }
        r
    }

    /// One CSI reply (without the leading `ESC [`).
    fn csi(&mut self, body: &str) {
        if let Some(attrs) = body.strip_prefix('?').and_then(|b| b.strip_suffix('c')) {
            self.da1 = attrs.split(';').filter_map(|a| a.parse().ok()).collect();
        } else if let Some(size) = body.strip_prefix("6;").and_then(|b| b.strip_suffix('t')) {
            let mut it = size.split(';').map(|n| n.parse::<u16>().ok());
            if let (Some(Some(h)), Some(Some(w))) = (it.next(), it.next())
                && w > 0
                && h > 0
            {
                self.cell = Some((w, h));
            }
        } else if body == "0n" {
            self.complete = true;
        }
    }
}

/// Where a string sequence ends: (offset of its terminator, terminator length); BEL or `ESC \`.
fn string_end(s: &str) -> Option<(usize, usize)> {
    let bel = s.find('\x07').map(|i| (i, 1));
    let st = s.find("\x1b\\").map(|i| (i, 2));
    match (bel, st) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// An X11 colour as terminals report it: `rgb:R/G/B` with 1 to 4 hex digits a channel
/// (`rgba:` has a fourth, ignored), each scaled to 8 bits.
pub fn parse_colour(text: &str) -> Option<Rgb> {
    let body = text
        .strip_prefix("rgb:")
        .or_else(|| text.strip_prefix("rgba:"))?;
    let mut channels = body.split('/').map(|h| {
        let ok = (1..=4).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit());
        let v = u32::from_str_radix(h, 16).ok().filter(|_| ok)?;
        let max = (1u32 << (4 * h.len())) - 1;
        Some(((v * 255 + max / 2) / max) as u8)
    });
    let (r, g, b) = (channels.next()??, channels.next()??, channels.next()??);
    Some((r, g, b))
}

/// A terminal's name and version from its XTVERSION text: `kitty(0.26.5)`, `XTerm(379)`,
/// `tmux 3.3a`, `WezTerm 20240203-110809-5046fc22`; the name lower-cased, the version as its
/// leading dot-separated numbers (`3.3a` is 3.3).
pub fn parse_xtversion(text: &str) -> (String, Vec<u32>) {
    let text = text.trim();
    let split = text.find(['(', ' ']).unwrap_or(text.len());
    let name = text[..split].to_ascii_lowercase();
    let rest = text[split..].trim_start_matches([' ', '(']);
    let mut version = Vec::new();
    for part in rest.split('.') {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let Ok(n) = digits.parse() else { break };
        version.push(n);
        if digits.len() != part.len() {
            break;
        }
    }
    (name, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xterm_answers_are_read() {
        let bytes = b"\x1bP>|XTerm(379)\x1b\\\x1b[?63;1;2;4;6;9;15;16;22;28c\
                      \x1b]11;rgb:ffff/ffff/ffff\x07\x1b[0n";
        let r = Replies::parse(bytes);
        assert_eq!(r.version.as_deref(), Some("XTerm(379)"));
        assert_eq!(r.da1, vec![63, 1, 2, 4, 6, 9, 15, 16, 22, 28]);
        assert_eq!(r.background, Some((255, 255, 255)));
        assert!(r.complete && !r.kitty && r.cell.is_none());
    }

    #[test]
    fn kitty_answers_are_read() {
        let bytes = b"\x1bP>|kitty(0.26.5)\x1b\\\x1b_Gi=31;OK\x1b\\\x1b[?62;c\x1b[6;20;9t\
                      \x1b]11;rgb:0000/0000/0000\x1b\\\x1b[0n";
        let r = Replies::parse(bytes);
        assert_eq!(r.version.as_deref(), Some("kitty(0.26.5)"));
        assert!(r.kitty && r.complete);
        assert_eq!(r.da1, vec![62]);
        assert_eq!(r.cell, Some((9, 20)));
        assert_eq!(r.background, Some((0, 0, 0)));
    }

    #[test]
    fn refused_kitty_probe_cut_replies_and_noise_are_not_answers() {
        let r = Replies::parse(b"\x1b_Gi=31;ENOENT:no\x1b\\junk\x1bZ\x1b[?1;2c\x1b[0");
        assert!(!r.kitty && !r.complete);
        assert_eq!(r.da1, vec![1, 2]);
        assert_eq!(Replies::parse(b"\x1bP>|tmu"), Replies::default());
        assert_eq!(Replies::parse(b"\x1b[6;0;9t").cell, None);
    }

    #[test]
    fn the_query_ends_with_a_status_report_and_wraps_for_tmux() {
        let q = query(false, true);
        assert!(q.starts_with("\x1b[>0q") && q.ends_with("\x1b[5n") && q.contains("_Gi=31"));
        assert!(!query(false, false).contains("_G"));
        let w = query(true, false);
        assert!(w.starts_with("\x1bPtmux;\x1b\x1b[>0q") && w.ends_with("\x1b\x1b[5n\x1b\\"));
        // Inside, every ESC is doubled, so the only single ones open and close the wrapper.
        let inner = &w["\x1bPtmux;".len()..w.len() - 2];
        assert_eq!(inner.replace("\x1b\x1b", "").find('\x1b'), None);
    }

    #[test]
    fn colours_scale_from_any_width() {
        assert_eq!(parse_colour("rgb:ffff/8080/0000"), Some((255, 128, 0)));
        assert_eq!(parse_colour("rgb:f/8/0"), Some((255, 136, 0)));
        assert_eq!(parse_colour("rgb:fd/f6/e3"), Some((253, 246, 227)));
        assert_eq!(parse_colour("rgba:1c1c/1c1c/1c1c/ffff"), Some((28, 28, 28)));
        assert_eq!(parse_colour("rgb:ffff/ffff"), None);
        assert_eq!(parse_colour("rgb:fffff/0/0"), None);
        assert_eq!(parse_colour("#ffffff"), None);
    }

    #[test]
    fn xtversion_names_and_versions() {
        assert_eq!(
            parse_xtversion("kitty(0.26.5)"),
            ("kitty".into(), vec![0, 26, 5])
        );
        assert_eq!(parse_xtversion("XTerm(379)"), ("xterm".into(), vec![379]));
        assert_eq!(parse_xtversion("tmux 3.3a"), ("tmux".into(), vec![3, 3]));
        assert_eq!(
            parse_xtversion("WezTerm 20240203-110809-5046fc22"),
            ("wezterm".into(), vec![20240203])
        );
        assert_eq!(parse_xtversion("foot"), ("foot".into(), vec![]));
    }
}
