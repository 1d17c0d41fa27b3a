//! Plugin failures, classified into the crate's typed [`Error`] from the gRPC status code (or
//! the transport failure), never from a message text. Messages are Argo's
//! (`plugin <name> <operation> failed: <cause>`).

use tonic::Code;

use crate::storage::{Error, ErrorKind, cause_chain};

/// A failed call of `operation` (Argo's words: `load`, `save`, `delete`, `list objects`...).
pub(super) fn status(plugin: &str, operation: &str, key: &str, status: &tonic::Status) -> Error {
    let message = format!(
        "plugin {plugin} {operation} failed: {}",
        status_text(status)
    );
    match status.code() {
        Code::NotFound => Error::not_found(key, message),
        Code::Unimplemented => Error::not_supported(super::DRIVER, message),
        code => Error::backend(super::DRIVER, kind(code), message),
    }
}

/// A call the plugin answered with `success: false` (or an `error` text): the plugin decided,
/// so trying again is not expected to help.
pub(super) fn refused(plugin: &str, operation: &str, reason: &str) -> Error {
    Error::backend(
        super::DRIVER,
        ErrorKind::Request,
        format!("plugin {plugin} {operation} failed: {reason}"),
    )
}

/// The plugin's socket could not be reached: the sidecar is not up (yet), or is gone.
pub(super) fn unreachable(plugin: &str, socket: &std::path::Path, cause: &str) -> Error {
    Error::backend(
        super::DRIVER,
        ErrorKind::Network,
        format!(
            "failed to dial plugin {plugin} at {:?}: {cause}",
            socket.display().to_string()
        ),
    )
}

/// The retry class of a gRPC status: what a transient server or network state can cause is
/// retried; what the request itself caused is not.
fn kind(code: Code) -> ErrorKind {
    match code {
        Code::Unavailable | Code::Cancelled => ErrorKind::Network,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        Code::ResourceExhausted => ErrorKind::Throttled,
        Code::Internal | Code::Unknown | Code::Aborted | Code::DataLoss => ErrorKind::Server,
        Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Auth,
        _ => ErrorKind::Request,
    }
}

/// Go's text of a gRPC status error: `rpc error: code = <Code> desc = <message>`, with the
/// transport's cause when the status carries one.
fn status_text(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let desc = match status.source() {
        Some(cause) if status.message().is_empty() => cause_chain(cause),
        _ => status.message().to_string(),
    };
    format!("rpc error: code = {:?} desc = {desc}", status.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_and_timeouts_are_retried_refusals_are_not() {
        let unavailable = status("p", "load", "k", &tonic::Status::unavailable("gone"));
        assert!(unavailable.is_transient());
        assert_eq!(
            unavailable.to_string(),
            "plugin p load failed: rpc error: code = Unavailable desc = gone"
        );
        let late = status("p", "save", "k", &tonic::Status::deadline_exceeded("slow"));
        assert_eq!(late.kind(), Some(ErrorKind::Timeout));
        let bad = status("p", "save", "k", &tonic::Status::invalid_argument("no"));
        assert!(!bad.is_transient());
        assert!(status("p", "load", "k", &tonic::Status::not_found("k")).is_not_found());
        assert!(matches!(
            status("p", "save", "k", &tonic::Status::unimplemented("x")),
            Error::NotSupported { .. }
        ));
        assert!(!refused("p", "load", "disk full").is_transient());
        assert!(unreachable("p", std::path::Path::new("/s"), "refused").is_transient());
    }
}
