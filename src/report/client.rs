//! The Kubernetes client the executor's reporting commands share: configuration (kubeconfig or
//! in-cluster), namespace, typed error classification, and one bounded retry policy.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Config};

use argoexec::contract::parse_go_duration;
use argoexec::storage::retry::Backoff;

/// First sleep between attempts of an API call (Go duration; default `1s`, as Argo).
pub const ENV_RETRY_DURATION: &str = "ARGOEXEC_API_RETRY_DURATION";
/// Longest time one API call is retried before it fails (Go duration; default `10m`).
pub const ENV_RETRY_TIMEOUT: &str = "ARGOEXEC_API_RETRY_TIMEOUT";
/// Set by Kubernetes in every pod; its absence (with no kubeconfig) means "no API".
const ENV_SERVICE_HOST: &str = "KUBERNETES_SERVICE_HOST";
/// How long one request may wait for its response before it counts as a transient failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Where Argo points users who hit a Forbidden error.
pub const RBAC_DOCS: &str = "https://argo-workflows.readthedocs.io/en/latest/workflow-rbac/";

/// Where to find the API: the global `--kubeconfig` (or `KUBECONFIG`, a `:`-separated list),
/// `--context` and `--namespace` flags.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
    pub namespace: Option<String>,
}

/// How a failed API call is treated. Classified from the response's status code (and, for
/// 409, its machine-readable `reason`) or from the kind of client error; never from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No response, a timeout, 408, 429, or a 5xx: retried.
    Transient,
    /// 403: retried as well (RBAC may be fixed while the pod runs), with a warning.
    Forbidden,
    /// 404.
    NotFound,
    /// 409 with reason `AlreadyExists`.
    AlreadyExists,
    /// Any other 409.
    Conflict,
    /// Anything else the server or the client refused: not retried.
    Rejected,
}

impl ErrorKind {
    pub fn is_retried(self) -> bool {
        matches!(self, Self::Transient | Self::Forbidden)
    }
}

/// A failed Kubernetes operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to configure the Kubernetes client: {0}")]
    Config(String),
    #[error("{}", describe(.source))]
    Request {
        kind: ErrorKind,
        #[source]
        source: kube::Error,
    },
    #[error("{operation} gave up after {attempts} attempts in {elapsed:?}: {last}")]
    GaveUp {
        operation: String,
        attempts: u32,
        elapsed: Duration,
        #[source]
        last: Box<Error>,
    },
    #[error("cannot encode the request body: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Request { kind, .. } => *kind,
            Self::GaveUp { last, .. } => last.kind(),
            Self::Config(_) | Self::Encode(_) => ErrorKind::Rejected,
        }
    }
}

impl From<kube::Error> for Error {
    fn from(source: kube::Error) -> Self {
        Self::Request {
            kind: classify(&source),
            source,
        }
    }
}

fn classify(e: &kube::Error) -> ErrorKind {
    match e {
        kube::Error::Api(status) => match status.code {
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 if status.reason == "AlreadyExists" => ErrorKind::AlreadyExists,
            409 => ErrorKind::Conflict,
            408 | 429 | 500..=599 => ErrorKind::Transient,
            _ => ErrorKind::Rejected,
        },
        // The connection failed or timed out before a response: worth another try.
        kube::Error::HyperError(_) | kube::Error::Service(_) => ErrorKind::Transient,
        _ => ErrorKind::Rejected,
    }
}

/// A status' own message (what `kubectl` shows), else the client error.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!(
            "{} ({}, HTTP {})",
            status.message, status.reason, status.code
        ),
        other => other.to_string(),
    }
}

/// Argo's backoff for task results (1 s, x2, jitter 0.1, at most 30 s apart), but bounded:
/// one call is retried for at most `timeout` (Argo retries forever, which can hold a pod, and
/// a test, indefinitely).
#[derive(Debug, Clone)]
pub struct ApiRetry {
    pub first: Duration,
    pub timeout: Duration,
}

impl Default for ApiRetry {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            timeout: Duration::from_secs(600),
        }
    }
}

impl ApiRetry {
    /// The defaults, overridden by `ARGOEXEC_API_RETRY_DURATION` and `ARGOEXEC_API_RETRY_TIMEOUT`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| parse_go_duration(&v));
        let defaults = Self::default();
        Self {
            first: var(ENV_RETRY_DURATION).unwrap_or(defaults.first),
            timeout: var(ENV_RETRY_TIMEOUT).unwrap_or(defaults.timeout),
        }
    }

    fn backoff(&self, started: Instant) -> Backoff {
        Backoff {
            steps: u32::MAX,
            initial: self.first,
            factor: 2.0,
            jitter: 0.1,
            cap: Duration::from_secs(30),
            deadline: Some(started + self.timeout),
        }
    }
}

/// A connected client and the namespace it works in.
#[derive(Clone)]
pub struct KubeClient {
    client: kube::Client,
    namespace: String,
    retry: ApiRetry,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient")
            .field("namespace", &self.namespace)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl KubeClient {
    /// The client from the kubeconfig when one is given, else the in-cluster configuration;
    /// `None` when neither exists (a local run). `~/.kube/config` is deliberately not read: a
    /// developer's default cluster must never receive a local run's results.
    pub async fn connect(opts: &ApiOptions) -> Result<Option<Self>, Error> {
        let kubeconfig = opts
            .kubeconfig
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let mut config = if let Some(paths) = kubeconfig {
            let merged = std::env::split_paths(paths)
                .filter(|p| !p.as_os_str().is_empty())
                .try_fold(Kubeconfig::default(), |merged, path: PathBuf| {
                    Kubeconfig::read_from(&path).and_then(|k| merged.merge(k))
                })
                .map_err(|e| Error::Config(format!("kubeconfig {paths}: {e}")))?;
            let options = KubeConfigOptions {
                context: opts.context.clone(),
                ..Default::default()
            };
            Config::from_custom_kubeconfig(merged, &options)
                .await
                .map_err(|e| Error::Config(format!("kubeconfig {paths}: {e}")))?
        } else if std::env::var_os(ENV_SERVICE_HOST).is_some() {
            Config::incluster().map_err(|e| Error::Config(format!("in-cluster: {e}")))?
        } else {
            return Ok(None);
        };
        // Retries are ours (bounded, logged); the client's own layer would hide attempts.
        config.default_retry = false;
        config.read_timeout = Some(REQUEST_TIMEOUT);
        let namespace = opts
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Some(Self {
            client,
            namespace,
            retry: ApiRetry::from_env(),
        }))
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The underlying client, for requests the typed APIs do not shape (pages decoded into
    /// our own types, responses discarded unparsed).
    pub fn raw(&self) -> &kube::Client {
        &self.client
    }

    /// A namespaced API for a resource the typed clients do not know (Argo's CRDs).
    pub fn api(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, resource)
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not retried, or the retry
    /// time runs out. Forbidden is retried with a warning pointing at the RBAC docs.
    pub async fn call<T, F, Fut>(&self, operation: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let started = Instant::now();
        let backoff = self.retry.backoff(started);
        let mut attempts = 0u32;
        loop {
            let err = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if !e.kind().is_retried() => return Err(e),
                Err(e) => e,
            };
            attempts += 1;
            let sleep = backoff.delay((attempts - 1).min(32));
            if backoff
                .deadline
                .is_some_and(|d| Instant::now() + sleep >= d)
            {
                return Err(Error::GaveUp {
                    operation: operation.to_string(),
                    attempts,
                    elapsed: started.elapsed(),
                    last: Box::new(err),
                });
            }
            if err.kind() == ErrorKind::Forbidden {
                tracing::warn!(operation, attempt = attempts, error = %err, "forbidden, retrying; see {RBAC_DOCS}");
            } else if attempts == 1 || attempts.is_multiple_of(20) {
                tracing::warn!(operation, attempt = attempts, error = %err, ?sleep, "transient API failure, retrying");
            }
            tokio::time::sleep(sleep).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            Status {
                code,
                reason: reason.to_string(),
                message: "whatever the server says".to_string(),
                ..Default::default()
            }
            .boxed(),
        )
    }

    #[test]
    fn classification_uses_codes_and_reasons_only() {
        let kind = |code, reason| Error::from(api_error(code, reason)).kind();
        assert_eq!(kind(409, "AlreadyExists"), ErrorKind::AlreadyExists);
        assert_eq!(kind(409, "Conflict"), ErrorKind::Conflict);
        assert_eq!(kind(404, "NotFound"), ErrorKind::NotFound);
        assert_eq!(kind(403, "Forbidden"), ErrorKind::Forbidden);
        for code in [408, 429, 500, 503, 504] {
            assert_eq!(kind(code, ""), ErrorKind::Transient, "{code}");
        }
        assert_eq!(kind(422, "Invalid"), ErrorKind::Rejected);
        assert!(ErrorKind::Forbidden.is_retried() && !ErrorKind::NotFound.is_retried());
    }

    #[test]
    fn errors_read_like_the_status() {
        let e = Error::from(api_error(403, "Forbidden"));
        assert_eq!(
            e.to_string(),
            "whatever the server says (Forbidden, HTTP 403)"
        );
    }
}
