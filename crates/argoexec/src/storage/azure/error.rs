//! Azure Blob failures, classified into the crate's typed [`Error`].
//!
//! Classification reads typed fields only: the error kind of `azure_core`, the HTTP status and
//! the service's error code (`x-ms-error-code`, a protocol field), never a message text.

use azure_core::error::ErrorKind as AzureKind;

use crate::storage::{Error, ErrorKind, is_tls_failure};

const DRIVER: &str = "azure";

/// Service error codes of throttling and server trouble that come with a non-5xx status.
const THROTTLED: &[&str] = &["ServerBusy", "OperationTimedOut"];
/// The blob's bytes did not match the checksum sent with them.
const INTEGRITY: &[&str] = &["Md5Mismatch", "Crc64Mismatch", "InvalidMd5"];

/// Converts a failure of the Azure crate on `blob` into the crate error. Only `BlobNotFound`
/// is a missing key: a missing container is a configuration error, as in Argo.
pub fn classify(err: azure_core::Error, blob: &str) -> Error {
    let kind = match err.kind() {
        AzureKind::HttpResponse {
            status, error_code, ..
        } => {
            let code = error_code.as_deref().unwrap_or_default();
            let status = u16::from(*status);
            if code == "BlobNotFound" || (code.is_empty() && status == 404) {
                return Error::not_found(
                    blob,
                    format!("The specified blob does not exist. (BlobNotFound: {blob})"),
                );
            }
            if THROTTLED.contains(&code) {
                ErrorKind::Throttled
            } else if INTEGRITY.contains(&code) {
                ErrorKind::Integrity
            } else {
                ErrorKind::from_http_status(status)
            }
        }
        AzureKind::Connection | AzureKind::Io if is_tls_failure(&err) => ErrorKind::Request,
        AzureKind::Connection | AzureKind::Io => ErrorKind::Network,
        AzureKind::Credential => ErrorKind::Auth,
        _ => ErrorKind::Request,
    };
    Error::backend(DRIVER, kind, format!("{blob}: {}", summary(&err)))
}

/// The error without the raw response the crate appends to some messages.
fn summary(err: &azure_core::Error) -> String {
    match err.kind() {
        AzureKind::HttpResponse {
            status, error_code, ..
        } => format!(
            "HTTP {} {}",
            u16::from(*status),
            error_code.as_deref().unwrap_or("(no error code)")
        ),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::StatusCode;

    fn http(status: StatusCode, code: &str) -> azure_core::Error {
        azure_core::Error::new(
            AzureKind::HttpResponse {
                status,
                error_code: Some(code.to_string()),
                raw_response: None,
            },
            "test",
        )
    }

    #[test]
    fn codes_decide_the_kind() {
        assert!(classify(http(StatusCode::NotFound, "BlobNotFound"), "b").is_not_found());
        let e = classify(http(StatusCode::NotFound, "ContainerNotFound"), "b");
        assert!(!e.is_not_found() && !e.is_transient());
        assert!(e.to_string().contains("ContainerNotFound"), "{e}");
        assert_eq!(
            classify(http(StatusCode::ServiceUnavailable, "ServerBusy"), "b").kind(),
            Some(ErrorKind::Throttled)
        );
        assert_eq!(
            classify(http(StatusCode::BadRequest, "Md5Mismatch"), "b").kind(),
            Some(ErrorKind::Integrity)
        );
        assert_eq!(
            classify(http(StatusCode::Forbidden, "AuthenticationFailed"), "b").kind(),
            Some(ErrorKind::Auth)
        );
    }
}
