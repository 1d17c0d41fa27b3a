//! An HTTP proxy on 127.0.0.1 that breaks chosen upload requests on their way to a real
//! server: to prove that an upload survives a failed request.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;

/// Which data-carrying `PUT`s (numbered from 1, in arrival order) fail.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answered 503 without reaching the server.
    pub refuse: BTreeSet<u32>,
}

/// A running proxy; stopped when dropped.
pub struct FaultProxy {
    pub url: String,
    /// Data-carrying `PUT`s seen so far.
    pub puts: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: String, faults: Faults) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy port");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let puts = Arc::new(AtomicU32::new(0));
        let state = Arc::new((upstream, faults, Arc::clone(&puts), reqwest::Client::new()));
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move {
                            let (upstream, faults, puts, client) = &*state;
                            forward(req, upstream, faults, puts, client).await
                        }
                    });
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Self { url, puts, task }
    }
}

fn unavailable() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"injected failure")));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r
}

async fn forward(
    req: Request<Incoming>,
    upstream: &str,
    faults: &Faults,
    puts: &AtomicU32,
    client: &reqwest::Client,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let carries_data = parts.method == hyper::Method::PUT && !body.is_empty();
    let number = if carries_data {
        puts.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        0
    };
    if faults.refuse.contains(&number) {
        return Ok(unavailable());
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = client.request(parts.method.clone(), format!("{upstream}{path}"));
    // The Host header goes through unchanged, so session URLs still point at the proxy.
    for (name, value) in parts
        .headers
        .iter()
        .filter(|(n, _)| !hop_by_hop(n.as_str()))
    {
        request = request.header(name, value);
    }
    let Ok(response) = request.body(body).send().await else {
        return Ok(unavailable());
    };
    let mut out = Response::builder().status(response.status().as_u16());
    for (name, value) in response
        .headers()
        .iter()
        .filter(|(n, _)| !hop_by_hop(n.as_str()))
    {
        out = out.header(name, value);
    }
    let bytes = response.bytes().await.unwrap_or_default();
    Ok(out.body(Full::new(bytes)).unwrap_or_else(|_| unavailable()))
}

/// Headers that describe one connection or one body encoding, set again by each hop.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "content-length" | "transfer-encoding" | "keep-alive"
    )
}
