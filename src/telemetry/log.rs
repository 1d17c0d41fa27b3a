//! Log lines exactly as Argo's executor writes them.
//!
//! Argo v3.7 and later (v4 included) log through Go's `log/slog` with the standard handlers and
//! an `argo=true` field on every line (`cmd/argoexec/commands/root.go`,
//! `util/logging/slog.go`):
//!
//! ```text
//! time=2026-01-02T03:04:05.123Z level=INFO msg="saved output artifact" argo=true artifact=out bytes=42
//! {"time":"2026-01-02T03:04:05.123456789Z","level":"INFO","msg":"saved output artifact","argo":true,"artifact":"out","bytes":42}
//! ```
//!
//! Text times have exactly three fractional digits, JSON times are RFC 3339 with trailing zeros
//! trimmed, both in UTC (a container without `/etc/localtime`). Text values are quoted the way
//! slog quotes them: only when empty or holding a space, `=`, `"` or a control character.
//!
//! Each line carries the fields of every span it happens in, outermost first, then its own: a
//! line logged while an artifact moves names the artifact and its key, whichever task logs it.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use chrono::{DateTime, Utc};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use super::trace::{self, TraceGuard, TraceSettings};

/// The environment variable that overrides `--loglevel` with `tracing` filter directives
/// (e.g. `ARGOEXEC_LOG=info,argoexec::storage=debug`).
pub const ENV_FILTER: &str = "ARGOEXEC_LOG";

/// `--log-format`: Argo accepts `text` and `json`, in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A `--loglevel` or `--log-format` Argo would refuse too.
#[derive(Debug, thiserror::Error)]
pub enum LogSetupError {
    #[error("invalid log level: {0}")]
    Level(String),
    #[error("invalid log type: {0}")]
    Format(String),
    #[cfg(feature = "otel")]
    #[error(transparent)]
    Trace(#[from] super::otel::TraceSetupError),
}

impl std::str::FromStr for LogFormat {
    type Err = LogSetupError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(LogSetupError::Format(s.to_string())),
        }
    }
}

/// `--loglevel` as Argo reads it: the legacy logrus names map onto slog's four levels.
pub fn parse_level(s: &str) -> Result<Level, LogSetupError> {
    match s.to_ascii_lowercase().as_str() {
        "trace" | "debug" => Ok(Level::DEBUG),
        "info" | "print" => Ok(Level::INFO),
        "warn" | "warning" => Ok(Level::WARN),
        "error" | "fatal" | "panic" => Ok(Level::ERROR),
        _ => Err(LogSetupError::Level(s.to_string())),
    }
}

/// The filter directive for `level`: `debug` is for our own lines only. Client libraries stay
/// at info, because the AWS SDK prints credential identities (access key ids) at debug;
/// `ARGOEXEC_LOG` overrides this for deliberate debugging of a library.
pub fn filter_directive(level: Level) -> String {
    if level == Level::DEBUG {
        "info,argoexec=debug".to_string()
    } else {
        level.as_str().to_ascii_lowercase()
    }
}

/// Installs the global subscriber: Argo-shaped lines on stderr at `level`, unless
/// `ARGOEXEC_LOG` gives filter directives; and the OTLP export of the trace when `trace` names
/// an endpoint (the returned guard flushes it). A gRPC exporter needs the Tokio runtime
/// entered.
pub fn init_logging(
    level: &str,
    format: &str,
    trace: &TraceSettings,
) -> Result<TraceGuard, LogSetupError> {
    let level = parse_level(level)?;
    let format: LogFormat = format.parse()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env(ENV_FILTER)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter_directive(level)));
    // The trace's spans are for the exporter alone: log lines keep their own fields.
    let lines = ArgoLayer::new(format, std::io::stderr)
        .with_filter(filter.and(filter_fn(|meta| meta.target() != trace::TARGET)));
    let subscriber = tracing_subscriber::registry().with(lines);
    #[cfg(feature = "otel")]
    {
        let (layer, export) = super::otel::start(trace)?.unzip();
        subscriber.with(layer).init();
        if export.is_some() {
            let endpoint = trace.endpoint_for_log();
            tracing::info!(
                protocol = trace.protocol(),
                endpoint,
                "Starting OTLP tracing exporter"
            );
        }
        Ok(TraceGuard(export))
    }
    #[cfg(not(feature = "otel"))]
    {
        subscriber.init();
        if trace.endpoint.is_some() {
            tracing::warn!("built without the `otel` feature: the trace is not exported");
        }
        Ok(TraceGuard::default())
    }
}

/// A `tracing` layer writing one Argo-shaped line per event to `writer`.
#[derive(Debug)]
pub struct ArgoLayer<W> {
    format: LogFormat,
    writer: W,
}

impl<W> ArgoLayer<W> {
    pub fn new(format: LogFormat, writer: W) -> Self {
        Self { format, writer }
    }
}

/// One field's value, kept typed so JSON gets numbers and booleans, not strings.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Str(String),
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
}

/// Named values in the order they were recorded; a later value of a name replaces the earlier
/// one in place (an event repeating its span's `artifact` does not print it twice).
#[derive(Debug, Default, Clone)]
pub struct Fields(Vec<(&'static str, FieldValue)>);

impl Fields {
    fn set(&mut self, name: &'static str, value: FieldValue) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn extend(&mut self, other: &Fields) {
        for (name, value) in &other.0 {
            self.set(name, value.clone());
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), FieldValue::Str(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), FieldValue::Str(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), FieldValue::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), FieldValue::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), FieldValue::F64(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), FieldValue::Str(value.to_string()));
    }
}

impl<S, W> Layer<S> for ArgoLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<Fields>() {
                    fields.extend(span_fields);
                }
            }
        }
        let mut own = Fields::default();
        event.record(&mut own);
        let message = match own.0.iter().position(|(n, _)| *n == "message") {
            Some(i) => match own.0.remove(i).1 {
                FieldValue::Str(s) => s,
                other => plain(&other),
            },
            None => String::new(),
        };
        fields.extend(&own);
        let line = format_line(
            self.format,
            Utc::now(),
            *event.metadata().level(),
            &message,
            &fields,
        );
        // One write per line, so concurrent tasks never interleave inside a line.
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

/// slog's level names; `tracing`'s TRACE is below slog's DEBUG and prints as slog prints it.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "DEBUG-4",
    }
}

/// One complete line, newline included.
pub fn format_line(
    format: LogFormat,
    time: DateTime<Utc>,
    level: Level,
    message: &str,
    fields: &Fields,
) -> String {
    let argo = ("argo", FieldValue::Bool(true));
    let all = std::iter::once((&argo.0, &argo.1)).chain(fields.0.iter().map(|(n, v)| (n, v)));
    let mut line = String::with_capacity(128);
    match format {
        LogFormat::Text => {
            let _ = write!(
                line,
                "time={} level={} msg={}",
                time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                level_name(level),
                text_value(message)
            );
            for (name, value) in all {
                let _ = write!(line, " {}={}", text_value(name), text_field(value));
            }
        }
        LogFormat::Json => {
            let _ = write!(
                line,
                "{{\"time\":\"{}\",\"level\":\"{}\",\"msg\":{}",
                rfc3339_nano(time),
                level_name(level),
                json_string(message)
            );
            for (name, value) in all {
                let _ = write!(line, ",{}:{}", json_string(name), json_field(value));
            }
            line.push('}');
        }
    }
    line.push('\n');
    line
}

/// Go's `time.RFC3339Nano`: nanoseconds with trailing zeros (and a bare dot) removed.
fn rfc3339_nano(time: DateTime<Utc>) -> String {
    let nanos = format!("{:09}", time.timestamp_subsec_nanos());
    let nanos = nanos.trim_end_matches('0');
    let dot = if nanos.is_empty() { "" } else { "." };
    format!("{}{dot}{nanos}Z", time.format("%Y-%m-%dT%H:%M:%S"))
}

fn plain(value: &FieldValue) -> String {
    match value {
        FieldValue::Str(s) => s.clone(),
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::I64(n) => n.to_string(),
        FieldValue::U64(n) => n.to_string(),
        FieldValue::F64(f) => go_float(*f),
    }
}

fn text_field(value: &FieldValue) -> String {
    match value {
        FieldValue::Str(s) => text_value(s),
        other => plain(other),
    }
}

fn json_field(value: &FieldValue) -> String {
    match value {
        FieldValue::Str(s) => json_string(s),
        FieldValue::F64(f) if !f.is_finite() => json_string(&go_float(*f)),
        other => plain(other),
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// slog's text quoting: as is when safe, else Go-quoted.
fn text_value(s: &str) -> String {
    let unsafe_char =
        |c: char| c == ' ' || c == '=' || c == '"' || c.is_whitespace() || c.is_control();
    if !s.is_empty() && !s.chars().any(unsafe_char) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`, which slog uses for floats: the shortest
/// representation, with an exponent below 1e-4 and from 1e21 on.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let magnitude = f.abs();
    if magnitude != 0.0 && !(1e-4..1e21).contains(&magnitude) {
        let s = format!("{f:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    format!("{f}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::sync::{Arc, Mutex};

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("time")
            + chrono::Duration::nanoseconds(123_400_000)
    }

    fn fields(pairs: &[(&'static str, FieldValue)]) -> Fields {
        let mut f = Fields::default();
        for (n, v) in pairs {
            f.set(n, v.clone());
        }
        f
    }

    #[test]
    fn text_lines_are_slog_text_lines() {
        let f = fields(&[
            ("artifact", FieldValue::Str("out".into())),
            ("key", FieldValue::Str("wf/pod/out.tgz".into())),
            ("bytes", FieldValue::U64(42)),
            ("seconds", FieldValue::F64(1.5)),
            ("error", FieldValue::Str("a \"b\"=c\nd".into())),
            ("empty", FieldValue::Str(String::new())),
        ]);
        assert_eq!(
            format_line(
                LogFormat::Text,
                at(),
                Level::INFO,
                "saved output artifact",
                &f
            ),
            "time=2026-01-02T03:04:05.123Z level=INFO msg=\"saved output artifact\" argo=true \
             artifact=out key=wf/pod/out.tgz bytes=42 seconds=1.5 error=\"a \\\"b\\\"=c\\nd\" \
             empty=\"\"\n"
        );
        assert_eq!(
            format_line(
                LogFormat::Text,
                at(),
                Level::WARN,
                "done",
                &Fields::default()
            ),
            "time=2026-01-02T03:04:05.123Z level=WARN msg=done argo=true\n"
        );
    }

    #[test]
    fn json_lines_are_slog_json_lines() {
        let f = fields(&[
            ("artifact", FieldValue::Str("out".into())),
            ("bytes", FieldValue::U64(42)),
            ("retried", FieldValue::Bool(false)),
            ("delta", FieldValue::I64(-3)),
        ]);
        let line = format_line(LogFormat::Json, at(), Level::ERROR, "x \"y\"", &f);
        assert_eq!(
            line,
            "{\"time\":\"2026-01-02T03:04:05.1234Z\",\"level\":\"ERROR\",\"msg\":\"x \\\"y\\\"\",\
             \"argo\":true,\"artifact\":\"out\",\"bytes\":42,\"retried\":false,\"delta\":-3}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["msg"], "x \"y\"");
    }

    #[test]
    fn json_times_trim_trailing_zeros_like_go() {
        let whole = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("t");
        assert_eq!(rfc3339_nano(whole), "2026-01-02T03:04:05Z");
        assert_eq!(
            rfc3339_nano(whole + chrono::Duration::nanoseconds(500_000_000)),
            "2026-01-02T03:04:05.5Z"
        );
        assert_eq!(
            rfc3339_nano(whole + chrono::Duration::nanoseconds(7)),
            "2026-01-02T03:04:05.000000007Z"
        );
    }

    #[test]
    fn floats_print_as_go_prints_them() {
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn levels_and_formats_parse_as_argo_parses_them() {
        assert_eq!(parse_level("Debug").expect("level"), Level::DEBUG);
        assert_eq!(parse_level("fatal").expect("level"), Level::ERROR);
        assert_eq!(
            parse_level("loud").expect_err("bad").to_string(),
            "invalid log level: loud"
        );
        assert_eq!(filter_directive(Level::DEBUG), "info,argoexec=debug");
        assert_eq!(filter_directive(Level::WARN), "warn");
        assert_eq!("JSON".parse::<LogFormat>().expect("fmt"), LogFormat::Json);
        assert_eq!(
            "yaml".parse::<LogFormat>().expect_err("bad").to_string(),
            "invalid log type: yaml"
        );
    }

    /// A writer collecting every line, for the layer test.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn lines_carry_the_fields_of_their_spans_outermost_first() {
        let lines = Lines::default();
        let subscriber =
            tracing_subscriber::registry().with(ArgoLayer::new(LogFormat::Json, lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let outer =
                tracing::info_span!("artifact", artifact = "out", key = tracing::field::Empty);
            let _outer = outer.enter();
            outer.record("key", "wf/out.tgz");
            let inner = tracing::info_span!("part", part = 3u64);
            let _inner = inner.enter();
            tracing::warn!(
                artifact = "out",
                attempt = 2u64,
                "transient failure, retrying"
            );
        });
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf8");
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON line");
        let keys: Vec<&str> = line
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        // serde_json sorts object keys; the order on the line is checked on the raw text.
        assert!(keys.contains(&"time"), "{text}");
        assert!(
            text.contains(
                "\"level\":\"WARN\",\"msg\":\"transient failure, retrying\",\"argo\":true,\
                 \"artifact\":\"out\",\"key\":\"wf/out.tgz\",\"part\":3,\"attempt\":2}"
            ),
            "{text}"
        );
    }
}
