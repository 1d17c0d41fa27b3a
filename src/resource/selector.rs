//! Resource-template conditions: Kubernetes label-selector syntax (`status.phase in (Failed,
//! Error)`, `status.succeeded > 0`, `!status.failed`) whose keys are paths into the live
//! object, as Argo evaluates `successCondition` and `failureCondition` (its `labels.Parse`
//! over gjson lookups).
//!
//! Keys must be valid label keys (so paths are dotted names and array indices); values valid
//! label values; `>`/`<` compare integers. A path's value is read as gjson prints it: strings
//! raw, numbers as written, `true`/`false`, objects and arrays as JSON, `null` as "" (but
//! present).

use std::fmt;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted, as Kubernetes keeps them.
    pub values: Vec<String>,
}

/// A parsed condition: its requirements, sorted by key as Kubernetes sorts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined = || format!("({})", self.values.join(","));
        let one = || self.values.first().cloned().unwrap_or_default();
        match self.operator {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::Equals => write!(f, "{}={}", self.key, one()),
            Operator::DoubleEquals => write!(f, "{}=={}", self.key, one()),
            Operator::NotEquals => write!(f, "{}!={}", self.key, one()),
            Operator::In => write!(f, "{} in {}", self.key, joined()),
            Operator::NotIn => write!(f, "{} notin {}", self.key, joined()),
            Operator::GreaterThan => write!(f, "{}>{}", self.key, one()),
            Operator::LessThan => write!(f, "{}<{}", self.key, one()),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join(","))
    }
}

impl Requirement {
    /// Whether the object satisfies this requirement (Kubernetes' `Requirement.Matches`).
    pub fn matches(&self, object: &Value) -> bool {
        let found = lookup(object, &self.key);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                found.is_some_and(|v| self.values.contains(&v))
            }
            Operator::NotEquals | Operator::NotIn => {
                found.is_none_or(|v| !self.values.contains(&v))
            }
            Operator::Exists => found.is_some(),
            Operator::DoesNotExist => found.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), [want]) = (found, self.values.as_slice()) else {
                    return false;
                };
                match (have.parse::<i64>(), want.parse::<i64>()) {
                    (Ok(have), Ok(want)) if self.operator == Operator::GreaterThan => have > want,
                    (Ok(have), Ok(want)) => have < want,
                    _ => false,
                }
            }
        }
    }
}

/// The value at a dotted path, as gjson prints it; `None` when absent.
pub fn lookup(object: &Value, path: &str) -> Option<String> {
    let mut current = object;
    for part in split_path(path) {
        current = match current {
            Value::Object(map) => map.get(&part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(match current {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// Splits a gjson path on unescaped dots (`a\.b.c` is `["a.b", "c"]`).
fn split_path(path: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(last)) = (chars.next(), parts.last_mut()) {
                    last.push(next);
                }
            }
            '.' => parts.push(String::new()),
            other => {
                if let Some(last) = parts.last_mut() {
                    last.push(other);
                }
            }
        }
    }
    parts
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Greater,
    Less,
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '(' | ')' | ',' | '>' | '<')
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let next_is_eq = chars.peek() == Some(&'=');
            let token = match (c, next_is_eq) {
                ('!', true) => Token::NotEquals,
                ('!', false) => Token::Not,
                ('=', true) => Token::DoubleEquals,
                ('=', false) => Token::Equals,
                ('(', _) => Token::Open,
                (')', _) => Token::Close,
                (',', _) => Token::Comma,
                ('>', _) => Token::Greater,
                _ => Token::Less,
            };
            if matches!(token, Token::NotEquals | Token::DoubleEquals) {
                chars.next();
            }
            out.push(token);
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || is_special(c) {
                break;
            }
            word.push(c);
            chars.next();
        }
        out.push(match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Ident(word),
        });
    }
    Ok(out)
}

/// Parses a condition as `labels.Parse` does.
pub fn parse(input: &str) -> Result<Selector, String> {
    let tokens = tokenize(input)?;
    let mut pos = 0;
    let mut requirements = Vec::new();
    if tokens.is_empty() {
        return Ok(Selector::default());
    }
    loop {
        requirements.push(requirement(&tokens, &mut pos)?);
        match tokens.get(pos) {
            None => break,
            Some(Token::Comma) => {
                pos += 1;
                if pos >= tokens.len() {
                    return Err("found '', expected: identifier after ','".to_string());
                }
            }
            Some(other) => {
                return Err(format!("found {other:?}, expected: ',' or 'end of string'"));
            }
        }
    }
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Selector(requirements))
}

fn requirement(tokens: &[Token], pos: &mut usize) -> Result<Requirement, String> {
    let negated = tokens.get(*pos) == Some(&Token::Not);
    if negated {
        *pos += 1;
    }
    let key = match tokens.get(*pos) {
        Some(Token::Ident(k)) => k.clone(),
        other => return Err(format!("found {other:?}, expected: identifier")),
    };
    *pos += 1;
    validate_key(&key)?;
    let done = matches!(tokens.get(*pos), None | Some(Token::Comma));
    if negated || done {
        if negated && !done {
            return Err(format!(
                "found {:?}, expected: ',' or 'end of string'",
                tokens[*pos]
            ));
        }
        let operator = if negated {
            Operator::DoesNotExist
        } else {
            Operator::Exists
        };
        return Ok(Requirement {
            key,
            operator,
            values: Vec::new(),
        });
    }
    let operator = match &tokens[*pos] {
        Token::Equals => Operator::Equals,
        Token::DoubleEquals => Operator::DoubleEquals,
        Token::NotEquals => Operator::NotEquals,
        Token::In => Operator::In,
        Token::NotIn => Operator::NotIn,
        Token::Greater => Operator::GreaterThan,
        Token::Less => Operator::LessThan,
        other => {
            return Err(format!(
                "found {other:?}, expected: in, notin, =, ==, !=, gt, lt"
            ));
        }
    };
    *pos += 1;
    let mut values = if matches!(operator, Operator::In | Operator::NotIn) {
        set_values(tokens, pos)?
    } else {
        match tokens.get(*pos) {
            Some(Token::Ident(v)) => {
                *pos += 1;
                vec![v.clone()]
            }
            // `key=` matches an empty value.
            None | Some(Token::Comma) => vec![String::new()],
            Some(other) => return Err(format!("found {other:?}, expected: identifier")),
        }
    };
    for v in &values {
        validate_value(v)?;
    }
    if matches!(operator, Operator::GreaterThan | Operator::LessThan)
        && values.first().is_none_or(|v| v.parse::<i64>().is_err())
    {
        return Err(format!(
            "for 'Gt', 'Lt' operators, the value must be an integer (key {key})"
        ));
    }
    values.sort();
    values.dedup();
    Ok(Requirement {
        key,
        operator,
        values,
    })
}

fn set_values(tokens: &[Token], pos: &mut usize) -> Result<Vec<String>, String> {
    if tokens.get(*pos) != Some(&Token::Open) {
        return Err("found something else, expected: '('".to_string());
    }
    *pos += 1;
    let mut values = Vec::new();
    loop {
        match tokens.get(*pos) {
            Some(Token::Ident(v)) => {
                values.push(v.clone());
                *pos += 1;
            }
            Some(Token::Close) if values.is_empty() => {
                *pos += 1;
                return Ok(vec![String::new()]);
            }
            other => return Err(format!("found {other:?}, expected: identifier")),
        }
        match tokens.get(*pos) {
            Some(Token::Comma) => *pos += 1,
            Some(Token::Close) => {
                *pos += 1;
                return Ok(values);
            }
            other => return Err(format!("found {other:?}, expected: ',' or ')'")),
        }
    }
}

fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A qualified name: `[prefix/]name`, the prefix a DNS subdomain.
fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    });
    if prefix_ok && is_label_name(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid key {key:?}: a path of names made of alphanumerics, '-', '_' or '.', at most 63 characters, starting and ending with an alphanumeric"
        ))
    }
}

fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid value {value:?}: at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job() -> Value {
        json!({
            "metadata": {"name": "pi", "labels": {"app": "x"}},
            "status": {"succeeded": 1, "failed": 0, "phase": "Running", "ready": true,
                       "conditions": [{"type": "Complete", "status": "True"}], "gone": null},
        })
    }

    fn holds(condition: &str) -> bool {
        parse(condition)
            .expect(condition)
            .0
            .iter()
            .all(|r| r.matches(&job()))
    }

    #[test]
    fn conditions_over_paths() {
        assert!(holds("status.succeeded > 0"));
        assert!(!holds("status.failed > 0"));
        assert!(holds("status.failed < 3"));
        assert!(holds("status.phase == Running"));
        assert!(holds("status.phase=Running,status.ready=true"));
        assert!(holds("status.phase in (Pending, Running)"));
        assert!(holds("status.phase notin (Failed)"));
        assert!(holds("status.missing notin (Failed)"));
        assert!(!holds("status.missing == x"));
        assert!(holds("status.conditions.0.type == Complete"));
        assert!(holds("!status.missing"));
        assert!(holds("status.gone"));
        assert!(holds("status.phase != Failed"));
        assert!(!holds("status.phase > 1"));
    }

    #[test]
    fn rendering_and_order_follow_kubernetes() {
        let s = parse("status.phase in (b, a), metadata.name == pi, !x").expect("parse");
        assert_eq!(s.to_string(), "metadata.name==pi,status.phase in (a,b),!x");
    }

    #[test]
    fn invalid_conditions_are_refused() {
        for bad in [
            "status.phase in Running",
            "status.x > y",
            "status.conditions.#(type==Ready)",
            "a,",
            "status.phase == has space",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("").expect("empty"), Selector::default());
    }
}
