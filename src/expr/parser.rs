//! Precedence-climbing parser with expr-lang's operator precedences.

use serde_json::Value;

use super::lexer::{Spanned, Tok};

#[derive(Debug, Clone)]
pub enum Node {
    Lit(Value),
    Var(String),
    /// `#`: the element a closure is applied to.
    Pointer,
    Member {
        object: Box<Node>,
        key: Box<Node>,
        optional: bool,
    },
    Slice {
        object: Box<Node>,
        from: Option<Box<Node>>,
        to: Option<Box<Node>>,
    },
    Unary(&'static str, Box<Node>),
    Binary(String, Box<Node>, Box<Node>),
    Ternary(Box<Node>, Box<Node>, Box<Node>),
    Call(String, Vec<Node>),
    Closure(Box<Node>),
    Array(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// Builtins whose second argument is a predicate (a closure over `#`).
const PREDICATE_BUILTINS: [&str; 10] = [
    "all",
    "any",
    "none",
    "one",
    "filter",
    "map",
    "find",
    "findIndex",
    "count",
    "sum",
];

fn binary_precedence(op: &str) -> Option<(u8, bool)> {
    Some(match op {
        "or" | "||" => (10, false),
        "and" | "&&" => (15, false),
        "==" | "!=" | "<" | ">" | "<=" | ">=" | "in" | "not in" | "matches" | "contains"
        | "startsWith" | "endsWith" => (20, false),
        "+" | "-" => (30, false),
        "*" | "/" | "%" => (60, false),
        "**" | "^" => (100, true),
        "??" => (200, false),
        _ => return None,
    })
}

pub fn parse(tokens: &[Spanned]) -> Result<Node, (usize, String)> {
    let mut p = Parser { tokens, pos: 0 };
    let node = p.expression(0)?;
    match p.tokens.get(p.pos) {
        None => Ok(node),
        Some((off, tok)) => Err((*off, format!("unexpected {}", describe(tok)))),
    }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Int(i) => i.to_string(),
        Tok::Float(f) => f.to_string(),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Ident(s) => s.clone(),
        Tok::Op(o) => format!("'{o}'"),
    }
}

struct Parser<'a> {
    tokens: &'a [Spanned],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.pos).map_or_else(
            || self.tokens.last().map_or(0, |(o, _)| *o + 1),
            |(o, _)| *o,
        )
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn expect(&mut self, op: &str) -> Result<(), (usize, String)> {
        if self.is_op(op) {
            self.pos += 1;
            Ok(())
        } else {
            let found = self.peek().map_or("the end".to_string(), describe);
            Err((self.offset(), format!("expected '{op}', found {found}")))
        }
    }

    /// The binary operator at the cursor and how many tokens it spans.
    fn binary_op(&self) -> Option<(String, usize)> {
        match self.peek()? {
            Tok::Op(o) => binary_precedence(o).map(|_| ((*o).to_string(), 1)),
            Tok::Ident(w) if w == "not" => match self.tokens.get(self.pos + 1) {
                Some((_, Tok::Ident(n))) if n == "in" => Some(("not in".to_string(), 2)),
                _ => None,
            },
            Tok::Ident(w) => binary_precedence(w).map(|_| (w.clone(), 1)),
            _ => None,
        }
    }

    fn expression(&mut self, min: u8) -> Result<Node, (usize, String)> {
        let mut left = self.unary()?;
        while let Some((op, width)) = self.binary_op() {
            let (precedence, right_assoc) = binary_precedence(&op).unwrap_or((0, false));
            if precedence < min {
                break;
            }
            self.pos += width;
            let next = if right_assoc {
                precedence
            } else {
                precedence + 1
            };
            let right = self.expression(next)?;
            left = Node::Binary(op, Box::new(left), Box::new(right));
        }
        if min == 0 && self.is_op("?") {
            self.pos += 1;
            let then = self.expression(0)?;
            self.expect(":")?;
            let otherwise = self.expression(0)?;
            left = Node::Ternary(Box::new(left), Box::new(then), Box::new(otherwise));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, (usize, String)> {
        let op: Option<(&'static str, u8)> = match self.peek() {
            Some(Tok::Ident(w)) if w == "not" => Some(("!", 50)),
            Some(Tok::Op("!")) => Some(("!", 50)),
            Some(Tok::Op("-")) => Some(("-", 90)),
            Some(Tok::Op("+")) => Some(("+", 90)),
            _ => None,
        };
        if let Some((op, precedence)) = op {
            self.pos += 1;
            let operand = self.expression(precedence)?;
            return Ok(Node::Unary(op, Box::new(operand)));
        }
        let primary = self.primary()?;
        self.postfix(primary)
    }

    fn primary(&mut self) -> Result<Node, (usize, String)> {
        let offset = self.offset();
        let Some(tok) = self.peek().cloned() else {
            return Err((offset, "unexpected end of expression".to_string()));
        };
        self.pos += 1;
        Ok(match tok {
            Tok::Int(i) => Node::Lit(Value::from(i)),
            Tok::Float(f) => Node::Lit(Value::from(f)),
            Tok::Str(s) => Node::Lit(Value::String(s)),
            Tok::Op("#") => Node::Pointer,
            Tok::Op("(") => {
                let inner = self.expression(0)?;
                self.expect(")")?;
                inner
            }
            Tok::Op("[") => Node::Array(self.list("]")?),
            Tok::Op("{") => self.map_literal()?,
            // `.name` inside a closure: a member of `#`.
            Tok::Op(".") => match self.peek().cloned() {
                Some(Tok::Ident(name)) => {
                    self.pos += 1;
                    Node::Member {
                        object: Box::new(Node::Pointer),
                        key: Box::new(Node::Lit(Value::String(name))),
                        optional: false,
                    }
                }
                _ => return Err((offset, "expected a name after '.'".to_string())),
            },
            Tok::Ident(name) => match name.as_str() {
                "true" => Node::Lit(Value::Bool(true)),
                "false" => Node::Lit(Value::Bool(false)),
                "nil" => Node::Lit(Value::Null),
                _ if self.is_op("(") => {
                    self.pos += 1;
                    self.call(name, offset)?
                }
                _ => Node::Var(name),
            },
            Tok::Op(o) => return Err((offset, format!("unexpected '{o}'"))),
        })
    }

    fn call(&mut self, name: String, offset: usize) -> Result<Node, (usize, String)> {
        if !super::eval::BUILTINS.contains(&name.as_str()) {
            return Err((
                offset,
                format!(
                    "unknown or unsupported function {name}() (argoexec-rs supports: {})",
                    super::eval::BUILTINS.join(", ")
                ),
            ));
        }
        let mut args = Vec::new();
        while !self.is_op(")") {
            if !args.is_empty() {
                self.expect(",")?;
            }
            let predicate = args.len() == 1 && PREDICATE_BUILTINS.contains(&name.as_str());
            let arg = if predicate && self.is_op("{") {
                self.pos += 1;
                let body = self.expression(0)?;
                self.expect("}")?;
                Node::Closure(Box::new(body))
            } else if predicate {
                Node::Closure(Box::new(self.expression(0)?))
            } else {
                self.expression(0)?
            };
            args.push(arg);
        }
        self.pos += 1;
        Ok(Node::Call(name, args))
    }

    fn list(&mut self, close: &str) -> Result<Vec<Node>, (usize, String)> {
        let mut items = Vec::new();
        while !self.is_op(close) {
            if !items.is_empty() {
                self.expect(",")?;
                if self.is_op(close) {
                    break;
                }
            }
            items.push(self.expression(0)?);
        }
        self.pos += 1;
        Ok(items)
    }

    fn map_literal(&mut self) -> Result<Node, (usize, String)> {
        let mut entries = Vec::new();
        while !self.is_op("}") {
            if !entries.is_empty() {
                self.expect(",")?;
                if self.is_op("}") {
                    break;
                }
            }
            let key = match self.peek().cloned() {
                Some(Tok::Ident(k) | Tok::Str(k)) => {
                    self.pos += 1;
                    Node::Lit(Value::String(k))
                }
                Some(Tok::Op("(")) => self.primary()?,
                _ => return Err((self.offset(), "expected a map key".to_string())),
            };
            self.expect(":")?;
            entries.push((key, self.expression(0)?));
        }
        self.pos += 1;
        Ok(Node::Map(entries))
    }

    fn postfix(&mut self, mut node: Node) -> Result<Node, (usize, String)> {
        loop {
            if self.is_op(".") || self.is_op("?.") {
                let optional = self.is_op("?.");
                self.pos += 1;
                let offset = self.offset();
                match self.peek().cloned() {
                    Some(Tok::Ident(name)) => {
                        self.pos += 1;
                        if self.is_op("(") {
                            return Err((
                                offset,
                                format!("method calls are not supported ({name}())"),
                            ));
                        }
                        node = Node::Member {
                            object: Box::new(node),
                            key: Box::new(Node::Lit(Value::String(name))),
                            optional,
                        };
                    }
                    _ => return Err((offset, "expected a name after '.'".to_string())),
                }
            } else if self.is_op("[") {
                self.pos += 1;
                let from = if self.is_op(":") {
                    None
                } else {
                    Some(Box::new(self.expression(0)?))
                };
                if self.is_op(":") {
                    self.pos += 1;
                    let to = if self.is_op("]") {
                        None
                    } else {
                        Some(Box::new(self.expression(0)?))
                    };
                    self.expect("]")?;
                    node = Node::Slice {
                        object: Box::new(node),
                        from,
                        to,
                    };
                } else {
                    self.expect("]")?;
                    let key = from.ok_or((self.offset(), "empty index".to_string()))?;
                    node = Node::Member {
                        object: Box::new(node),
                        key,
                        optional: false,
                    };
                }
            } else {
                return Ok(node);
            }
        }
    }
}
