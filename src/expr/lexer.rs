//! Tokens of an expression, each with its byte offset for error messages.

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    /// Punctuation and symbolic operators: `( ) [ ] { } , . ?. : ? ?? + - * / % ** == != < <= > >= ! && || #`.
    Op(&'static str),
}

pub type Spanned = (usize, Tok);

const OPS: [&str; 29] = [
    "?.", "??", "**", "==", "!=", "<=", ">=", "&&", "||", "(", ")", "[", "]", "{", "}", ",", ".",
    ":", "?", "+", "-", "*", "/", "%", "<", ">", "!", "#", "^",
];

pub fn tokenize(src: &str) -> Result<Vec<Spanned>, (usize, String)> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
                i += 1;
            }
            let mut float = false;
            if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                float = true;
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                float = true;
                i += 1;
                if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
                    i += 1;
                }
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text = src[start..i].replace('_', "");
            let tok = if float {
                Tok::Float(
                    text.parse()
                        .map_err(|_| (start, format!("bad number {text}")))?,
                )
            } else {
                Tok::Int(
                    text.parse()
                        .map_err(|_| (start, format!("bad number {text}")))?,
                )
            };
            out.push((start, tok));
        } else if c == b'"' || c == b'\'' || c == b'`' {
            let (s, next) = string(src, i)?;
            out.push((i, Tok::Str(s)));
            i = next;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'$')
            {
                i += 1;
            }
            out.push((start, Tok::Ident(src[start..i].to_string())));
        } else if let Some(op) = OPS.iter().find(|op| src[i..].starts_with(**op)) {
            out.push((i, Tok::Op(op)));
            i += op.len();
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err((i, format!("unexpected character {ch:?}")));
        }
    }
    Ok(out)
}

/// A quoted string starting at `start`; returns it and the offset after the closing quote.
fn string(src: &str, start: usize) -> Result<(String, usize), (usize, String)> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        if c == quote {
            return Ok((out, start + 1 + off + c.len_utf8()));
        }
        if c == '\\' && quote != '`' {
            let (_, e) = chars
                .next()
                .ok_or((start, "unterminated string".to_string()))?;
            out.push(match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                other => other,
            });
        } else {
            out.push(c);
        }
    }
    Err((start, "unterminated string".to_string()))
}
