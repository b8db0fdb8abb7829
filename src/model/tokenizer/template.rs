//! Chat-template discovery in a model folder and a minijinja setup that matches transformers.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, Value};
use serde_json::Value as Json;

/// The chat template of `llava-hf/llama3-llava-next-8b-hf`, used when the folder ships none.
///
/// It has no BOS of its own: the tokenizer's post-processor adds it at encode time.
pub const LLAMA3_LLAVA_TEMPLATE: &str = concat!(
    "{% for message in messages %}",
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'}}",
    "{# Render all images first #}",
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}",
    "{{ '<image>' }}{% endfor %}",
    "{# Render all text next #}",
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}",
    "{{ '\\n' + content['text'] + '<|eot_id|>' }}{% endfor %}",
    "{% endfor %}",
    "{% if add_generation_prompt %}",
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
);

pub(super) const TEMPLATE_NAME: &str = "chat_template";

/// Reads a JSON file; a missing file is `None`, a malformed one an error naming it.
pub(super) fn read_json(path: &Path) -> Result<Option<Json>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).with_context(|| {
            format!(
                "{}: not valid JSON; re-download or repair it",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

/// Finds the chat template in HF's order of precedence; returns (source, origin).
pub(super) fn find_chat_template(
    dir: &Path,
    tok_config: Option<&Json>,
) -> Result<(String, String)> {
    let json_path = dir.join("chat_template.json");
    if let Some(doc) = read_json(&json_path)? {
        let source = doc
            .get("chat_template")
            .and_then(Json::as_str)
            .ok_or_else(|| {
                anyhow!(
                    "{}: has no string field \"chat_template\"; fix or remove the file",
                    json_path.display()
                )
            })?;
        return Ok((source.to_owned(), "chat_template.json".into()));
    }
    let jinja_path = dir.join("chat_template.jinja");
    if jinja_path.is_file() {
        let source = std::fs::read_to_string(&jinja_path)
            .with_context(|| format!("{}: cannot read", jinja_path.display()))?;
        return Ok((source, "chat_template.jinja".into()));
    }
    let origin = "tokenizer_config.json";
    match tok_config.and_then(|c| c.get("chat_template")) {
        None | Some(Json::Null) => Ok((
            LLAMA3_LLAVA_TEMPLATE.to_owned(),
            "built-in Llama-3 LLaVA template".into(),
        )),
        Some(Json::String(s)) => Ok((s.clone(), origin.into())),
        Some(Json::Array(list)) => {
            let named = |item: &Json| {
                let name = item.get("name")?.as_str()?;
                Some((name.to_owned(), item.get("template")?.as_str()?.to_owned()))
            };
            let entries: Vec<(String, String)> = list.iter().filter_map(named).collect();
            match entries.iter().find(|(name, _)| name == "default") {
                Some((_, t)) => Ok((t.clone(), format!("{origin} (\"default\")"))),
                None => {
                    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
                    bail!(
                        "{}: chat_template lists {names:?} but none is named \"default\"; \
                         add one or put the template in chat_template.jinja",
                        dir.join(origin).display()
                    )
                }
            }
        }
        Some(other) => bail!(
            "{}: chat_template must be a string or a list of {{name, template}}, found {other}",
            dir.join(origin).display()
        ),
    }
}

/// A minijinja environment that behaves like transformers' chat-template sandbox.
pub(super) fn build_env(source: String, origin: &str) -> Result<Environment<'static>> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .context("chat template: cannot configure template syntax")?;
    env.set_syntax(syntax);
    minijinja_contrib::add_to_environment(&mut env);
    // HF templates call Python string/dict methods such as .strip() and .items().
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_template_owned(TEMPLATE_NAME, strip_generation_tags(&source))
        .with_context(|| {
            format!("{origin}: chat template does not parse; fix the template or remove it")
        })?;
    Ok(env)
}

/// transformers' `{% generation %}` block only marks assistant spans for training masks and
/// renders its body unchanged. minijinja has no such tag, so it becomes an always-true `if`,
/// which keeps the tag's whitespace control and trim_blocks behaviour.
fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let Some(len) = rest[start..].find("%}") else {
            break;
        };
        let tag = &rest[start..start + len + 2];
        let body = &tag[2..tag.len() - 2];
        let open = if body.starts_with(['-', '+']) {
            &body[..1]
        } else {
            ""
        };
        let close = if body.ends_with(['-', '+']) {
            &body[body.len() - 1..]
        } else {
            ""
        };
        out.push_str(&rest[..start]);
        match body.trim_matches(['-', '+']).trim() {
            "generation" => out.push_str(&format!("{{%{open} if true {close}%}}")),
            "endgeneration" => out.push_str(&format!("{{%{open} endif {close}%}}")),
            _ => out.push_str(tag),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_are_removed_with_their_whitespace_markers() {
        let src = "a {%- generation %}b{% endgeneration -%} c{% if x %}d{% endif %}";
        assert_eq!(
            strip_generation_tags(src),
            "a {%- if true %}b{% endif -%} c{% if x %}d{% endif %}"
        );
        let env = build_env(src.to_owned(), "test").unwrap();
        let rendered = env.get_template(TEMPLATE_NAME).unwrap().render(()).unwrap();
        assert_eq!(rendered, "abc");
        assert_eq!(strip_generation_tags("{% unclosed"), "{% unclosed");
    }
}
