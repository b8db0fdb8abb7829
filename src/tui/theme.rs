//! Themes: named styles and the heatmap colour ramp, from TOML, a user file merged over a shipped one.

use std::collections::BTreeSet;

use anyhow::{Result, anyhow, bail};
use ratatui::style::{Color, Modifier, Style};

use super::keymap::line_of;
use crate::heatmap::overlay::Ramp;

/// The shipped dark theme.
pub const DARK: &str = include_str!("../../themes/dark.toml");
/// The shipped light theme.
pub const LIGHT: &str = include_str!("../../themes/light.toml");

/// Declares [`Theme`]'s style fields and their TOML names in one list, so a pane that asks for
/// a style the theme does not have fails to compile, and the loader knows every name.
macro_rules! styles {
    ($($field:ident = $name:literal: $doc:literal,)*) => {
        /// The theme: one style per role, plus the heatmap ramp.
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct Theme {
            $(#[doc = $doc] pub $field: Style,)*
            /// The heatmap colour ramp.
            pub ramp: Ramp,
        }

        /// Style names as written in theme files, in declaration order.
        pub const STYLES: &[&str] = &[$($name),*];

        impl Theme {
            /// The style written as `name` in theme files.
            fn slot(&mut self, name: &str) -> Option<&mut Style> {
                match name {
                    $($name => Some(&mut self.$field),)*
                    _ => None,
                }
            }
        }
    };
}

styles! {
    text = "text": "Body text.",
    dim = "dim": "Secondary text and hints.",
    title = "title": "Titles of panes and the app.",
    border = "border": "Pane borders.",
    focus_border = "focus-border": "The border of the focused pane.",
    selected = "selected": "The selected row, tab or example.",
    header = "header": "Table headers.",
    status = "status": "The status line.",
    busy = "busy": "Work in progress (spinner, running model).",
    error = "error": "Error messages.",
    key = "key": "Key names and prompt labels.",
    bar = "bar": "Histogram and score bars.",
    cursor = "cursor": "The patch cursor.",
    diff = "diff": "Steered tokens that differ from the default generation.",
}

const NAMES: &[(&str, Color)] = &[
    ("reset", Color::Reset),
    ("black", Color::Black),
    ("red", Color::Red),
    ("green", Color::Green),
    ("yellow", Color::Yellow),
    ("blue", Color::Blue),
    ("magenta", Color::Magenta),
    ("cyan", Color::Cyan),
    ("gray", Color::Gray),
    ("dark-gray", Color::DarkGray),
    ("light-red", Color::LightRed),
    ("light-green", Color::LightGreen),
    ("light-yellow", Color::LightYellow),
    ("light-blue", Color::LightBlue),
    ("light-magenta", Color::LightMagenta),
    ("light-cyan", Color::LightCyan),
    ("white", Color::White),
];

fn parse_colour(text: &str) -> Result<Color> {
    if let Some(hex) = text.strip_prefix('#') {
        let ok = hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            let b = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0);
            return Ok(Color::Rgb(b(0), b(2), b(4)));
        }
    }
    NAMES
        .iter()
        .find(|(n, _)| *n == text)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let names: Vec<_> = NAMES.iter().map(|(n, _)| *n).collect();
            anyhow!(
                "unknown colour {text:?}; use #rrggbb or one of {}",
                names.join(", ")
            )
        })
}

fn parse_style(v: &toml::Value) -> Result<Style> {
    let t = v
        .as_table()
        .ok_or_else(|| anyhow!("a style is a table like {{ fg = \"#ffffff\", bold = true }}"))?;
    let mut s = Style::default();
    for (k, v) in t {
        match (k.as_str(), v) {
            ("fg", toml::Value::String(c)) => s = s.fg(parse_colour(c)?),
            ("bg", toml::Value::String(c)) => s = s.bg(parse_colour(c)?),
            ("bold", toml::Value::Boolean(true)) => s = s.add_modifier(Modifier::BOLD),
            ("italic", toml::Value::Boolean(true)) => s = s.add_modifier(Modifier::ITALIC),
            ("underline", toml::Value::Boolean(true)) => s = s.add_modifier(Modifier::UNDERLINED),
            ("bold" | "italic" | "underline", toml::Value::Boolean(false)) => {}
            _ => bail!("unknown style field {k} = {v}; fields are fg, bg, bold, italic, underline"),
        }
    }
    Ok(s)
}

/// The `--theme` value that picks the shipped theme from the terminal's background.
pub const AUTO: &str = "auto";

/// The shipped theme for a terminal background: light on a light one, dark on a dark one or
/// when the terminal did not say.
pub fn for_background(background: Option<(u8, u8, u8)>) -> &'static str {
    match background {
        // Relative luminance (Rec. 709 weights) past the middle grey.
        Some((r, g, b))
            if 0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b) > 127.5 =>
        {
            "light"
        }
        _ => "dark",
    }
}

/// The theme to load for `--theme name`: `auto` follows the background, any other name is kept.
pub fn resolve(name: &str, background: Option<(u8, u8, u8)>) -> &str {
    if name == AUTO {
        for_background(background)
    } else {
        name
    }
}

impl Theme {
    /// The shipped theme `name` ("dark" or "light") with each `(file name, text)` merged over it.
    pub fn load(name: &str, user: &[(String, String)]) -> Result<Theme> {
        let base = match name {
            "dark" => DARK,
            "light" => LIGHT,
            other => bail!(
                "unknown theme {other:?}; shipped themes are dark and light (or auto, which \
                 follows the terminal's background)"
            ),
        };
        let mut theme = Theme::default();
        let mut defined = BTreeSet::new();
        theme.merge(&format!("themes/{name}.toml"), base, &mut defined)?;
        for (file, text) in user {
            theme.merge(file, text, &mut defined)?;
        }
        if let Some(missing) = STYLES.iter().find(|s| !defined.contains(**s)) {
            bail!("theme {name}: style {missing} is not defined");
        }
        Ok(theme)
    }

    /// Lay the styles and ramp of `text` over this theme, noting each style it sets in `defined`.
    fn merge(&mut self, file: &str, text: &str, defined: &mut BTreeSet<String>) -> Result<()> {
        let table: toml::Table = toml::from_str(text).map_err(|e| anyhow!("{file}: {e}"))?;
        for (section, body) in table {
            let body = body
                .as_table()
                .ok_or_else(|| anyhow!("{file}: [{section}] must be a table"))?;
            for (key, v) in body {
                let at = format!("{file}:{}", line_of(text, &section, key));
                match section.as_str() {
                    "styles" => {
                        let Some(slot) = self.slot(key) else {
                            bail!(
                                "{at}: unknown style {key}; styles are {}",
                                STYLES.join(", ")
                            );
                        };
                        *slot = parse_style(v).map_err(|e| anyhow!("{at}: style {key}: {e}"))?;
                        defined.insert(key.clone());
                    }
                    "heatmap" if key == "gradient" => {
                        let colours: Vec<String> = v
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|c| c.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default();
                        self.ramp = Ramp::from_hex(&colours)
                            .map_err(|e| anyhow!("{at}: heatmap.gradient: {e}"))?;
                    }
                    _ => bail!("{at}: unknown key {section}.{key}"),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_background_picks_the_theme_unless_one_is_named() {
        assert_eq!(for_background(Some((255, 255, 255))), "light");
        assert_eq!(for_background(Some((253, 246, 227))), "light");
        assert_eq!(for_background(Some((0, 0, 0))), "dark");
        assert_eq!(for_background(Some((40, 42, 54))), "dark");
        // Saturated blue is dark, saturated green light: luminance, not the channel mean.
        assert_eq!(for_background(Some((0, 0, 255))), "dark");
        assert_eq!(for_background(Some((0, 200, 0))), "light");
        assert_eq!(for_background(None), "dark");
        assert_eq!(resolve(AUTO, Some((255, 255, 255))), "light");
        assert_eq!(resolve("dark", Some((255, 255, 255))), "dark");
        assert_eq!(resolve("light", None), "light");
    }

    #[test]
    fn shipped_themes_parse() {
        for name in ["dark", "light"] {
            let t = Theme::load(name, &[]).unwrap();
            assert_ne!(t.selected, Style::default());
            assert_eq!(t.ramp.stops().len(), 6);
        }
    }

    #[test]
    fn user_theme_merges_and_bad_colours_name_the_line() {
        let user = (
            "theme.toml".to_string(),
            "[styles]\ntitle = { fg = \"red\" }\n".to_string(),
        );
        let t = Theme::load("dark", &[user]).unwrap();
        assert_eq!(t.title.fg, Some(Color::Red));
        let bad = (
            "theme.toml".to_string(),
            "[styles]\ntitle = { bold = true }\ntext = { fg = \"#fff\" }\n".to_string(),
        );
        let e = Theme::load("dark", &[bad]).unwrap_err().to_string();
        assert!(
            e.contains("theme.toml:3") && e.contains("unknown colour"),
            "{e}"
        );
        let bad = (
            "t.toml".to_string(),
            "[heatmap]\ngradient = [\"#zzzzzz\"]\n".to_string(),
        );
        assert!(
            Theme::load("dark", &[bad])
                .unwrap_err()
                .to_string()
                .contains("t.toml:2")
        );
        let typo = (
            "theme.toml".to_string(),
            "[styles]\ntext = { fg = \"red\" }\nfocus_border = { bold = true }\n".to_string(),
        );
        let e = Theme::load("dark", &[typo]).unwrap_err().to_string();
        assert!(
            e.contains("theme.toml:3") && e.contains("unknown style focus_border"),
            "{e}"
        );
    }
}
