//! What the versioned chat prompt templates (explainer and scorers) share: reading the file,
//! splitting its `=== system ===` / `=== user ===` sections, hashing it, and the image parts.

use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::{Value, json};

use crate::util::hash::Fingerprint;

/// Placeholder replaced by the number of images in the request.
pub const N_IMAGES: &str = "{{n_images}}";

/// The two sections of a template, comments and headers dropped, each trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections {
    /// The system message, when the template has a non-blank one.
    pub system: Option<String>,
    /// The user text (possibly empty; the caller decides whether that is allowed).
    pub user: String,
}

/// Read the template file at `path` and hand its text to `parse(name, text)`, naming the file
/// in any error.
pub fn read_template<T>(path: &Path, parse: impl FnOnce(&str, &str) -> Result<T>) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the prompt file", path.display()))?;
    parse(&path.display().to_string(), &text)
        .with_context(|| format!("{}: bad prompt file", path.display()))
}

/// Split template text: `#` comment lines first, then `=== system ===` and `=== user ===`
/// sections; text without any header is all user text. `stray_fix` tells the user what to do
/// with non-comment text before the first header.
pub fn split_sections(text: &str, stray_fix: &str) -> Result<Sections> {
    let (mut system, mut user) = (None::<Vec<&str>>, None::<Vec<&str>>);
    let mut current: Option<&mut Vec<&str>> = None;
    let mut headerless = Vec::new();
    for line in text.lines() {
        match line.trim() {
            "=== system ===" => current = Some(system.insert(Vec::new())),
            "=== user ===" => current = Some(user.insert(Vec::new())),
            _ => match current.as_mut() {
                Some(section) => section.push(line),
                // Comments are only recognised before the first header, so a section may hold
                // markdown headings.
                None if line.starts_with('#') => {}
                None => headerless.push(line),
            },
        }
    }
    let join = |lines: Vec<&str>| lines.join("\n").trim().to_string();
    let system = system.map(join).filter(|s| !s.is_empty());
    let user = match user {
        Some(lines) if headerless.iter().all(|l| l.trim().is_empty()) => join(lines),
        Some(_) => bail!("text before the first section header; {stray_fix}"),
        None if system.is_none() => join(headerless),
        None => bail!("there is a `=== system ===` section but no `=== user ===` section"),
    };
    Ok(Sections { system, user })
}

/// Hash of a template's `source` text and `recipe`, under `domain` so that an explainer and a
/// scorer template of the same text hash apart.
pub fn template_hash(domain: &str, source: &str, recipe: &str) -> String {
    Fingerprint::new()
        .field(domain)
        .field(source)
        .field(recipe)
        .hex()
}

/// A user message's content parts: `text`, then one `image_url` part per PNG (as a base64 data
/// URL), each carrying the `image_extra` keys (e.g. sglang's `modalities`).
pub fn text_and_images(
    text: &str,
    pngs: &[Vec<u8>],
    image_extra: &serde_json::Map<String, Value>,
) -> Vec<Value> {
    let mut parts = vec![json!({"type": "text", "text": text})];
    for png in pngs {
        let url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png)
        );
        let mut part = json!({"type": "image_url", "image_url": {"url": url}});
        if let Some(obj) = part.as_object_mut() {
            obj.extend(image_extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        parts.push(part);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_split_comments_and_headerless_text() {
        let s = split_sections(
            "# c\n=== system ===\n sys \n=== user ===\n# kept\nhi\n",
            "x",
        )
        .unwrap();
        assert_eq!(s.system.as_deref(), Some("sys"));
        assert_eq!(s.user, "# kept\nhi");
        let s = split_sections("# c\nplain text\n", "x").unwrap();
        assert_eq!((s.system, s.user.as_str()), (None, "plain text"));
        let s = split_sections("=== system ===\n\n=== user ===\nu", "x").unwrap();
        assert!(s.system.is_none(), "a blank system section is none");
        let e = split_sections("stray\n=== user ===\nu", "start it with '#'").unwrap_err();
        assert_eq!(
            e.to_string(),
            "text before the first section header; start it with '#'"
        );
        let e = split_sections("=== system ===\ns", "x").unwrap_err();
        assert!(e.to_string().contains("no `=== user ===`"), "{e}");
    }

    #[test]
    fn parts_carry_images_and_extra_keys() {
        let mut extra = serde_json::Map::new();
        extra.insert("modalities".into(), json!("multi-images"));
        let p = text_and_images("t", &[vec![1, 2, 3], vec![4]], &extra);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], json!({"type": "text", "text": "t"}));
        assert_eq!(p[1]["image_url"]["url"], "data:image/png;base64,AQID");
        assert_eq!(p[2]["image_url"]["url"], "data:image/png;base64,BA==");
        assert_eq!(p[2]["modalities"], "multi-images");
    }

    #[test]
    fn hash_depends_on_domain_source_and_recipe() {
        let h = template_hash("a", "s", "r");
        assert_eq!(h, template_hash("a", "s", "r"));
        assert_ne!(h, template_hash("b", "s", "r"));
        assert_ne!(h, template_hash("a", "s2", "r"));
        assert_ne!(h, template_hash("a", "s", "r2"));
    }

    #[test]
    fn unreadable_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("none.txt");
        let e = read_template(&path, |_, _| Ok(())).unwrap_err();
        assert!(format!("{e:#}").contains("none.txt: cannot read"), "{e:#}");
        std::fs::write(&path, "x").unwrap();
        let e = read_template(&path, |name, text| -> Result<()> { bail!("{name} {text}") })
            .unwrap_err();
        assert!(format!("{e:#}").contains("bad prompt file"), "{e:#}");
    }
}
