//! OTLP export of the executor's trace ([`super::trace`]), as Argo 4.1's executor does it:
//!
//! * on only when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set
//!   (else no exporter, no layer, and every trace span is disabled where it is written);
//! * gRPC unless `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (or `OTEL_EXPORTER_OTLP_PROTOCOL`) says
//!   `http/...` (Argo keeps gRPC as its default); the exporter reads the other standard
//!   `OTEL_EXPORTER_OTLP_*` variables (headers, timeout, compression, insecure) itself;
//! * continuing the controller's trace: the W3C `traceparent`/`tracestate` the controller puts
//!   in the pod's environment as `TRACEPARENT`/`TRACESTATE`;
//! * resource `service.name=argoexec` (over `OTEL_SERVICE_NAME`, as Argo's), plus
//!   `OTEL_RESOURCE_ATTRIBUTES`.
//!
//! Spans are batched in memory and sent at [`TraceExport::shutdown`], which the binary calls
//! before it exits.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use super::trace::{TARGET, TraceSettings, env};

/// The service name Argo's executor reports.
const SERVICE_NAME: &str = "argoexec";

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceSetupError {
    /// Argo refuses a protocol other than `grpc` and `http/...` too.
    #[error("OTEL tracing protocol invalid: {0}")]
    Protocol(String),
    #[error("cannot start the OTLP trace exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The running export: the provider that batches the spans, to flush before exit.
#[derive(Debug)]
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// Sends the spans still batched and stops the exporter; failures are logged, never fatal
    /// (a collector that is down must not fail a step).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "failed to flush the trace to the OTLP endpoint");
        }
    }
}

/// The parent of every trace root: the controller's span from `TRACEPARENT`, when valid.
static REMOTE_PARENT: OnceLock<opentelemetry::Context> = OnceLock::new();

/// Starts the exporter when `settings` name an endpoint, and returns the layer that feeds it
/// (listening to [`TARGET`] only). `None` when tracing is off. A gRPC exporter must be built
/// inside the Tokio runtime, which must outlive [`TraceExport::shutdown`].
pub fn start<S>(
    settings: &TraceSettings,
) -> Result<Option<(impl Layer<S> + use<S>, TraceExport)>, TraceSetupError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if settings.endpoint.is_none() {
        return Ok(None);
    }
    let exporter = match settings.protocol() {
        "grpc" => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?,
        p if p.starts_with("http/") => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()?,
        other => return Err(TraceSetupError::Protocol(other.to_string())),
    };
    let resource = Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build();
    let _ = REMOTE_PARENT.set(remote_parent(settings));
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SERVICE_NAME))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_filter(filter_fn(|meta| meta.target() == TARGET));
    Ok(Some((layer, TraceExport { provider })))
}

/// The controller's span context carried by `TRACEPARENT`/`TRACESTATE` (an empty context when
/// absent or malformed: the trace then starts here).
fn remote_parent(settings: &TraceSettings) -> opentelemetry::Context {
    let carrier: HashMap<String, String> = [
        ("traceparent", &settings.traceparent),
        ("tracestate", &settings.tracestate),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name.to_string(), value.clone()?)))
    .collect();
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `root` a child of the controller's span (a no-op when not exporting).
pub(super) fn continue_remote_trace(root: &Span) {
    if let Some(parent) = REMOTE_PARENT.get() {
        // Fails only when the span was already started or is disabled: nothing to continue.
        let _ = root.set_parent(parent.clone());
    }
}

/// The current span's context in `TRACEPARENT`/`TRACESTATE` form (none when it is not exported).
pub(super) fn current_context_as_env() -> Vec<(&'static str, String)> {
    let span = Span::current();
    if span.is_disabled() {
        return Vec::new();
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    [
        ("traceparent", env::TRACEPARENT),
        ("tracestate", env::TRACESTATE),
    ]
    .into_iter()
    .filter_map(|(header, var)| Some((var, carrier.remove(header)?)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    fn settings(vars: &[(&str, &str)]) -> TraceSettings {
        TraceSettings::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn the_traces_variables_win_over_the_generic_ones() {
        let s = settings(&[
            (env::ENDPOINT, "http://generic:4317"),
            (env::TRACES_ENDPOINT, "http://traces:4318/v1/traces"),
            (env::PROTOCOL, "grpc"),
            (env::TRACES_PROTOCOL, "http/protobuf"),
        ]);
        assert_eq!(s.endpoint.as_deref(), Some("http://traces:4318/v1/traces"));
        assert_eq!(s.protocol.as_deref(), Some("http/protobuf"));
    }

    #[test]
    fn no_endpoint_means_no_exporter_even_with_a_trace_context() {
        let s = settings(&[
            (env::PROTOCOL, "http/protobuf"),
            (
                env::TRACEPARENT,
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]);
        let started = start::<tracing_subscriber::Registry>(&s).expect("no error");
        assert!(started.is_none());
    }

    #[test]
    fn an_unknown_protocol_is_refused_as_argo_refuses_it() {
        let s = settings(&[
            (env::ENDPOINT, "http://127.0.0.1:1"),
            (env::PROTOCOL, "udp"),
        ]);
        let err = start::<tracing_subscriber::Registry>(&s)
            .err()
            .expect("refused");
        assert_eq!(err.to_string(), "OTEL tracing protocol invalid: udp");
    }

    #[test]
    fn the_parent_is_the_controllers_span() {
        let s = settings(&[
            (
                env::TRACEPARENT,
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (env::TRACESTATE, "argo=1"),
        ]);
        let cx = remote_parent(&s);
        let span = cx.span();
        let parent = span.span_context();
        assert!(parent.is_remote());
        assert_eq!(
            parent.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(parent.span_id().to_string(), "b7ad6b7169203331");
        assert_eq!(parent.trace_state().get("argo"), Some("1"));
        assert!(
            !remote_parent(&TraceSettings::default())
                .span()
                .span_context()
                .is_valid()
        );
    }
}
