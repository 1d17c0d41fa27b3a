//! What the executor tells its operators: log lines in the shape of Argo's executor, and the
//! figures of every artifact transfer (a final log line each, and optionally a Prometheus
//! textfile).
//!
//! * [`log`]: `--loglevel` and `--log-format` as Argo reads them, and a `tracing` layer writing
//!   Go `log/slog` lines (text or JSON) with the fields of every enclosing span.
//! * [`metrics`]: one [`metrics::Transfer`] per artifact, logged as the artifact's final line
//!   and written to `ARGOEXEC_METRICS_FILE` when set.
//! * [`trace`]: the spans of Argo's executor trace, exported over OTLP by `otel` (feature
//!   `otel`) when the standard `OTEL_EXPORTER_OTLP_*` variables are set.

pub mod log;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
pub mod trace;

pub use log::{LogFormat, LogSetupError, init_logging};
pub use metrics::{Direction, Transfer};
pub use trace::{TraceGuard, TraceSettings};

/// The span every line about one artifact is logged in: its name, and its key once known
/// (`Span::record("key", ..)`), so retries and progress lines name the artifact they are about.
pub fn artifact_span(name: &str) -> tracing::Span {
    tracing::info_span!("artifact", artifact = %name, key = tracing::field::Empty)
}
