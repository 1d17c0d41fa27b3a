//! The one storage error every backend converts into.
//!
//! Retry decisions read [`Error::is_transient`], which looks only at typed fields: each backend
//! classifies its own failures into an [`ErrorKind`] when it converts them, never by matching text.

use std::fmt;

/// Why a backend call failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The server asked us to slow down (429, SlowDown, Throttling...). Transient.
    Throttled,
    /// The server failed (5xx, InternalError, ServiceUnavailable). Transient.
    Server,
    /// The connection failed or broke (refused, reset, truncated body). Transient.
    Network,
    /// A connect or read timeout fired. Transient.
    Timeout,
    /// Temporary credentials expired; a fresh client may succeed. Transient.
    ExpiredCredentials,
    /// The bytes the server stored are not the bytes we sent. Transient: resend the part.
    Integrity,
    /// Wrong or missing credentials, or access denied. Permanent.
    Auth,
    /// The request itself is wrong (bad bucket, bad argument, TLS trust failure...). Permanent.
    Request,
}

impl ErrorKind {
    /// Whether a retry of the same request can succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Throttled
                | Self::Server
                | Self::Network
                | Self::Timeout
                | Self::ExpiredCredentials
                | Self::Integrity
        )
    }

    /// Classification of an HTTP status code, for backends that speak HTTP.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            429 => Self::Throttled,
            408 => Self::Timeout,
            401 | 403 => Self::Auth,
            500..=599 => Self::Server,
            _ => Self::Request,
        }
    }
}

/// A storage failure: typed so callers can tell not-found, unsupported and transient apart.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key does not exist. `message` is the backend's own text (Argo prints it).
    #[error("{message}")]
    NotFound { key: String, message: String },

    /// The driver cannot do this at all (e.g. saving to git, deleting over HTTP).
    #[error("{message}")]
    NotSupported {
        driver: &'static str,
        message: String,
    },

    /// The location or its secrets are unusable (missing secret, bad endpoint, bad option).
    /// `message` is Argo's text where it has one; `detail` our context for the log lines.
    #[error("{message}{}", parenthesized(detail))]
    Config { message: String, detail: String },

    /// The backend answered with a failure, or could not be reached. `message` is what Argo's
    /// driver says (its client library's words); `detail` is our context for the log lines
    /// (request, endpoint, error code, attempts); `gave_up` marks a transient failure that
    /// outlived its retries.
    #[error("{message}{}", parenthesized(detail))]
    Backend {
        driver: &'static str,
        kind: ErrorKind,
        message: String,
        detail: String,
        gave_up: bool,
    },

    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn not_found(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::NotFound {
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn not_supported(driver: &'static str, message: impl Into<String>) -> Self {
        Self::NotSupported {
            driver,
            message: message.into(),
        }
    }

    pub fn config(message: impl fmt::Display) -> Self {
        Self::Config {
            message: message.to_string(),
            detail: String::new(),
        }
    }

    pub fn backend(driver: &'static str, kind: ErrorKind, message: impl fmt::Display) -> Self {
        Self::Backend {
            driver,
            kind,
            message: message.to_string(),
            detail: String::new(),
            gave_up: false,
        }
    }

    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            context: context.to_string(),
            source,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// The retry classification of this error (`None` for errors that are never retried).
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Backend { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether retrying the same operation can succeed.
    pub fn is_transient(&self) -> bool {
        self.kind().is_some_and(ErrorKind::is_transient)
    }

    /// The same error with `prefix: ` in front of its message (typed fields unchanged). For
    /// Argo's own words, which users see in the node's message; ours go to [`Error::detail`].
    pub fn context(self, prefix: impl fmt::Display) -> Self {
        self.map_message(|m| format!("{prefix}: {m}"))
    }

    /// The same error under the name Argo's S3 driver gives the step that failed (`failed to
    /// get file`, `failed to put directory`...). Other drivers' errors, and a missing key
    /// (which Argo reports bare), are said as they are.
    pub fn in_s3_step(self, driver: &str, step: impl fmt::Display) -> Self {
        if self.is_not_found() {
            self
        } else {
            self.in_s3_save_step(driver, step)
        }
    }

    /// As [`Error::in_s3_step`] for a save, which Argo names whatever failed (a vanished
    /// upload's `NoSuchUpload` included).
    pub fn in_s3_save_step(self, driver: &str, step: impl fmt::Display) -> Self {
        if driver == "s3" {
            self.context(step)
        } else {
            self
        }
    }

    /// The same error with our context `detail` added for the log lines (a backend failure
    /// keeps it apart from Argo's message; other errors say it in front of their message).
    pub fn detail(self, detail: impl fmt::Display) -> Self {
        match self {
            Self::Backend {
                driver,
                kind,
                message,
                detail: known,
                gave_up,
            } => Self::Backend {
                driver,
                kind,
                message,
                detail: joined(detail, &known),
                gave_up,
            },
            Self::Config {
                message,
                detail: known,
            } => Self::Config {
                message,
                detail: joined(detail, &known),
            },
            other => other.context(detail),
        }
    }

    /// The same error marked as the last of its retries, `why` (attempts, deadline) in its
    /// detail.
    pub fn gave_up(self, why: impl fmt::Display) -> Self {
        match self.detail(why) {
            Self::Backend {
                driver,
                kind,
                message,
                detail,
                ..
            } => Self::Backend {
                driver,
                kind,
                message,
                detail,
                gave_up: true,
            },
            other => other,
        }
    }

    /// Argo's text for this failure, word for word: what the termination log (the node's
    /// message) says. Argo's S3, OSS and GCS drivers retry through `wait.ExponentialBackoff`,
    /// whose exhaustion reads `timed out waiting for the condition: <last error>`.
    pub fn termination_message(&self) -> String {
        match self {
            Self::Backend {
                driver,
                message,
                gave_up: true,
                ..
            } if ARGO_RETRYING_DRIVERS.contains(driver) => {
                format!("timed out waiting for the condition: {message}")
            }
            Self::Backend { message, .. }
            | Self::NotFound { message, .. }
            | Self::NotSupported { message, .. }
            | Self::Config { message, .. } => message.clone(),
            Self::Io { .. } => self.to_string(),
        }
    }

    /// The same error with its message rewritten (typed fields unchanged).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::NotFound { key, message } => Self::NotFound {
                key,
                message: f(message),
            },
            Self::NotSupported { driver, message } => Self::NotSupported {
                driver,
                message: f(message),
            },
            Self::Config { message, detail } => Self::Config {
                message: f(message),
                detail,
            },
            Self::Backend {
                driver,
                kind,
                message,
                detail,
                gave_up,
            } => Self::Backend {
                driver,
                kind,
                message: f(message),
                detail,
                gave_up,
            },
            Self::Io { context, source } => Self::Io {
                context: f(context),
                source,
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The drivers whose Argo counterparts retry with `wait.ExponentialBackoff` (S3, OSS, GCS).
const ARGO_RETRYING_DRIVERS: &[&str] = &["s3", "oss", "gcs"];

/// An I/O error as Go words it: the C library's text of its error number, first letter in
/// lower case (`no such file or directory`).
pub fn go_error_text(e: &std::io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    };
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `new`, then what was `known` before it.
fn joined(new: impl fmt::Display, known: &str) -> String {
    match known {
        "" => new.to_string(),
        _ => format!("{new}; {known}"),
    }
}

/// ` (detail)`, or nothing for no detail.
fn parenthesized(detail: &str) -> String {
    match detail {
        "" => String::new(),
        d => format!(" ({d})"),
    }
}

/// An error and its causes on one line, each text said once (client libraries' own messages
/// often say little, such as "error sending request", or repeat their cause).
pub fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    for cause in causes(err).skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// Whether a TLS handshake failed anywhere in `err`'s causes (an untrusted or mismatched
/// certificate, a peer that does not speak TLS...): a configuration problem that retrying
/// cannot fix. Found by the type of the cause, `rustls::Error`, never by its text.
pub fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    causes(err).any(|e| e.is::<rustls::Error>())
}

/// The one classification of a `reqwest` failure, shared by every driver that speaks HTTP
/// through reqwest (HTTP and Artifactory, the GCS JSON API and its resumable uploads):
///
/// | failure | kind |
/// |---|---|
/// | TLS handshake (a `rustls::Error` among the causes) | `Request` |
/// | connect or read timeout | `Timeout` |
/// | an error status (`error_for_status`) | [`ErrorKind::from_http_status`] |
/// | a request that cannot be built, a refused redirect | `Request` |
/// | connect refused, connection reset or closed, body cut or undecodable | `Network` |
/// | anything else | `Network` |
///
/// Anything else is transient: reqwest's other failures happen on a connection that was
/// opened (an upgrade, kinds added later), and a wrong transient guess costs retries bounded
/// by count and `ARGO_DEADLINE`, where a wrong permanent guess fails the step on a glitch.
#[cfg(any(feature = "http", feature = "gcs"))]
pub fn classify_reqwest(err: &reqwest::Error) -> ErrorKind {
    if is_tls_failure(err) {
        ErrorKind::Request
    } else if err.is_timeout() {
        ErrorKind::Timeout
    } else if let Some(status) = err.status() {
        ErrorKind::from_http_status(status.as_u16())
    } else if err.is_builder() || err.is_redirect() {
        ErrorKind::Request
    } else {
        ErrorKind::Network
    }
}

/// `err`, then its causes. An `io::Error` built around another error reports that error's
/// own source as its source, so the wrapped error is visited in its place.
fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |current| {
        let wrapped = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        wrapped.or_else(|| current.source())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_drives_retry_not_text() {
        assert!(Error::backend("s3", ErrorKind::Throttled, "x").is_transient());
        assert!(!Error::backend("s3", ErrorKind::Auth, "SlowDown 503").is_transient());
        assert!(!Error::not_found("k", "timeout").is_transient());
        assert_eq!(ErrorKind::from_http_status(503), ErrorKind::Server);
        assert_eq!(ErrorKind::from_http_status(404), ErrorKind::Request);
    }

    /// An error with a cause, as client libraries wrap transport failures.
    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_tls_failure_is_found_by_type_even_inside_an_io_error() {
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            untrusted,
        ));
        assert!(is_tls_failure(&e));
        assert_eq!(
            cause_chain(&e),
            "error sending request: invalid peer certificate: UnknownIssuer"
        );
        // The same words without the type are not a TLS failure.
        let text = Outer(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert!(!is_tls_failure(&text));
    }

    #[test]
    fn context_keeps_the_type() {
        let e = Error::not_found("k", "The specified key does not exist.")
            .context("failed to get file");
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "failed to get file: The specified key does not exist."
        );
    }

    /// Real reqwest failures, each produced against a server on 127.0.0.1, through the one
    /// classification table.
    #[cfg(any(feature = "http", feature = "gcs"))]
    mod reqwest_table {
        use super::super::*;
        use std::net::SocketAddr;
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpListener;

        /// How the one-connection server treats the request it reads.
        enum Answer {
            /// Writes these bytes, then closes.
            Bytes(String),
            /// Holds the connection open without a byte, for at most 10 s.
            Nothing,
        }

        async fn serve_once(answer: Answer) -> SocketAddr {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request).await;
                match answer {
                    Answer::Bytes(bytes) => {
                        let _ = conn.write_all(bytes.as_bytes()).await;
                    }
                    Answer::Nothing => tokio::time::sleep(Duration::from_secs(10)).await,
                }
            });
            addr
        }

        /// The timeout of a request to a server that never answers; the others get 10 s, as
        /// a TLS handshake on a loaded machine may take a while.
        const STALL_TIMEOUT: Duration = Duration::from_millis(200);

        fn client() -> reqwest::Client {
            reqwest::Client::builder().build().expect("client")
        }

        async fn failure_of(url: String, timeout: Duration) -> reqwest::Error {
            match client().get(url).timeout(timeout).send().await {
                Ok(res) => match res.error_for_status() {
                    Ok(res) => res.bytes().await.expect_err("the body fails"),
                    Err(e) => e,
                },
                Err(e) => e,
            }
        }

        async fn kind_of_answer(answer: Answer) -> ErrorKind {
            let timeout = match answer {
                Answer::Nothing => STALL_TIMEOUT,
                Answer::Bytes(_) => Duration::from_secs(10),
            };
            let addr = serve_once(answer).await;
            classify_reqwest(&failure_of(format!("http://{addr}/k"), timeout).await)
        }

        async fn kind_of_status(status: &str) -> ErrorKind {
            let head = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            kind_of_answer(Answer::Bytes(head)).await
        }

        #[tokio::test]
        async fn transport_failures() {
            // Port 1 (tcpmux) has no listener, and no ephemeral port a concurrent test binds
            // can ever be it, as one bound and closed again could.
            let refused = failure_of("http://127.0.0.1:1/k".into(), Duration::from_secs(10)).await;
            assert!(refused.is_connect(), "{refused:?}");
            assert_eq!(classify_reqwest(&refused), ErrorKind::Network);

            assert_eq!(
                kind_of_answer(Answer::Bytes(String::new())).await,
                ErrorKind::Network,
                "closed without an answer"
            );
            let cut = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort";
            assert_eq!(
                kind_of_answer(Answer::Bytes(cut.into())).await,
                ErrorKind::Network,
                "body cut"
            );
            assert_eq!(
                kind_of_answer(Answer::Nothing).await,
                ErrorKind::Timeout,
                "stalled"
            );

            let not_a_url = client()
                .get("http://[::1")
                .send()
                .await
                .expect_err("bad url");
            assert_eq!(classify_reqwest(&not_a_url), ErrorKind::Request);

            // A TLS client meeting a server that speaks plain HTTP.
            let addr = serve_once(Answer::Bytes("HTTP/1.1 400 Bad Request\r\n\r\n".into())).await;
            let tls = failure_of(format!("https://{addr}/k"), Duration::from_secs(10)).await;
            assert!(is_tls_failure(&tls), "{tls:?}");
            assert_eq!(classify_reqwest(&tls), ErrorKind::Request);
        }

        #[tokio::test]
        async fn statuses() {
            for (status, want) in [
                ("429 Too Many Requests", ErrorKind::Throttled),
                ("408 Request Timeout", ErrorKind::Timeout),
                ("500 Internal Server Error", ErrorKind::Server),
                ("503 Service Unavailable", ErrorKind::Server),
                ("401 Unauthorized", ErrorKind::Auth),
                ("403 Forbidden", ErrorKind::Auth),
                ("404 Not Found", ErrorKind::Request),
                ("400 Bad Request", ErrorKind::Request),
            ] {
                assert_eq!(kind_of_status(status).await, want, "{status}");
            }
        }
    }
}
