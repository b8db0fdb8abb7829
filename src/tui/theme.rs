//! Themes: named styles and the heatmap colour ramp, from TOML, a user file merged over a shipped one.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use ratatui::style::{Color, Modifier, Style};

use super::keymap::line_of;
use crate::heatmap::overlay::Ramp;

/// The shipped dark theme.
pub const DARK: &str = include_str!("../../themes/dark.toml");
/// The shipped light theme.
pub const LIGHT: &str = include_str!("../../themes/light.toml");

/// Style names a theme must define.
pub const STYLES: &[&str] = &[
    "text",
    "dim",
    "title",
    "border",
    "focus-border",
    "selected",
    "header",
    "status",
    "busy",
    "error",
    "key",
    "bar",
    "cursor",
    "diff",
];

/// Named styles plus the heatmap ramp.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    styles: BTreeMap<String, Style>,
    /// The heatmap colour ramp.
    pub ramp: Ramp,
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

impl Theme {
    /// The shipped theme `name` ("dark" or "light") with each `(file name, text)` merged over it.
    pub fn load(name: &str, user: &[(String, String)]) -> Result<Theme> {
        let base = match name {
            "dark" => DARK,
            "light" => LIGHT,
            other => bail!("unknown theme {other:?}; shipped themes are dark and light"),
        };
        let mut theme = Theme {
            styles: BTreeMap::new(),
            ramp: Ramp::default(),
        };
        theme.merge(&format!("themes/{name}.toml"), base)?;
        for (file, text) in user {
            theme.merge(file, text)?;
        }
        if let Some(missing) = STYLES.iter().find(|s| !theme.styles.contains_key(**s)) {
            bail!("theme {name}: style {missing} is not defined");
        }
        Ok(theme)
    }

    /// Lay the styles and ramp of `text` over this theme.
    pub fn merge(&mut self, file: &str, text: &str) -> Result<()> {
        let table: toml::Table = toml::from_str(text).map_err(|e| anyhow!("{file}: {e}"))?;
        for (section, body) in table {
            let body = body
                .as_table()
                .ok_or_else(|| anyhow!("{file}: [{section}] must be a table"))?;
            for (key, v) in body {
                let at = format!("{file}:{}", line_of(text, &section, key));
                match section.as_str() {
                    "styles" if STYLES.contains(&key.as_str()) => {
                        let s = parse_style(v).map_err(|e| anyhow!("{at}: style {key}: {e}"))?;
                        self.styles.insert(key.clone(), s);
                    }
                    "styles" => bail!(
                        "{at}: unknown style {key}; styles are {}",
                        STYLES.join(", ")
                    ),
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

    /// The style `name` (default style if the name is unknown, which tests rule out).
    pub fn style(&self, name: &str) -> Style {
        self.styles.get(name).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_themes_parse() {
        for name in ["dark", "light"] {
            let t = Theme::load(name, &[]).unwrap();
            assert_ne!(t.style("selected"), Style::default());
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
        assert_eq!(t.style("title").fg, Some(Color::Red));
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
    }
}
