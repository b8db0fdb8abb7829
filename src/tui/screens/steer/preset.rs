//! Steering presets: prompt, image and rows saved to and loaded from TOML or JSON (by extension).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::state::{DEFAULT_MAX_NEW_TOKENS, SteerRow, SteerState};
use crate::generate::Sampling;

/// What a preset file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    /// The user prompt.
    pub prompt: String,
    /// Image as typed (file path or dataset index), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Tokens generated per side.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Token choice (greedy when absent).
    #[serde(default = "greedy")]
    pub sampling: Sampling,
    /// Steering rows, in order.
    #[serde(default)]
    pub rows: Vec<SteerRow>,
}

fn default_max_new_tokens() -> usize {
    DEFAULT_MAX_NEW_TOKENS
}

fn greedy() -> Sampling {
    Sampling::Greedy
}

/// File formats, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Toml,
    Json,
}

fn format_of(path: &Path) -> Result<Format> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("toml") => Ok(Format::Toml),
        Some("json") => Ok(Format::Json),
        _ => bail!(
            "{}: a preset file must end in .toml or .json",
            path.display()
        ),
    }
}

impl Preset {
    /// The preset of the panel's current settings.
    pub fn of(state: &SteerState) -> Preset {
        Preset {
            prompt: state.prompt.clone(),
            image: state.image.clone(),
            max_new_tokens: state.max_new_tokens,
            sampling: state.sampling,
            rows: state.rows.clone(),
        }
    }

    /// Lay the preset over the panel (its streams are left for the next run to replace).
    pub fn apply(self, state: &mut SteerState) {
        state.prompt = self.prompt;
        state.image = self.image;
        state.max_new_tokens = self.max_new_tokens;
        state.sampling = self.sampling;
        state.rows = self.rows;
        state.sel = 0;
    }

    /// The preset as text in `path`'s format.
    pub fn to_text(&self, path: &Path) -> Result<String> {
        Ok(match format_of(path)? {
            Format::Toml => toml::to_string_pretty(self)
                .with_context(|| format!("{}: cannot write the preset as TOML", path.display()))?,
            Format::Json => {
                let mut s = serde_json::to_string_pretty(self)?;
                s.push('\n');
                s
            }
        })
    }

    /// Parse `text` in `path`'s format and check it.
    pub fn from_text(path: &Path, text: &str) -> Result<Preset> {
        let preset: Preset = match format_of(path)? {
            Format::Toml => toml::from_str(text)
                .map_err(|e| anyhow::anyhow!("{}: not a steering preset: {e}", path.display()))?,
            Format::Json => serde_json::from_str(text)
                .with_context(|| format!("{}: not a steering preset", path.display()))?,
        };
        preset.check().with_context(|| path.display().to_string())?;
        Ok(preset)
    }

    /// Reject presets the panel could not run.
    pub fn check(&self) -> Result<()> {
        if self.max_new_tokens == 0 {
            bail!("max_new_tokens must be at least 1");
        }
        for (i, r) in self.rows.iter().enumerate() {
            if !r.strength.is_finite() {
                bail!(
                    "row {}: feature {}: strength is not a finite number",
                    i + 1,
                    r.feature
                );
            }
            if self.rows[..i].iter().any(|o| o.feature == r.feature) {
                bail!("feature {} has two rows; keep one", r.feature);
            }
            r.scope
                .check()
                .with_context(|| format!("row {}: feature {}", i + 1, r.feature))?;
        }
        Ok(())
    }

    /// Write the preset to `path` (format by extension).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_text(path)?;
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
    }

    /// Read a preset from `path` (format by extension).
    pub fn load(path: &Path) -> Result<Preset> {
        format_of(path)?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the preset", path.display()))?;
        Preset::from_text(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::StrengthUnit;
    use crate::sae::intervene::{Direction, Mode, Phase, TokenScope};

    fn preset() -> Preset {
        let mut a = SteerRow::new(12, Mode::Clamp, 2.5, StrengthUnit::Max);
        a.scope.tokens = TokenScope::Image;
        let mut b = SteerRow::new(7, Mode::Add, -40.0, StrengthUnit::Raw);
        b.direction = Direction::Unit;
        b.scope.phase = Phase::Decode;
        Preset {
            prompt: "What is in the image?".into(),
            image: Some("3".into()),
            max_new_tokens: 20,
            sampling: Sampling::new(0.7, 0.9, 5).unwrap(),
            rows: vec![a, b],
        }
    }

    #[test]
    fn presets_round_trip_through_toml_and_json_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["p.toml", "p.JSON"] {
            let path = dir.path().join(name);
            preset().save(&path).unwrap();
            assert_eq!(Preset::load(&path).unwrap(), preset(), "{name}");
        }
        let text = std::fs::read_to_string(dir.path().join("p.toml")).unwrap();
        assert!(
            text.contains("mode = \"clamp\"") && text.contains("unit = \"max\""),
            "{text}"
        );
    }

    #[test]
    fn a_minimal_toml_preset_takes_defaults() {
        let text = "prompt = \"Hi\"\n[[rows]]\nfeature = 3\nmode = \"replace\"\nstrength = 50\n\
                    unit = \"raw\"\nscope = { phase = \"prefill\", tokens = \"all\" }\n";
        let p = Preset::from_text(Path::new("x.toml"), text).unwrap();
        assert_eq!((p.max_new_tokens, p.sampling), (48, Sampling::Greedy));
        assert_eq!(p.rows[0].direction, Direction::Raw);
        assert_eq!(p.rows[0].strength, 50.0);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let e = preset().save(&dir.path().join("p.yaml")).unwrap_err();
        assert!(e.to_string().contains("p.yaml") && e.to_string().contains(".toml or .json"));
        let e = format!(
            "{:#}",
            Preset::load(&dir.path().join("missing.json")).unwrap_err()
        );
        assert!(
            e.contains("missing.json") && e.contains("cannot read"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            Preset::from_text(Path::new("bad.json"), "{\"rows\": []}").unwrap_err()
        );
        assert!(e.contains("bad.json") && e.contains("prompt"), "{e}");
        let mut dup = preset();
        dup.rows[1].feature = 12;
        let e = format!(
            "{:#}",
            Preset::from_text(Path::new("d.json"), &serde_json::to_string(&dup).unwrap())
                .unwrap_err()
        );
        assert!(
            e.contains("d.json") && e.contains("feature 12 has two rows"),
            "{e}"
        );
        let mut bad = preset();
        bad.rows[0].scope.phase = Phase::Decode;
        let e = format!(
            "{:#}",
            Preset::from_text(
                Path::new("s.toml"),
                &bad.to_text(Path::new("s.toml")).unwrap()
            )
            .unwrap_err()
        );
        assert!(e.contains("s.toml") && e.contains("selects nothing"), "{e}");
    }
}
