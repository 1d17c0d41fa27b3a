//! Everything the drivers are tuned with, passed to [`super::open`] as one value.
//!
//! The library never reads the process environment: a controller or an artifact server builds
//! a [`StorageConfig`] with its own settings (one per repository if it likes), and the
//! executor binary reads a pod's variables into one through
//! [`crate::transfer::TransferConfig::from_env`].

use std::time::SystemTime;

#[cfg(feature = "azure")]
use super::azure::AzureOptions;
#[cfg(feature = "gcs")]
use super::gcs::GcsOptions;
#[cfg(feature = "git")]
use super::git::known_hosts::KnownHostsFiles;
use super::oss::AlibabaEnv;
use super::retry::Backoff;
use super::timeouts::TimeoutOverrides;

/// How the drivers connect, retry and check. `Default` is the executor's behaviour with none
/// of its variables set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageConfig {
    /// Retries of every driver call (default Argo's executor backoff: 5 attempts, 1 s, x1.6,
    /// jitter 0.5; `EXECUTOR_RETRY_BACKOFF_*`). No memory cost.
    pub backoff: Backoff,
    /// The step's deadline (`ARGO_DEADLINE`; default none): no retry starts after it and a git
    /// clone is stopped at it.
    pub deadline: Option<SystemTime>,
    /// Connect and read timeouts of every driver (`ARGOEXEC_CONNECT_TIMEOUT`,
    /// `ARGOEXEC_READ_TIMEOUT`; default each driver's own).
    pub timeouts: TimeoutOverrides,
    /// S3 multipart uploads ask the server to verify and keep a whole-object CRC32C
    /// (`ARGOEXEC_S3_FULL_OBJECT_CHECKSUM`; default `None`: on for AWS endpoints only, since
    /// not every S3-compatible server knows it). No memory cost.
    pub s3_full_object_checksum: Option<bool>,
    /// The variables of Alibaba's credential chain for OSS `useSDKCreds` (default none set).
    pub oss_credentials: AlibabaEnv,
    /// The GCS driver's endpoint and chunk size (`STORAGE_EMULATOR_HOST`,
    /// `ARGOEXEC_GCS_UPLOAD_CHUNK_MIB`; see [`GcsOptions`]).
    #[cfg(feature = "gcs")]
    pub gcs: GcsOptions,
    /// The Azure driver's listing page size and the variables `useSDKCreds` picks its
    /// credential from (see [`AzureOptions`]).
    #[cfg(feature = "azure")]
    pub azure: AzureOptions,
    /// The known_hosts files Git over SSH checks host keys against (`SSH_KNOWN_HOSTS`, else
    /// `$HOME/.ssh/known_hosts` and `/etc/ssh/ssh_known_hosts`, as go-git). No memory cost
    /// beyond the files' lines during a clone.
    #[cfg(feature = "git")]
    pub ssh_known_hosts: KnownHostsFiles,
}

impl StorageConfig {
    /// Every setting from the executor's variables, read through `get` (the process
    /// environment in the binary: `StorageConfig::from_lookup(|k| std::env::var(k).ok())`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let deadline = get(crate::contract::env::DEADLINE)
            .and_then(|v| crate::contract::parse_deadline(&v).ok().flatten());
        let s3_full_object_checksum = match get("ARGOEXEC_S3_FULL_OBJECT_CHECKSUM").as_deref() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        };
        Self {
            backoff: Backoff::from_lookup(&get),
            deadline,
            timeouts: TimeoutOverrides::from_lookup(&get),
            s3_full_object_checksum,
            oss_credentials: AlibabaEnv::from_lookup(&get),
            #[cfg(feature = "gcs")]
            gcs: GcsOptions::from_lookup(&get),
            #[cfg(feature = "azure")]
            azure: AzureOptions {
                sdk_credentials: super::azure::AzureSdkEnv::from_lookup(&get),
                ..AzureOptions::default()
            },
            #[cfg(feature = "git")]
            ssh_known_hosts: KnownHostsFiles::new(
                get("SSH_KNOWN_HOSTS").as_deref(),
                get("HOME").map(std::path::PathBuf::from).as_deref(),
            ),
        }
    }

    /// Retries every call per `backoff` (its own deadline is replaced by this config's).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// No retry starts after `deadline`, and a git clone stops at it.
    pub fn with_deadline(mut self, deadline: SystemTime) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Every driver's connect and read timeouts overridden as `timeouts` says.
    pub fn with_timeouts(mut self, timeouts: TimeoutOverrides) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// S3 multipart uploads with (`true`) or without a whole-object CRC32C, whatever the
    /// endpoint.
    pub fn with_s3_full_object_checksum(mut self, on: bool) -> Self {
        self.s3_full_object_checksum = Some(on);
        self
    }

    /// Alibaba's credential chain for OSS `useSDKCreds` reads these variables.
    pub fn with_oss_credentials(mut self, env: AlibabaEnv) -> Self {
        self.oss_credentials = env;
        self
    }

    /// The GCS driver's endpoint and sizes.
    #[cfg(feature = "gcs")]
    pub fn with_gcs(mut self, options: GcsOptions) -> Self {
        self.gcs = options;
        self
    }

    /// The Azure driver's page size and `useSDKCreds` variables.
    #[cfg(feature = "azure")]
    pub fn with_azure(mut self, options: AzureOptions) -> Self {
        self.azure = options;
        self
    }

    /// The retry policy of every driver call, bounded by the deadline.
    pub fn retry_policy(&self) -> Backoff {
        self.backoff.clone().until(self.deadline)
    }
}
