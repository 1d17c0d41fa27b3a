//! Argo's `{{...}}` variables in key formats (`keyFormat`, `blobNameFormat`, `pathFormat`) and
//! in artifact keys, resolved as the controller resolves them before it creates a pod.
//!
//! The variables a key may use are the workflow's global ones and `pod.name`:
//!
//! | variable | value |
//! |---|---|
//! | `workflow.name`, `workflow.namespace`, `workflow.uid` | the workflow's |
//! | `workflow.mainEntrypoint`, `workflow.serviceAccountName` | from its spec |
//! | `workflow.labels.<k>`, `workflow.annotations.<k>` | one label or annotation |
//! | `workflow.parameters.<p>`, `inputs.parameters.<p>` | a workflow argument, a template input |
//! | `workflow.creationTimestamp`, `workflow.creationTimestamp.RFC3339` | `2024-03-05T07:08:09Z` |
//! | `workflow.creationTimestamp.s` | Unix seconds |
//! | `workflow.creationTimestamp.<c>` | strftime letter `c`, one of [`STRFTIME_LETTERS`] |
//! | `pod.name` | the pod the key is for |
//!
//! Anything else fails with Argo's own text, `failed to resolve {{<tag>}}`: a key with an
//! unresolved variable would otherwise be created literally, and the controller refuses such
//! pods too. Expression tags (`{{=...}}`) are not evaluated in keys.

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{DateTime, FixedOffset, SecondsFormat};

/// The strftime letters Argo offers as `workflow.creationTimestamp.<letter>`, each with the
/// chrono format giving Go's output (`Z` and `z` are handled apart).
pub const STRFTIME_LETTERS: [(char, &str); 16] = [
    ('Y', "%Y"),
    ('y', "%y"),
    ('m', "%m"),
    ('B', "%B"),
    ('b', "%b"),
    ('d', "%d"),
    ('A', "%A"),
    ('a', "%a"),
    ('H', "%H"),
    ('I', "%I"),
    ('M', "%M"),
    ('S', "%S"),
    ('p', "%p"),
    ('L', "%.3f"),
    ('Z', ""),
    ('z', "%z"),
];

/// Why a template cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A variable that does not exist, or has no value here (Argo's text).
    #[error("failed to resolve {{{{{tag}}}}}")]
    Unresolved { tag: String, template: String },
    /// A `{{` with no `}}` after it.
    #[error("malformed key template {template:?}: the \"{{{{\" at byte {offset} is never closed")]
    Unclosed { template: String, offset: usize },
    /// An expression tag (`{{=...}}`), which keys do not evaluate.
    #[error("expression tags are not supported in keys: {{{{{tag}}}}} in {template:?}")]
    Expression { tag: String, template: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(Range<usize>),
    /// The tag between the braces, untrimmed (Argo prints it untrimmed in errors).
    Var(Range<usize>),
}

/// A parsed key template.
///
/// ```
/// use argoexec::keys::template::{KeyTemplate, KeyVariables};
///
/// let t = KeyTemplate::parse("art/{{workflow.name}}/{{pod.name}}")?;
/// let vars = KeyVariables {
///     workflow_name: "wf-abc".into(),
///     pod_name: "wf-abc-main-1234".into(),
///     ..Default::default()
/// };
/// assert_eq!(t.render(&vars)?, "art/wf-abc/wf-abc-main-1234");
/// assert_eq!(t.literal_prefix(), "art/");
/// # Ok::<(), argoexec::keys::template::TemplateError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    segments: Vec<Segment>,
}

impl KeyTemplate {
    /// Splits `source` into text and `{{variable}}` tags.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut at = 0;
        while let Some(found) = source[at..].find("{{") {
            let open = at + found;
            if open > at {
                segments.push(Segment::Text(at..open));
            }
            let inner = open + 2;
            let close = source[inner..]
                .find("}}")
                .map(|i| inner + i)
                .ok_or_else(|| TemplateError::Unclosed {
                    template: source.to_string(),
                    offset: open,
                })?;
            let tag = &source[inner..close];
            if tag.trim_start().starts_with('=') {
                return Err(TemplateError::Expression {
                    tag: tag.to_string(),
                    template: source.to_string(),
                });
            }
            segments.push(Segment::Var(inner..close));
            at = close + 2;
        }
        if at < source.len() {
            segments.push(Segment::Text(at..source.len()));
        }
        Ok(Self {
            source: source.to_string(),
            segments,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The variable names used, trimmed, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var(r) => Some(self.source[r.clone()].trim()),
            Segment::Text(_) => None,
        })
    }

    /// The text before the first variable: every key this template renders starts with it.
    pub fn literal_prefix(&self) -> &str {
        match self.segments.first() {
            Some(Segment::Text(r)) => &self.source[r.clone()],
            _ => "",
        }
    }

    /// Substitutes every variable; the first one without a value is the error.
    pub fn render(&self, vars: &KeyVariables) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.source.len() + 32);
        for segment in &self.segments {
            match segment {
                Segment::Text(r) => out.push_str(&self.source[r.clone()]),
                Segment::Var(r) => {
                    let tag = &self.source[r.clone()];
                    let value =
                        vars.lookup(tag.trim())
                            .ok_or_else(|| TemplateError::Unresolved {
                                tag: tag.to_string(),
                                template: self.source.clone(),
                            })?;
                    out.push_str(&value);
                }
            }
        }
        Ok(out)
    }
}

/// Renders `template` in one call (see [`KeyTemplate`]).
pub fn render(template: &str, vars: &KeyVariables) -> Result<String, TemplateError> {
    KeyTemplate::parse(template)?.render(vars)
}

/// The values of the variables a key may use.
///
/// `creation_timestamp` is formatted in its own offset: pass it in the zone the controller runs
/// in (UTC in the standard controller image) to get the controller's strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyVariables {
    pub workflow_name: String,
    pub workflow_namespace: String,
    pub workflow_uid: String,
    pub main_entrypoint: String,
    pub service_account_name: String,
    pub creation_timestamp: Option<DateTime<FixedOffset>>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub workflow_parameters: BTreeMap<String, String>,
    pub input_parameters: BTreeMap<String, String>,
    pub pod_name: String,
}

impl KeyVariables {
    /// The value of one variable (name already trimmed), `None` when unknown or unset.
    pub fn lookup(&self, name: &str) -> Option<String> {
        let map_value = |map: &BTreeMap<String, String>, prefix: &str| {
            name.strip_prefix(prefix).and_then(|k| map.get(k).cloned())
        };
        match name {
            "workflow.name" => Some(self.workflow_name.clone()),
            "workflow.namespace" => Some(self.workflow_namespace.clone()),
            "workflow.uid" => Some(self.workflow_uid.clone()),
            "workflow.mainEntrypoint" => Some(self.main_entrypoint.clone()),
            "workflow.serviceAccountName" => Some(self.service_account_name.clone()),
            "pod.name" => Some(self.pod_name.clone()),
            "workflow.creationTimestamp" | "workflow.creationTimestamp.RFC3339" => self
                .creation_timestamp
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            "workflow.creationTimestamp.s" => {
                self.creation_timestamp.map(|t| t.timestamp().to_string())
            }
            _ => {
                if let Some(letter) = name.strip_prefix("workflow.creationTimestamp.") {
                    return self
                        .creation_timestamp
                        .and_then(|t| strftime_letter(t, letter));
                }
                map_value(&self.labels, "workflow.labels.")
                    .or_else(|| map_value(&self.annotations, "workflow.annotations."))
                    .or_else(|| map_value(&self.workflow_parameters, "workflow.parameters."))
                    .or_else(|| map_value(&self.input_parameters, "inputs.parameters."))
            }
        }
    }
}

/// Go's rendering of one strftime letter (Argo's `util/strftime` table).
fn strftime_letter(t: DateTime<FixedOffset>, letter: &str) -> Option<String> {
    let mut chars = letter.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        return None;
    };
    let (_, format) = STRFTIME_LETTERS.iter().find(|(l, _)| *l == c)?;
    if c == 'Z' {
        // Go prints the zone's name; a zone without one (a bare offset) prints as -0700.
        return Some(if t.offset().local_minus_utc() == 0 {
            "UTC".to_string()
        } else {
            t.format("%z").to_string()
        });
    }
    Some(t.format(format).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> KeyVariables {
        KeyVariables {
            workflow_name: "wf-abc".into(),
            workflow_namespace: "argo".into(),
            workflow_uid: "0b4c2f3e-uid".into(),
            creation_timestamp: DateTime::parse_from_rfc3339("2024-03-05T07:08:09.250Z").ok(),
            labels: [("team".to_string(), "ml".to_string())].into(),
            annotations: [("owner".to_string(), "ana".to_string())].into(),
            workflow_parameters: [("run".to_string(), "r7".to_string())].into(),
            input_parameters: [("shard".to_string(), "3".to_string())].into(),
            pod_name: "wf-abc-main-1234".into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_documented_variable_resolves() {
        let v = vars();
        for (template, want) in [
            ("{{workflow.name}}/{{pod.name}}", "wf-abc/wf-abc-main-1234"),
            (
                "{{ workflow.namespace }}-{{workflow.uid}}",
                "argo-0b4c2f3e-uid",
            ),
            ("{{workflow.labels.team}}", "ml"),
            ("{{workflow.annotations.owner}}", "ana"),
            ("{{workflow.parameters.run}}", "r7"),
            ("{{inputs.parameters.shard}}", "3"),
            ("{{workflow.creationTimestamp}}", "2024-03-05T07:08:09Z"),
            (
                "{{workflow.creationTimestamp.RFC3339}}",
                "2024-03-05T07:08:09Z",
            ),
            ("{{workflow.creationTimestamp.s}}", "1709622489"),
            (
                "{{workflow.creationTimestamp.Y}}/{{workflow.creationTimestamp.m}}/{{workflow.creationTimestamp.d}}",
                "2024/03/05",
            ),
            (
                "{{workflow.creationTimestamp.H}}:{{workflow.creationTimestamp.M}}:{{workflow.creationTimestamp.S}}",
                "07:08:09",
            ),
            ("no variables at all", "no variables at all"),
            ("", ""),
        ] {
            assert_eq!(render(template, &v).as_deref(), Ok(want), "{template}");
        }
    }

    #[test]
    fn strftime_letters_match_go() {
        let v = vars();
        let letter = |c: &str| {
            render(&format!("{{{{workflow.creationTimestamp.{c}}}}}"), &v).expect("letter")
        };
        for (c, want) in [
            ("Y", "2024"),
            ("y", "24"),
            ("m", "03"),
            ("B", "March"),
            ("b", "Mar"),
            ("d", "05"),
            ("A", "Tuesday"),
            ("a", "Tue"),
            ("H", "07"),
            ("I", "07"),
            ("M", "08"),
            ("S", "09"),
            ("p", "AM"),
            ("L", ".250"),
            ("Z", "UTC"),
            ("z", "+0000"),
        ] {
            assert_eq!(letter(c), want, "%{c}");
        }
        let mut east = vars();
        east.creation_timestamp = DateTime::parse_from_rfc3339("2024-03-05T19:08:09+02:00").ok();
        assert_eq!(
            render(
                "{{workflow.creationTimestamp.I}}{{workflow.creationTimestamp.p}} {{workflow.creationTimestamp.Z}}",
                &east
            )
            .as_deref(),
            Ok("07PM +0200")
        );
    }

    #[test]
    fn unknown_and_unset_variables_fail_with_argos_text() {
        let v = vars();
        for (template, tag) in [
            ("{{workflow.nam}}", "workflow.nam"),
            ("a/{{ workflow.labels.nope }}", " workflow.labels.nope "),
            (
                "{{workflow.creationTimestamp.q}}",
                "workflow.creationTimestamp.q",
            ),
            (
                "{{workflow.creationTimestamp.YY}}",
                "workflow.creationTimestamp.YY",
            ),
            ("{{steps.x.outputs.result}}", "steps.x.outputs.result"),
            ("{{}}", ""),
        ] {
            let e = render(template, &v).expect_err(template);
            assert_eq!(
                e,
                TemplateError::Unresolved {
                    tag: tag.to_string(),
                    template: template.to_string()
                }
            );
            assert_eq!(e.to_string(), format!("failed to resolve {{{{{tag}}}}}"));
        }
        let no_time = KeyVariables::default();
        assert!(matches!(
            render("{{workflow.creationTimestamp.Y}}", &no_time),
            Err(TemplateError::Unresolved { .. })
        ));
    }

    #[test]
    fn malformed_templates_are_typed_errors() {
        let e = KeyTemplate::parse("art/{{workflow.name}}/{{pod.name").expect_err("unclosed");
        assert_eq!(
            e,
            TemplateError::Unclosed {
                template: "art/{{workflow.name}}/{{pod.name".into(),
                offset: 22
            }
        );
        assert!(e.to_string().contains("byte 22 is never closed"), "{e}");
        assert!(matches!(
            KeyTemplate::parse("{{=sprig.upper(workflow.name)}}"),
            Err(TemplateError::Expression { .. })
        ));
        // A lone closing brace pair is plain text, as in Argo.
        assert_eq!(render("a}}b", &vars()).as_deref(), Ok("a}}b"));
    }

    #[test]
    fn variables_and_literal_prefix() {
        let t = KeyTemplate::parse("art/{{ workflow.name }}/x/{{pod.name}}").expect("parse");
        assert_eq!(
            t.variables().collect::<Vec<_>>(),
            ["workflow.name", "pod.name"]
        );
        assert_eq!(t.literal_prefix(), "art/");
        assert_eq!(
            KeyTemplate::parse("{{pod.name}}")
                .expect("parse")
                .literal_prefix(),
            ""
        );
    }
}
