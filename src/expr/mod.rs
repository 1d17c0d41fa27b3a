//! A subset of expr-lang (<https://expr-lang.org>), the expression language Argo evaluates for
//! data-template transformations (`filter(data, {# endsWith ".pdf"})`) and HTTP-template
//! success conditions (`response.statusCode == 201`).
//!
//! Values are JSON values. Supported: literals (numbers, strings in `"`, `'` or backticks,
//! `true`, `false`, `nil`, arrays), variables, member and index access (`a.b`, `a?.b`,
//! `a["b"]`, `a[0]`, `a[-1]`, `a[1:3]`), the operators `+ - * / % **`, comparisons, `in`,
//! `not in`, `contains`, `startsWith`, `endsWith`, `matches`, `and`/`&&`, `or`/`||`,
//! `not`/`!`, `??`, the ternary `?:`, closures `{...}` with `#` (and `.field` for `#.field`)
//! and the builtins listed in [`BUILTINS`]. Anything else is a parse error naming it.

mod eval;
mod lexer;
mod parser;

use serde_json::Value;

pub use eval::BUILTINS;

/// An expression that failed to parse or to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("cannot parse {expression:?} at offset {offset}: {message}")]
    Parse {
        expression: String,
        offset: usize,
        message: String,
    },
    #[error("cannot evaluate {expression:?}: {message}")]
    Eval { expression: String, message: String },
}

/// A parsed expression, to be evaluated against environments.
#[derive(Debug, Clone)]
pub struct Program {
    source: String,
    root: parser::Node,
}

impl Program {
    pub fn compile(source: &str) -> Result<Self, Error> {
        let parse_error = |offset: usize, message: String| Error::Parse {
            expression: source.to_string(),
            offset,
            message,
        };
        let tokens = lexer::tokenize(source).map_err(|(o, m)| parse_error(o, m))?;
        let root = parser::parse(&tokens).map_err(|(o, m)| parse_error(o, m))?;
        Ok(Self {
            source: source.to_string(),
            root,
        })
    }

    /// Evaluates with `env`'s fields as the variables.
    pub fn run(&self, env: &serde_json::Map<String, Value>) -> Result<Value, Error> {
        eval::evaluate(&self.root, env).map_err(|message| Error::Eval {
            expression: self.source.clone(),
            message,
        })
    }

    /// Evaluates to a boolean; any other result is an error, as in Argo's `EvalBool`.
    pub fn run_bool(&self, env: &serde_json::Map<String, Value>) -> Result<bool, Error> {
        match self.run(env)? {
            Value::Bool(b) => Ok(b),
            other => Err(Error::Eval {
                expression: self.source.clone(),
                message: format!("unable to cast expression result '{other}' to bool"),
            }),
        }
    }
}

/// Compiles and runs `source` once.
pub fn evaluate(source: &str, env: &serde_json::Map<String, Value>) -> Result<Value, Error> {
    Program::compile(source)?.run(env)
}

#[cfg(test)]
mod tests;
