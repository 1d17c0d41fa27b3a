//! Connect and read timeouts of the drivers' network clients, from the environment.
//!
//! A stalled server must not hold an artifact forever: each request gets `connect` to open its
//! connection and `read` to see its next bytes (the first byte of the answer, then each body
//! chunk). A timeout is a transient error: the request alone is retried by
//! [`super::retry`], within `ARGO_DEADLINE`.

use std::time::Duration;

use crate::contract::parse_go_duration;

/// `ARGOEXEC_CONNECT_TIMEOUT`: a Go duration (`10s`, `500ms`) for every network driver but
/// GCS object reads and writes (the `google-cloud-storage` library's own) and git over
/// `git://` or SSH (which only `ARGO_DEADLINE` bounds).
pub const CONNECT_TIMEOUT_ENV: &str = "ARGOEXEC_CONNECT_TIMEOUT";
/// `ARGOEXEC_READ_TIMEOUT`: a Go duration for every driver (git: over HTTP(S)).
pub const READ_TIMEOUT_ENV: &str = "ARGOEXEC_READ_TIMEOUT";

/// How long a request may wait to connect, and then for each next byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

impl Timeouts {
    /// Object stores (S3, OSS, the GCS JSON API, Azure): 10 s to connect, 60 s between bytes.
    pub const OBJECT_STORE: Self = Self {
        connect: Duration::from_secs(10),
        read: Duration::from_secs(60),
    };

    /// Plain HTTP servers and Artifactory, often slower to answer: 30 s and 300 s.
    pub const HTTP: Self = Self {
        connect: Duration::from_secs(30),
        read: Duration::from_secs(300),
    };

    /// `default`, overridden by `ARGOEXEC_CONNECT_TIMEOUT` / `ARGOEXEC_READ_TIMEOUT`.
    pub fn from_env(default: Self) -> Self {
        Self::from_lookup(default, |k| std::env::var(k).ok())
    }

    /// As [`Timeouts::from_env`], reading variables through `get`. A value that is not a
    /// positive Go duration is ignored with a warning.
    pub fn from_lookup(default: Self, get: impl Fn(&str) -> Option<String>) -> Self {
        let read = |name: &str, fallback: Duration| match get(name) {
            None => fallback,
            Some(v) if v.trim().is_empty() => fallback,
            Some(v) => match parse_go_duration(&v).filter(|d| !d.is_zero()) {
                Some(d) => d,
                None => {
                    tracing::warn!(variable = name, value = %v, "not a positive duration; using the default");
                    fallback
                }
            },
        };
        Self {
            connect: read(CONNECT_TIMEOUT_ENV, default.connect),
            read: read(READ_TIMEOUT_ENV, default.read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_override_the_driver_default_and_bad_values_are_ignored() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let t = Timeouts::from_lookup(Timeouts::HTTP, env(&[]));
        assert_eq!(t, Timeouts::HTTP);
        let t = Timeouts::from_lookup(
            Timeouts::OBJECT_STORE,
            env(&[(CONNECT_TIMEOUT_ENV, "250ms"), (READ_TIMEOUT_ENV, "2s")]),
        );
        assert_eq!(
            (t.connect, t.read),
            (Duration::from_millis(250), Duration::from_secs(2))
        );
        let t = Timeouts::from_lookup(
            Timeouts::OBJECT_STORE,
            env(&[(CONNECT_TIMEOUT_ENV, "0"), (READ_TIMEOUT_ENV, "soon")]),
        );
        assert_eq!(t, Timeouts::OBJECT_STORE);
    }
}
