//! An OTLP trace receiver on loopback: accepts `ExportTraceServiceRequest`s over HTTP
//! (`POST /v1/traces`, `application/x-protobuf`) and over gRPC (`TraceService/Export` on h2c),
//! decodes them with the protocol's own generated types, and keeps every span, flattened.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

/// The gRPC method of the OTLP trace service.
pub const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// One received span.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    /// Lower-case hex, as in a `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root.
    pub parent_span_id: String,
    /// Every attribute, its value as text.
    pub attributes: BTreeMap<String, String>,
    /// The resource's attributes (`service.name`...), as text.
    pub resource: BTreeMap<String, String>,
    /// The request path it came by: `/v1/traces` or [`GRPC_PATH`].
    pub path: String,
}

type Body = StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtlpReceiver {
    /// A receiver on a free loopback port.
    pub async fn start() -> Self {
        Self::start_at("127.0.0.1:0").await.expect("bind")
    }

    /// A receiver on `addr` (a fixed port: the exporters' default ones).
    pub async fn start_at(addr: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let spans = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (shared, accepted) = (Arc::clone(&spans), Arc::clone(&connections));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let spans = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let spans = Arc::clone(&spans);
                        async move { Ok::<_, Infallible>(answer(&spans, req).await) }
                    });
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            spans,
            connections,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Connections accepted so far, whatever they sent.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn answer(spans: &Mutex<Vec<ReceivedSpan>>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let body = super::body_bytes(req.into_body()).await;
    let (message, grpc) = match path.as_str() {
        "/v1/traces" => (body, false),
        // A gRPC message: a compression flag, a 4-byte length, the message.
        GRPC_PATH if body.len() >= 5 && body[0] == 0 => (body.slice(5..), true),
        _ => return reply(404, None, Vec::new()),
    };
    let Ok(request) = ExportTraceServiceRequest::decode(message) else {
        return reply(400, None, Vec::new());
    };
    spans
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(flatten(&request, &path));
    // Both answer an empty ExportTraceServiceResponse (zero bytes of protobuf).
    if grpc {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        reply(200, Some(trailers), vec![0, 0, 0, 0, 0])
    } else {
        reply(200, None, Vec::new())
    }
}

/// A response; with `trailers` it is a gRPC one (`application/grpc`, trailers after the body).
fn reply(status: u16, trailers: Option<http::HeaderMap>, body: Vec<u8>) -> Response<Body> {
    let content_type = if trailers.is_some() {
        "application/grpc"
    } else {
        "application/x-protobuf"
    };
    let mut frames = vec![Ok(Frame::data(Bytes::from(body)))];
    frames.extend(trailers.map(|t| Ok(Frame::trailers(t))));
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(StreamBody::new(futures::stream::iter(frames)))
        .expect("response")
}

fn flatten(request: &ExportTraceServiceRequest, path: &str) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| texts(&r.attributes))
            .unwrap_or_default();
        for scope in &resource_spans.scope_spans {
            for span in &scope.spans {
                out.push(ReceivedSpan {
                    name: span.name.clone(),
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    attributes: texts(&span.attributes),
                    resource: resource.clone(),
                    path: path.to_string(),
                });
            }
        }
    }
    out
}

fn texts(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}
