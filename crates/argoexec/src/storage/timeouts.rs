//! Connect and read timeouts of the drivers' network clients.
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
}

/// Overrides of the drivers' own [`Timeouts`], the same for every driver; `None` keeps each
/// driver's default ([`Timeouts::OBJECT_STORE`], [`Timeouts::HTTP`]). No memory cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutOverrides {
    /// Time to open a connection (`ARGOEXEC_CONNECT_TIMEOUT`; default: the driver's).
    pub connect: Option<Duration>,
    /// Time to wait for each next byte of an answer (`ARGOEXEC_READ_TIMEOUT`; default: the
    /// driver's).
    pub read: Option<Duration>,
}

impl TimeoutOverrides {
    /// Every driver waits at most `connect` to connect.
    pub fn with_connect(mut self, connect: Duration) -> Self {
        self.connect = Some(connect);
        self
    }

    /// Every driver waits at most `read` for each next byte.
    pub fn with_read(mut self, read: Duration) -> Self {
        self.read = Some(read);
        self
    }

    /// `ARGOEXEC_CONNECT_TIMEOUT` / `ARGOEXEC_READ_TIMEOUT`, read through `get`. A value that
    /// is not a positive Go duration is ignored with a warning.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let read = |name: &str| match get(name) {
            None => None,
            Some(v) if v.trim().is_empty() => None,
            Some(v) => match parse_go_duration(&v).filter(|d| !d.is_zero()) {
                Some(d) => Some(d),
                None => {
                    tracing::warn!(variable = name, value = %v, "not a positive duration; using the default");
                    None
                }
            },
        };
        Self {
            connect: read(CONNECT_TIMEOUT_ENV),
            read: read(READ_TIMEOUT_ENV),
        }
    }

    /// A driver's `default` timeouts with these overrides applied.
    pub fn over(self, default: Timeouts) -> Timeouts {
        Timeouts {
            connect: self.connect.unwrap_or(default.connect),
            read: self.read.unwrap_or(default.read),
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
        let t = TimeoutOverrides::from_lookup(env(&[])).over(Timeouts::HTTP);
        assert_eq!(t, Timeouts::HTTP);
        let t = TimeoutOverrides::from_lookup(env(&[
            (CONNECT_TIMEOUT_ENV, "250ms"),
            (READ_TIMEOUT_ENV, "2s"),
        ]))
        .over(Timeouts::OBJECT_STORE);
        assert_eq!(
            (t.connect, t.read),
            (Duration::from_millis(250), Duration::from_secs(2))
        );
        let t = TimeoutOverrides::from_lookup(env(&[
            (CONNECT_TIMEOUT_ENV, "0"),
            (READ_TIMEOUT_ENV, "soon"),
        ]))
        .over(Timeouts::OBJECT_STORE);
        assert_eq!(t, Timeouts::OBJECT_STORE);
    }
}
