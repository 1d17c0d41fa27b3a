//! What the executor tells its operators: log lines in the shape of Argo's executor, and the
//! figures of every artifact transfer (a final log line each, and optionally a Prometheus
//! textfile).
//!
//! * [`log`]: `--loglevel` and `--log-format` as Argo reads them, and a `tracing` layer writing
//!   Go `log/slog` lines (text or JSON) with the fields of every enclosing span.
//! * [`metrics`]: one [`Transfer`] per artifact (the library's figures, logged as the
//!   artifact's final line) written to `ARGOEXEC_METRICS_FILE` when set.
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
