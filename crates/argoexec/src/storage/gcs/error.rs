//! GCS failures, classified into the crate's typed [`Error`].
//!
//! Classification reads typed fields only: the HTTP status, the client library's error kind and
//! its typed sources (checksum mismatches, short reads), never a message text.

use std::error::Error as _;

use google_cloud_storage::error::{ReadError, WriteError};

use crate::storage::{Error, ErrorKind, classify_reqwest, is_tls_failure};

const DRIVER: &str = "gcs";

/// Argo's GCS driver reports a missing key this way (`no results for key: <key>`).
pub fn not_found(key: &str) -> Error {
    Error::not_found(key, format!("no results for key: {key}"))
}

/// Converts a failure of the client library on `key` into the crate error.
pub fn classify(err: google_cloud_storage::Error, key: &str) -> Error {
    if let Some(status) = err.http_status_code() {
        if status == 404 {
            return not_found(key);
        }
        return Error::backend(
            DRIVER,
            ErrorKind::from_http_status(status),
            format!("{key}: {err}"),
        );
    }
    let kind = kind_of(&err);
    Error::backend(DRIVER, kind, format!("{key}: {err}"))
}

fn kind_of(err: &google_cloud_storage::Error) -> ErrorKind {
    if err.is_exhausted() {
        // The library's own retries gave up: what matters is the last failure.
        return match err
            .source()
            .and_then(|s| s.downcast_ref::<google_cloud_storage::Error>())
        {
            Some(last) => last
                .http_status_code()
                .map_or_else(|| kind_of(last), ErrorKind::from_http_status),
            None => ErrorKind::Server,
        };
    }
    if is_tls_failure(err) {
        return ErrorKind::Request;
    }
    if err.is_timeout() {
        return ErrorKind::Timeout;
    }
    if err.is_connect() || err.is_io() || err.is_transport() {
        return ErrorKind::Network;
    }
    if err.is_authentication() {
        let transient = err
            .source()
            .and_then(|s| s.downcast_ref::<google_cloud_gax::error::CredentialsError>())
            .is_some_and(|c| c.is_transient());
        return if transient {
            ErrorKind::Network
        } else {
            ErrorKind::Auth
        };
    }
    if let Some(read) = err.source().and_then(|s| s.downcast_ref::<ReadError>()) {
        return match read {
            ReadError::ChecksumMismatch(_) => ErrorKind::Integrity,
            ReadError::ShortRead(_) | ReadError::LongRead { .. } => ErrorKind::Network,
            _ => ErrorKind::Request,
        };
    }
    if let Some(write) = err.source().and_then(|s| s.downcast_ref::<WriteError>()) {
        return match write {
            WriteError::ChecksumMismatch { .. } => ErrorKind::Integrity,
            _ => ErrorKind::Server,
        };
    }
    ErrorKind::Request
}

/// A JSON API error response (`{"error": {"code": 404, "message": ...}}`) on `key`.
pub fn from_response(status: u16, body: &[u8], key: &str) -> Error {
    if status == 404 {
        return not_found(key);
    }
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    Error::backend(
        DRIVER,
        ErrorKind::from_http_status(status),
        format!("{key}: HTTP {status}: {message}"),
    )
}

/// A failure of the HTTP client itself (connect, timeout, broken body) on `key`.
pub fn from_http(err: reqwest::Error, key: &str) -> Error {
    Error::backend(DRIVER, classify_reqwest(&err), format!("{key}: {err}"))
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_are_classified_by_status() {
        let e = from_response(404, b"{}", "a/b");
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "no results for key: a/b");
        let body =
            br#"{"error":{"code":403,"message":"caller does not have storage.objects.get"}}"#;
        let e = from_response(403, body, "k");
        assert_eq!(e.kind(), Some(ErrorKind::Auth));
        assert!(e.to_string().contains("storage.objects.get"), "{e}");
        let e = from_response(503, b"<html>busy</html>", "k");
        assert!(e.is_transient());
        assert!(e.to_string().contains("busy"), "{e}");
    }
}
