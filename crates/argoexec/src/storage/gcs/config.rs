//! From an Argo `gcs:` location and its mounted secret to the driver's endpoint, credentials
//! and tuning.

use google_cloud_auth::credentials::{self, Credentials};

use crate::model::GcsArtifact;
use crate::storage::retry::Backoff;
use crate::storage::{Error, Result, Secrets};

const GOOGLE_ENDPOINT: &str = "https://storage.googleapis.com";
const MIB: usize = 1 << 20;
/// Resumable upload chunks must be multiples of this (a GCS rule).
pub const UPLOAD_QUANTUM: usize = 256 * 1024;
/// Bytes per resumable upload request, as Argo's Go writer (`ChunkSize`, 16 MiB).
const DEFAULT_UPLOAD_CHUNK: usize = 16 * MIB;

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://storage.googleapis.com`, authenticated.
    Google,
    /// An emulator (fake-gcs-server, the gcloud emulator) named by `STORAGE_EMULATOR_HOST`, as a
    /// URL (`http://127.0.0.1:4443`) or a bare `host:port` (taken as plain HTTP, as Google's
    /// own clients do).
    Emulator(String),
}

impl Endpoint {
    pub fn from_emulator_host(host: Option<String>) -> Self {
        match host.map(|h| h.trim().trim_end_matches('/').to_string()) {
            Some(h) if h.contains("://") => Self::Emulator(h),
            Some(h) if !h.is_empty() => Self::Emulator(format!("http://{h}")),
            _ => Self::Google,
        }
    }

    /// The base URL of the JSON API.
    pub fn url(&self) -> &str {
        match self {
            Self::Google => GOOGLE_ENDPOINT,
            Self::Emulator(url) => url,
        }
    }
}

/// How the driver talks to GCS. The defaults suit production; tests lower the sizes so small
/// objects exercise the same code paths as large ones.
#[derive(Debug, Clone, PartialEq)]
pub struct GcsOptions {
    pub endpoint: Endpoint,
    /// Bytes a resumable upload sends per request (`ARGOEXEC_GCS_UPLOAD_CHUNK_MIB`, default
    /// 16), rounded up to a multiple of 256 KiB. Memory: the transfer engine's parts are cut
    /// to this size and paid from its upload budget, so it must fit that budget (an upload
    /// whose chunk does not is refused before it starts).
    pub upload_chunk: usize,
    /// Objects per listing page; `None` = the service's default (1,000).
    pub list_page_size: Option<u32>,
    /// How a failed request of a resumable upload is retried (within its session).
    pub upload_backoff: Backoff,
}

/// Argo's GCS backoff: 5 attempts, 2 s, x2, jitter 0.1, at most 10 minutes apart.
fn argo_backoff() -> Backoff {
    Backoff {
        steps: 5,
        initial: std::time::Duration::from_secs(2),
        factor: 2.0,
        jitter: 0.1,
        cap: std::time::Duration::from_secs(600),
        deadline: None,
    }
}

impl Default for GcsOptions {
    fn default() -> Self {
        Self {
            endpoint: Endpoint::Google,
            upload_chunk: DEFAULT_UPLOAD_CHUNK,
            list_page_size: None,
            upload_backoff: argo_backoff(),
        }
    }
}

impl GcsOptions {
    /// Defaults, with the endpoint from `STORAGE_EMULATOR_HOST` and the chunk size from
    /// `ARGOEXEC_GCS_UPLOAD_CHUNK_MIB`, read through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let chunk_mib = get("ARGOEXEC_GCS_UPLOAD_CHUNK_MIB")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&m| m > 0);
        Self {
            endpoint: Endpoint::from_emulator_host(get("STORAGE_EMULATOR_HOST")),
            upload_chunk: chunk_mib.map_or(DEFAULT_UPLOAD_CHUNK, |m| m.min(1024) * MIB),
            ..Self::default()
        }
    }

    /// The chunk size GCS accepts: a non-zero multiple of 256 KiB.
    pub fn upload_chunk(&self) -> usize {
        self.upload_chunk.max(1).div_ceil(UPLOAD_QUANTUM) * UPLOAD_QUANTUM
    }
}

/// Argo's credentials: the service-account JSON key from `serviceAccountKeySecret`, else
/// Application Default Credentials (workload identity, metadata server,
/// `GOOGLE_APPLICATION_CREDENTIALS`). An emulator without a key gets anonymous requests. A key
/// is used even against an emulator: it signs its tokens locally, so the secret is checked
/// the same way everywhere.
pub fn credentials(
    loc: &GcsArtifact,
    secrets: &Secrets,
    endpoint: &Endpoint,
) -> Result<Credentials> {
    if let Some(key) = secrets.read_opt(loc.service_account_key_secret.as_ref())? {
        // A syntax error names a line and column, never the content.
        let json: serde_json::Value = serde_json::from_str(key.expose()).map_err(|e| {
            Error::config(format!(
                "the GCS service account key in {key} is not JSON: {e}"
            ))
        })?;
        return credentials::service_account::Builder::new(json)
            .build()
            .map_err(|e| {
                Error::config(format!(
                    "the GCS service account key in {key} is not usable: {e}"
                ))
            });
    }
    match endpoint {
        Endpoint::Emulator(_) => Ok(credentials::anonymous::Builder::new().build()),
        Endpoint::Google => credentials::Builder::default().build().map_err(|e| {
            Error::config(format!(
                "no GCS credentials: no serviceAccountKeySecret and no Application Default Credentials: {e}"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_host_is_a_url_or_host_port() {
        assert_eq!(Endpoint::from_emulator_host(None), Endpoint::Google);
        assert_eq!(
            Endpoint::from_emulator_host(Some(" ".into())),
            Endpoint::Google
        );
        assert_eq!(
            Endpoint::from_emulator_host(Some("127.0.0.1:4443".into())).url(),
            "http://127.0.0.1:4443"
        );
        assert_eq!(
            Endpoint::from_emulator_host(Some("https://gcs.local:8443/".into())).url(),
            "https://gcs.local:8443"
        );
    }

    #[test]
    fn upload_chunks_are_whole_quanta() {
        let mut o = GcsOptions::default();
        assert_eq!(o.upload_chunk(), 16 << 20);
        o.upload_chunk = 1;
        assert_eq!(o.upload_chunk(), UPLOAD_QUANTUM);
        o.upload_chunk = UPLOAD_QUANTUM + 1;
        assert_eq!(o.upload_chunk(), 2 * UPLOAD_QUANTUM);
    }

    #[test]
    fn a_bad_key_names_the_secret_not_its_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let roots = crate::contract::Roots::at(dir.path());
        let p = roots.secret("gcs", "key.json");
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, "not-json-s3cr3t").expect("write");
        let loc = GcsArtifact {
            bucket: "b".into(),
            service_account_key_secret: Some(crate::model::SecretKeySelector {
                name: "gcs".into(),
                key: "key.json".into(),
                optional: None,
            }),
            key: "k".into(),
        };
        let e = credentials(&loc, &Secrets::new(roots), &Endpoint::Google).expect_err("not json");
        let text = e.to_string();
        assert!(
            text.contains("gcs/key.json") && !text.contains("s3cr3t"),
            "{text}"
        );
    }
}
