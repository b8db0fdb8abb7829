//! Keymaps: TOML tables of `"key" = "action"` per mode, the shipped default merged with a user file.
//!
//! Key syntax: a character (`j`, `G`, `?`), a named key in angle brackets (`<Enter>`, `<Esc>`,
//! `<Up>`, `<PageDown>`, `<Tab>`, `<Space>`, `<F1>`), a modifier form (`<C-c>`, `<A-x>`), or a
//! chord of two keys separated by a space (`g g`). Errors name the file and line.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The keymap shipped with the binary.
pub const DEFAULT_KEYMAP: &str = include_str!("../../keymaps/default.toml");

macro_rules! actions {
    ($($variant:ident = $name:literal : $desc:literal,)*) => {
        /// Everything a key can do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action { $(#[doc = $desc] $variant,)* }

        impl Action {
            /// Every action, in help order.
            pub const ALL: &[Action] = &[$(Action::$variant,)*];

            /// The kebab-case name used in keymap files.
            pub fn name(self) -> &'static str {
                match self { $(Action::$variant => $name,)* }
            }

            /// One-line description for the help overlay.
            pub fn description(self) -> &'static str {
                match self { $(Action::$variant => $desc,)* }
            }

            /// The action named `name`, if any.
            pub fn from_name(name: &str) -> Option<Action> {
                match name { $($name => Some(Action::$variant),)* _ => None }
            }
        }
    };
}

actions! {
    Quit = "quit": "Quit glint",
    Help = "help": "Show or hide this help",
    Back = "back": "Close, cancel the model job, go back",
    Up = "up": "Move up",
    Down = "down": "Move down",
    Left = "left": "Move left",
    Right = "right": "Move right",
    PageUp = "page-up": "Move up a page",
    PageDown = "page-down": "Move down a page",
    First = "first": "Go to the first entry",
    Last = "last": "Go to the last entry",
    Open = "open": "Open the selection",
    SortNext = "sort-next": "Sort by the next column",
    SortReverse = "sort-reverse": "Reverse the sort order",
    Search = "search": "Search ids, explanations, labels",
    FilterDensity = "filter-density": "Filter by density (min..max)",
    Jump = "jump": "Jump to a feature by number",
    ToggleStyle = "toggle-style": "Toggle heatmap: intensity / mask",
    OpenImage = "open-image": "Open an image (index or file path)",
    FocusNext = "focus-next": "Switch focus between panes",
    Features = "features": "Go to the features screen",
    Feature = "feature": "Go to the feature screen",
    Image = "image": "Go to the image screen",
    NextFeature = "next-feature": "Next feature, in the table's order",
    PrevFeature = "prev-feature": "Previous feature, table order",
    Explain = "explain": "Ask the explainer (in background)",
    Label = "label": "Write or edit the human label",
    Steer = "steer": "Go to the steering screen",
    SteerAdd = "steer-add": "Add this feature to the steering rows",
    AddRow = "add-row": "Add a steering row by typing it (12, 12 add 40, 7 replace 3x)",
    DeleteRow = "delete-row": "Delete the selected steering row",
    StrengthUp = "strength-up": "Raise the strength a fine step (0.1×max or 1 raw)",
    StrengthDown = "strength-down": "Lower the strength a fine step (0.1×max or 1 raw)",
    StrengthUpCoarse = "strength-up-coarse": "Raise the strength a coarse step (1×max or 10 raw)",
    StrengthDownCoarse = "strength-down-coarse": "Lower the strength a coarse step (1×max or 10 raw)",
    TypeStrength = "type-strength": "Type the strength (2.5x = × cached max, a plain number = raw)",
    CycleMode = "cycle-mode": "Next steering mode: replace, clamp, add",
    CycleUnit = "cycle-unit": "Switch the strength unit: × cached max / raw (same raw value)",
    CyclePhase = "cycle-phase": "Next phase edited: prefill, decode, both",
    CycleTokens = "cycle-tokens": "Next tokens edited: all, image, text",
    CycleDirection = "cycle-direction": "add: use the raw or the unit decoder direction",
    EditPrompt = "edit-prompt": "Edit the steering prompt",
    EditImage = "edit-image": "Set the steering image (file or dataset index; empty: none)",
    MaxTokens = "max-tokens": "Set the tokens generated per side",
    Regenerate = "regenerate": "Run the default and steered generations again",
    SavePreset = "save-preset": "Save prompt, image and rows to a .toml or .json preset",
    LoadPreset = "load-preset": "Load a .toml or .json steering preset",
    Attrib = "attrib": "Go to the attribution screen",
    AttribImage = "attrib-image": "Set the attribution image (file or dataset index; empty: none)",
    AttribPrompt = "attrib-prompt": "Set the attribution prompt",
    AttribAnswer = "attrib-answer": "Set the answer token (a leading space counts)",
    AttribBaseline = "attrib-baseline": "Set the baseline token (a leading space counts)",
    AttribRun = "attrib-run": "Attribute the answer to the SAE latents (one forward + backward)",
    CycleSign = "cycle-sign": "Patch map: |attribution|, positive part, negative part",
    TogglePage = "toggle-page": "Examples / what it writes, its neighbours and co-firing",
    ToggleRange = "toggle-range": "Examples: top / across its range, by decile",
    ListAdd = "list-add": "Add this feature to a named list (NAME: note)",
    Compare = "compare": "Mark this feature, then compare it side by side with another",
}

/// Where keys are looked up: the screen's own table, then `global`.
pub const MODES: &[&str] = &["global", "features", "feature", "image", "steer", "attrib"];

/// One key press, normalised (shifted letters carry no SHIFT flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The key.
    pub code: KeyCodeOrd,
    /// Control/Alt only.
    pub ctrl: bool,
    /// Alt held.
    pub alt: bool,
}

/// A comparable subset of crossterm key codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyCodeOrd {
    /// A character.
    Char(char),
    /// A named key (index into [`NAMED`]).
    Named(u8),
    /// A function key.
    F(u8),
}

const NAMED: &[(&str, KeyCode)] = &[
    ("Enter", KeyCode::Enter),
    ("Esc", KeyCode::Esc),
    ("Up", KeyCode::Up),
    ("Down", KeyCode::Down),
    ("Left", KeyCode::Left),
    ("Right", KeyCode::Right),
    ("PageUp", KeyCode::PageUp),
    ("PageDown", KeyCode::PageDown),
    ("Home", KeyCode::Home),
    ("End", KeyCode::End),
    ("Tab", KeyCode::Tab),
    ("BackTab", KeyCode::BackTab),
    ("Backspace", KeyCode::Backspace),
    ("Delete", KeyCode::Delete),
];

impl Key {
    /// The key of a crossterm event, or `None` for keys no keymap can name.
    pub fn from_event(ev: &KeyEvent) -> Option<Key> {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        let alt = ev.modifiers.contains(KeyModifiers::ALT);
        let code = match ev.code {
            KeyCode::Char(c) => KeyCodeOrd::Char(c),
            KeyCode::F(n) => KeyCodeOrd::F(n),
            other => KeyCodeOrd::Named(NAMED.iter().position(|(_, k)| *k == other)? as u8),
        };
        Some(Key { code, ctrl, alt })
    }

    /// Parse one key in keymap syntax.
    pub fn parse(text: &str) -> Result<Key> {
        let bad = || anyhow::anyhow!("bad key {text:?}: write a character, <Enter>, <C-c>, <F1> …");
        let mut chars = text.chars();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            return Ok(Key {
                code: KeyCodeOrd::Char(c),
                ctrl: false,
                alt: false,
            });
        }
        let inner = text
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .ok_or_else(bad)?;
        let (mut ctrl, mut alt, mut rest) = (false, false, inner);
        while rest.len() > 2 && rest.as_bytes()[1] == b'-' {
            match rest.as_bytes()[0] {
                b'C' => ctrl = true,
                b'A' => alt = true,
                _ => return Err(bad()),
            }
            rest = &rest[2..];
        }
        let mut rc = rest.chars();
        let code = match (rc.next(), rc.next()) {
            (Some(c), None) if ctrl || alt => KeyCodeOrd::Char(c),
            _ if rest == "Space" => KeyCodeOrd::Char(' '),
            _ if rest.starts_with('F') && rest[1..].parse::<u8>().is_ok() => {
                KeyCodeOrd::F(rest[1..].parse().map_err(|_| bad())?)
            }
            _ => {
                KeyCodeOrd::Named(NAMED.iter().position(|(n, _)| *n == rest).ok_or_else(bad)? as u8)
            }
        };
        Ok(Key { code, ctrl, alt })
    }

    /// The key in keymap syntax.
    pub fn display(&self) -> String {
        let base = match self.code {
            KeyCodeOrd::Char(' ') => "Space".to_string(),
            KeyCodeOrd::Char(c) => c.to_string(),
            KeyCodeOrd::F(n) => format!("F{n}"),
            KeyCodeOrd::Named(i) => NAMED.get(i as usize).map_or("?", |n| n.0).to_string(),
        };
        let plain = !self.ctrl && !self.alt && matches!(self.code, KeyCodeOrd::Char(c) if c != ' ');
        if plain {
            return base;
        }
        format!(
            "<{}{}{}>",
            if self.ctrl { "C-" } else { "" },
            if self.alt { "A-" } else { "" },
            base
        )
    }
}

/// A sequence of one or two keys.
pub type KeySeq = Vec<Key>;

/// The result of looking a key sequence up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A bound action.
    Action(Action),
    /// The start of a chord: wait for the next key.
    Prefix,
    /// Nothing bound.
    None,
}

/// Parsed keymap: per mode, key sequence → action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keymap {
    modes: BTreeMap<String, BTreeMap<KeySeq, Action>>,
}

/// 1-based line of `key` inside `[section]` in `src`, for error messages.
pub(crate) fn line_of(src: &str, section: &str, key: &str) -> usize {
    let mut in_section = false;
    for (i, line) in src.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t.trim_matches(|c| c == '[' || c == ']').trim() == section;
        } else if in_section {
            let lhs = t
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(|c| c == '"' || c == '\'');
            if lhs == key {
                return i + 1;
            }
        }
    }
    0
}

impl Keymap {
    /// The shipped default merged with each `(file name, text)` in order.
    pub fn load(user: &[(String, String)]) -> Result<Keymap> {
        let mut map = Keymap::default();
        map.merge("keymaps/default.toml", DEFAULT_KEYMAP)?;
        for (name, text) in user {
            map.merge(name, text)?;
        }
        Ok(map)
    }

    /// Parse `text` and lay its bindings over this map.
    pub fn merge(&mut self, name: &str, text: &str) -> Result<()> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        for (mode, bindings) in table {
            if !MODES.contains(&mode.as_str()) {
                bail!(
                    "{name}: unknown mode [{mode}]; modes are {}",
                    MODES.join(", ")
                );
            }
            let Some(bindings) = bindings.as_table() else {
                bail!("{name}: [{mode}] must be a table of \"key\" = \"action\"");
            };
            for (keys, action) in bindings {
                let line = line_of(text, &mode, keys);
                let at = format!("{name}:{line}");
                let seq = keys
                    .split(' ')
                    .filter(|k| !k.is_empty())
                    .map(Key::parse)
                    .collect::<Result<Vec<_>>>()
                    .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
                if seq.is_empty() || seq.len() > 2 {
                    bail!("{at}: {keys:?} must be one key or a chord of two");
                }
                let Some(act) = action.as_str().and_then(Action::from_name) else {
                    let names: Vec<_> = Action::ALL.iter().map(|a| a.name()).collect();
                    bail!(
                        "{at}: unknown action {action} for {keys:?}; actions are {}",
                        names.join(", ")
                    );
                };
                self.modes.entry(mode.clone()).or_default().insert(seq, act);
            }
        }
        Ok(())
    }

    /// Look a key sequence up in `mode`, then in `global`.
    pub fn lookup(&self, mode: &str, seq: &[Key]) -> Lookup {
        for m in [mode, "global"] {
            let Some(table) = self.modes.get(m) else {
                continue;
            };
            if let Some(a) = table.get(seq) {
                return Lookup::Action(*a);
            }
            if table
                .keys()
                .any(|k| k.len() > seq.len() && k.starts_with(seq))
            {
                return Lookup::Prefix;
            }
        }
        Lookup::None
    }

    /// Bindings of `mode` (without global) grouped by action: `(keys, action)` in help order.
    pub fn bindings(&self, mode: &str) -> Vec<(String, Action)> {
        let mut by: BTreeMap<Action, Vec<String>> = BTreeMap::new();
        for (seq, a) in self.modes.get(mode).into_iter().flatten() {
            by.entry(*a)
                .or_default()
                .push(seq.iter().map(Key::display).collect::<Vec<_>>().join(" "));
        }
        by.into_iter()
            .map(|(a, keys)| (keys.join(" "), a))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keymap_parses_with_vim_and_arrow_keys() {
        let k = Keymap::load(&[]).unwrap();
        let key = |s: &str| vec![Key::parse(s).unwrap()];
        assert_eq!(
            k.lookup("features", &key("j")),
            Lookup::Action(Action::Down)
        );
        assert_eq!(
            k.lookup("features", &key("<Down>")),
            Lookup::Action(Action::Down)
        );
        assert_eq!(k.lookup("feature", &key("q")), Lookup::Action(Action::Quit));
        assert_eq!(k.lookup("features", &key("g")), Lookup::Prefix);
        let gg = vec![Key::parse("g").unwrap(), Key::parse("g").unwrap()];
        assert_eq!(k.lookup("features", &gg), Lookup::Action(Action::First));
        assert_eq!(Key::parse("<C-c>").unwrap().display(), "<C-c>");
    }

    #[test]
    fn user_file_merges_and_errors_name_the_line() {
        let user = (
            "keymap.toml".to_string(),
            "[features]\nx = \"quit\"\n".to_string(),
        );
        let k = Keymap::load(&[user]).unwrap();
        assert_eq!(
            k.lookup("features", &[Key::parse("x").unwrap()]),
            Lookup::Action(Action::Quit)
        );
        assert_eq!(
            k.lookup("features", &[Key::parse("j").unwrap()]),
            Lookup::Action(Action::Down)
        );
        let bad = (
            "u.toml".to_string(),
            "[features]\nj = \"down\"\nk = \"fly\"\n".to_string(),
        );
        let e = Keymap::load(&[bad]).unwrap_err().to_string();
        assert!(
            e.contains("u.toml:3") && e.contains("unknown action"),
            "{e}"
        );
        let bad = (
            "u.toml".to_string(),
            "[global]\n\"<X-q>\" = \"quit\"\n".to_string(),
        );
        let e = Keymap::load(&[bad]).unwrap_err().to_string();
        assert!(e.contains("u.toml:2") && e.contains("bad key"), "{e}");
        let bad = (
            "u.toml".to_string(),
            "[nowhere]\nq = \"quit\"\n".to_string(),
        );
        assert!(
            Keymap::load(&[bad])
                .unwrap_err()
                .to_string()
                .contains("unknown mode")
        );
    }
}
