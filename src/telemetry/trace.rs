//! The spans of Argo 4.1's executor trace ("Workflow Tracing"), with Argo's names and parents:
//!
//! ```text
//! runInitContainer ─┬─ stageFiles
//!                   └─ loadArtifacts ── loadArtifact ── unarchiveArtifact
//! runMainContainer (the emissary; its child gets TRACEPARENT for this span)
//! runWaitContainer ─┬─ createTaskResult
//!                   ├─ waitWorkload
//!                   ├─ captureScriptResult
//!                   ├─ saveArtifacts ── saveArtifact ── archiveArtifact
//!                   ├─ saveLogs ── saveContainerLogs
//!                   ├─ patchTaskResult
//!                   └─ patchTaskResultLabels
//! ```
//!
//! (`runSupervisorContainer` in place of both roots in the init-less layout.) The root continues
//! the controller's trace (W3C `TRACEPARENT` in the environment) when spans are exported
//! ([`super::otel`]). Each artifact span also carries our figures: `bytes`, `duration_seconds`,
//! `parts`, `retries`.
//!
//! These are plain `tracing` spans with [`TARGET`]: only the OTLP layer listens to it, so the
//! log lines are unchanged, and without an exporter every one of them is disabled at its
//! callsite (`Span::none()`, nothing recorded).

use tracing::Span;
use tracing::field::Empty;

use std::path::Path;
use std::time::Duration;

use super::Transfer;
pub use argoexec::observe::trace::TARGET;

/// The standard variables that turn the export on and carry the controller's trace.
pub mod env {
    pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    pub const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    pub const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
    /// W3C trace context, as Argo's controller injects it (the header names, upper-cased).
    pub const TRACEPARENT: &str = "TRACEPARENT";
    pub const TRACESTATE: &str = "TRACESTATE";
}

/// What decides whether and how spans are exported, looked up from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceSettings {
    /// The traces endpoint, else the generic one; `None` = no export.
    pub endpoint: Option<String>,
    /// The traces protocol, else the generic one; see [`TraceSettings::protocol`].
    pub protocol: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl TraceSettings {
    /// Reads the settings through `lookup` (the process environment in the binary).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: [&str; 2]| names.into_iter().find_map(&lookup);
        Self {
            endpoint: first([env::TRACES_ENDPOINT, env::ENDPOINT]),
            protocol: first([env::TRACES_PROTOCOL, env::PROTOCOL]).filter(|p| !p.is_empty()),
            traceparent: lookup(env::TRACEPARENT),
            tracestate: lookup(env::TRACESTATE),
        }
    }

    /// The protocol to export with: gRPC unless set (Argo's default, where the OTel SDKs
    /// default to `http/protobuf`).
    pub fn protocol(&self) -> &str {
        self.protocol.as_deref().unwrap_or("grpc")
    }

    /// The endpoint as it may be logged: without a password in it.
    pub fn endpoint_for_log(&self) -> String {
        let endpoint = self.endpoint.clone().unwrap_or_default();
        match url::Url::parse(&endpoint) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("redacted"));
                url.to_string()
            }
            _ => endpoint,
        }
    }
}

/// What must be flushed before the process exits: the batched spans, when exporting.
#[derive(Debug, Default)]
pub struct TraceGuard(#[cfg(feature = "otel")] pub(super) Option<super::otel::TraceExport>);

impl TraceGuard {
    /// Sends what is batched and stops the exporter (nothing to do when not exporting).
    pub fn flush(self) {
        #[cfg(feature = "otel")]
        if let Some(export) = self.0 {
            export.shutdown();
        }
    }
}

/// `runInitContainer`: the root of `init`'s trace; `name` and `namespace` (the workflow's) are
/// recorded by the command.
pub fn run_init_container() -> Span {
    continue_trace(
        tracing::info_span!(target: TARGET, "runInitContainer", name = Empty, namespace = Empty),
    )
}

/// `runWaitContainer`: the root of `wait`'s trace.
pub fn run_wait_container() -> Span {
    continue_trace(
        tracing::info_span!(target: TARGET, "runWaitContainer", name = Empty, namespace = Empty),
    )
}

/// `runMainContainer`: the root of the emissary's trace, in the user's container.
pub fn run_main_container() -> Span {
    continue_trace(
        tracing::info_span!(target: TARGET, "runMainContainer", name = Empty, namespace = Empty),
    )
}

/// The current span's W3C context as environment variables for a child process (`TRACEPARENT`,
/// `TRACESTATE`), so a workload that traces itself nests under it, as under Argo's emissary.
/// Empty when not exporting: the child then inherits the controller's context unchanged.
#[cfg(feature = "otel")]
pub fn child_environment() -> Vec<(&'static str, String)> {
    super::otel::current_context_as_env()
}

#[cfg(not(feature = "otel"))]
pub fn child_environment() -> Vec<(&'static str, String)> {
    Vec::new()
}

/// `runSupervisorContainer`: the root of the init-less layout's one executor container.
pub fn run_supervisor_container() -> Span {
    continue_trace(
        tracing::info_span!(target: TARGET, "runSupervisorContainer", name = Empty, namespace = Empty),
    )
}

#[cfg(feature = "otel")]
fn continue_trace(root: Span) -> Span {
    super::otel::continue_remote_trace(&root);
    root
}

#[cfg(not(feature = "otel"))]
fn continue_trace(root: Span) -> Span {
    root
}

/// `stageFiles`: writing the script or manifest.
pub fn stage_files() -> Span {
    tracing::info_span!(target: TARGET, "stageFiles")
}

/// `loadArtifacts`: every input artifact.
pub fn load_artifacts() -> Span {
    tracing::info_span!(target: TARGET, "loadArtifacts")
}

/// `loadArtifact`: one input; `path` (Argo's attribute) and the figures are recorded when it
/// is placed ([`record_load`]).
pub fn load_artifact(artifact: &str) -> Span {
    tracing::info_span!(target: TARGET, "loadArtifact", artifact, path = Empty, key = Empty,
        bytes = Empty, duration_seconds = Empty, retries = Empty)
}

/// `saveArtifacts`: every output artifact.
pub fn save_artifacts() -> Span {
    tracing::info_span!(target: TARGET, "saveArtifacts")
}

/// `saveArtifact`: one output, with its figures once uploaded ([`record_save`]).
pub fn save_artifact(artifact: &str) -> Span {
    tracing::info_span!(target: TARGET, "saveArtifact", artifact, key = Empty, bytes = Empty,
        duration_seconds = Empty, parts = Empty, retries = Empty)
}

/// `saveLogs`: the main containers' logs (`archiveLogs`).
pub fn save_logs() -> Span {
    tracing::info_span!(target: TARGET, "saveLogs")
}

/// `saveContainerLogs`: one container's log, with its upload's figures.
pub fn save_container_logs(container: &str) -> Span {
    tracing::info_span!(target: TARGET, "saveContainerLogs", container_name = container,
        key = Empty, bytes = Empty, duration_seconds = Empty, parts = Empty, retries = Empty)
}

/// `captureScriptResult`: `outputs.result` from main's stdout.
pub fn capture_script_result() -> Span {
    tracing::info_span!(target: TARGET, "captureScriptResult")
}

/// `waitWorkload`: waiting for the main container(s) to exit.
pub fn wait_workload() -> Span {
    tracing::info_span!(target: TARGET, "waitWorkload")
}

/// Puts a placed input's figures on its `loadArtifact` span.
pub fn record_load(
    span: &Span,
    path: &Path,
    key: &str,
    bytes: u64,
    elapsed: Duration,
    retries: u64,
) {
    span.record("path", path.display().to_string());
    span.record("key", key);
    span.record("bytes", bytes);
    span.record("duration_seconds", elapsed.as_secs_f64());
    span.record("retries", retries);
}

/// Puts an upload's figures on its `saveArtifact` or `saveContainerLogs` span.
pub fn record_save(span: &Span, transfer: &Transfer) {
    span.record("key", transfer.key.as_str());
    span.record("bytes", transfer.bytes);
    span.record("duration_seconds", transfer.elapsed.as_secs_f64());
    span.record("retries", transfer.retries);
    if let Some(parts) = transfer.parts {
        span.record("parts", parts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_endpoint_is_never_logged() {
        let settings = TraceSettings {
            endpoint: Some("https://user:s3cret@collector:4318".to_string()),
            ..Default::default()
        };
        let logged = settings.endpoint_for_log();
        assert!(!logged.contains("s3cret"), "{logged}");
        assert!(
            logged.starts_with("https://user:redacted@collector:4318"),
            "{logged}"
        );
    }
}
