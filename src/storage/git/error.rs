//! Clone failures as the crate's typed [`Error`], worded as Argo words them.
//!
//! Argo does not retry git, and gitoxide's errors carry no classification a retry could use,
//! so every failure is a permanent [`ErrorKind::Request`] with the whole cause chain in its text.

use crate::storage::{Error, ErrorKind};

/// `<what>: <cause chain>` as a permanent git error.
pub fn failed(what: impl std::fmt::Display, cause: &dyn std::error::Error) -> Error {
    let mut text = cause.to_string();
    let mut source = cause.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    Error::backend("git", ErrorKind::Request, format!("{what}: {text}"))
}
