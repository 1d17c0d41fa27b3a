//! kubectl's JSONPath output templates (`-o jsonpath='{.status.phase}'`), as Argo reads
//! resource output parameters with `valueFrom.jsonPath`.
//!
//! A template is literal text with `{...}` actions: a path (`.a.b`, `['a.b']`, `[0]`, `[*]`,
//! `..name`, `[?(@.type=="Ready")]`, `$`), a quoted literal (`{"\n"}`), or `{range PATH}` ...
//! `{end}`, whose body is rendered once per result with paths relative to it. Several results
//! of one path are separated by spaces; strings print raw, anything else as JSON; missing
//! fields print nothing (kubectl's `--allow-missing-template-keys`, on by default).
//! Paths are evaluated by jsonpath-rust (RFC 9535), which covers kubectl's path syntax.

use jsonpath_rust::JsonPath;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Path(String),
    Range(String, Vec<Part>),
}

/// Renders `template` against `object`.
pub fn render(template: &str, object: &Value) -> Result<String, String> {
    let parts = parse(template)?;
    let mut out = String::new();
    render_parts(&parts, object, &mut out)?;
    Ok(out)
}

fn render_parts(parts: &[Part], current: &Value, out: &mut String) -> Result<(), String> {
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Path(p) => {
                let results = query(p, current)?;
                let printed: Vec<String> = results.into_iter().map(print).collect();
                out.push_str(&printed.join(" "));
            }
            Part::Range(p, body) => {
                for item in query(p, current)? {
                    render_parts(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

fn print(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn query<'v>(path: &str, current: &'v Value) -> Result<Vec<&'v Value>, String> {
    let path = path.trim();
    let rfc = if path.starts_with('$') {
        path.to_string()
    } else if let Some(relative) = path.strip_prefix('@') {
        format!("${relative}")
    } else if path.starts_with('.') || path.starts_with('[') {
        format!("${path}")
    } else {
        format!("$.{path}")
    };
    current
        .query(&rfc)
        .map_err(|e| format!("invalid JSONPath {path:?}: {e}"))
}

fn parse(template: &str) -> Result<Vec<Part>, String> {
    let mut stack: Vec<(Option<String>, Vec<Part>)> = vec![(None, Vec::new())];
    let mut rest = template;
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            push(&mut stack, Part::Text(rest.to_string()));
            break;
        };
        if open > 0 {
            push(&mut stack, Part::Text(rest[..open].to_string()));
        }
        let close = action_end(&rest[open..])
            .ok_or_else(|| format!("unclosed action in JSONPath template {template:?}"))?;
        let action = rest[open + 1..open + close].trim();
        rest = &rest[open + close + 1..];
        if let Some(path) = action.strip_prefix("range ") {
            stack.push((Some(path.trim().to_string()), Vec::new()));
        } else if action == "end" {
            let (path, body) = stack
                .pop()
                .filter(|(p, _)| p.is_some())
                .ok_or_else(|| format!("{{end}} without {{range}} in {template:?}"))?;
            push(&mut stack, Part::Range(path.unwrap_or_default(), body));
        } else if let Some(literal) = quoted(action) {
            push(&mut stack, Part::Text(literal));
        } else if action.is_empty() {
            return Err(format!("empty action in JSONPath template {template:?}"));
        } else {
            push(&mut stack, Part::Path(action.to_string()));
        }
    }
    match stack.pop() {
        Some((None, parts)) if stack.is_empty() => Ok(parts),
        _ => Err(format!("{{range}} without {{end}} in {template:?}")),
    }
}

fn push(stack: &mut [(Option<String>, Vec<Part>)], part: Part) {
    if let Some((_, parts)) = stack.last_mut() {
        parts.push(part);
    }
}

/// The offset of the `}` closing the action that starts `s`, skipping quoted text.
fn action_end(s: &str) -> Option<usize> {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

/// `"text"` with Go escapes, as kubectl prints literal actions.
fn quoted(action: &str) -> Option<String> {
    let inner = action.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object() -> Value {
        json!({
            "metadata": {"name": "pi", "labels": {"app.kubernetes.io/name": "calc"}},
            "spec": {"replicas": 3},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Complete", "status": "False"}
            ]},
            "items": [{"name": "a"}, {"name": "b"}],
        })
    }

    #[test]
    fn kubectl_templates() {
        let o = object();
        let cases = [
            ("{.metadata.name}", "pi"),
            ("{.spec.replicas}", "3"),
            ("{.spec}", "{\"replicas\":3}"),
            ("name={.metadata.name}!", "name=pi!"),
            ("{.metadata.labels['app.kubernetes.io/name']}", "calc"),
            ("{.status.conditions[?(@.type==\"Ready\")].status}", "True"),
            ("{.status.conditions[*].type}", "Ready Complete"),
            ("{.items[-1:].name}", "b"),
            ("{range .items[*]}{.name}{\"\\n\"}{end}", "a\nb\n"),
            ("{.items[*].name}", "a b"),
            ("{.status.missing}", ""),
            ("{$.metadata.name}", "pi"),
        ];
        for (template, want) in cases {
            assert_eq!(render(template, &o).expect(template), want, "{template}");
        }
    }

    #[test]
    fn malformed_templates_are_errors() {
        for bad in [
            "{.metadata.name",
            "{range .items[*]}{.name}",
            "{end}",
            "{}",
            "{.a[?(}",
        ] {
            assert!(render(bad, &object()).is_err(), "{bad}");
        }
    }
}
