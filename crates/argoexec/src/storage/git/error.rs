//! Clone failures as the crate's typed [`Error`], worded as Argo words them.
//!
//! Argo does not retry git, and gitoxide's errors carry no classification a retry could use,
//! so every failure is a permanent [`ErrorKind::Request`] with the whole cause chain in its text.

use crate::storage::{Error, ErrorKind, cause_chain};

/// `<what>: <cause chain>` as a permanent git error.
pub fn failed(what: impl std::fmt::Display, cause: &(dyn std::error::Error + 'static)) -> Error {
    Error::backend(
        "git",
        ErrorKind::Request,
        format!("{what}: {}", cause_chain(cause)),
    )
}
