//! The SDK's failures, classified into the crate's typed [`Error`].
//!
//! Classification reads typed fields only: the SDK error variant, the HTTP status and the S3
//! error code (a protocol field, `<Code>` in the response), never a message text.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::result::ConnectorError;

use crate::storage::{Error, ErrorKind, cause_chain, is_tls_failure};

const DRIVER: &str = "s3";

/// S3 error codes that mean "slow down".
const THROTTLING: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequests",
];
/// S3 error codes that mean the server failed.
const SERVER: &[&str] = &["InternalError", "ServiceUnavailable", "RequestError"];
/// S3 error codes that mean the key does not exist.
const NOT_FOUND: &[&str] = &["NoSuchKey", "NotFound", "NoSuchUpload"];
/// S3 error codes of bad or expired credentials.
const EXPIRED: &[&str] = &[
    "ExpiredToken",
    "TokenRefreshRequired",
    "RequestTimeTooSkewed",
];

/// Converts an SDK error for an operation on `key` into the crate error.
pub fn classify<E, R>(err: SdkError<E, R>, key: &str) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus + 'static,
{
    let status = err.raw_response().map(HttpStatus::status);
    let kind = match &err {
        SdkError::TimeoutError(_) => ErrorKind::Timeout,
        SdkError::DispatchFailure(d) => connector_kind(d.as_connector_error()),
        SdkError::ResponseError(_) => ErrorKind::Network,
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or_default();
            if NOT_FOUND.contains(&code) || (code.is_empty() && status == Some(404)) {
                // A HEAD answer has no body: minio calls its bare 404 a missing key too.
                let code = match code {
                    "" | "NotFound" => "NoSuchKey",
                    other => other,
                };
                let message = argo_sentence(Some(code), s.err().message(), None);
                return Error::not_found(key, message);
            }
            if THROTTLING.contains(&code) {
                ErrorKind::Throttled
            } else if SERVER.contains(&code) {
                ErrorKind::Server
            } else if EXPIRED.contains(&code) {
                ErrorKind::ExpiredCredentials
            } else if code == "RequestTimeout" {
                ErrorKind::Timeout
            } else if code == "BadDigest" || code == "InvalidDigest" {
                ErrorKind::Integrity
            } else {
                status.map_or(ErrorKind::Request, ErrorKind::from_http_status)
            }
        }
        _ => ErrorKind::Request,
    };
    match &err {
        SdkError::ServiceError(s) => {
            let e = s.err();
            let status_text = status.map(|s| format!("HTTP {s}{}", reason(s)));
            let message = argo_sentence(e.code(), e.message(), status_text.as_deref());
            let detail = match (e.code(), status_text) {
                (Some(code), Some(st)) => format!("{code}, {st}"),
                (Some(code), None) => code.to_string(),
                (None, Some(st)) => st,
                (None, None) => String::new(),
            };
            Error::backend(DRIVER, kind, message).detail(detail)
        }
        other => Error::backend(DRIVER, kind, cause_chain(other)),
    }
}

/// What Argo's S3 client (minio-go) says for a service error: the fixed sentence of a missing
/// bucket or key (servers word them with or without a final stop), else the server's message
/// (minio's `Error()`), else minio's text for a bare code, else the status. Chosen by the
/// error code, a protocol field.
fn argo_sentence(code: Option<&str>, message: Option<&str>, status: Option<&str>) -> String {
    let known = match code {
        Some("NoSuchBucket") => Some("The specified bucket does not exist"),
        Some("NoSuchKey") => Some("The specified key does not exist."),
        _ => None,
    };
    match (known, message.filter(|m| !m.is_empty()), code, status) {
        (Some(sentence), ..) => sentence.to_string(),
        (None, Some(m), ..) => m.to_string(),
        (None, None, Some(code), _) => format!("Error response code {code}."),
        (None, None, None, Some(status)) => status.to_string(),
        (None, None, None, None) => "unknown service error".to_string(),
    }
}

/// ` Forbidden` for 403: the reason phrase of a status, when it has one.
fn reason(status: u16) -> String {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

fn connector_kind(c: Option<&ConnectorError>) -> ErrorKind {
    match c {
        Some(c) if is_tls_failure(c) => ErrorKind::Request,
        Some(c) if c.is_timeout() => ErrorKind::Timeout,
        Some(c) if c.is_io() => ErrorKind::Network,
        // TLS trust failures and other connector errors will not heal by retrying.
        Some(c) if c.is_user() || c.is_other() => ErrorKind::Request,
        _ => ErrorKind::Network,
    }
}

/// The HTTP status of a raw response, whatever its type.
pub trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}
