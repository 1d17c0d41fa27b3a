//! An HTTP server on loopback for the agent's HTTP templates and executor plugins: records
//! every request (method, path, headers, body) and answers
//! * `/status/<code>`: that status, body `{"path": ..., "method": ...}`, header `X-Echo: yes`;
//! * `/api/v1/template.execute`: a plugin's reply, `{"node": {"phase": "Succeeded", ...}}`;
//! * anything else: 404.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Lower-cased names; every value, in order.
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

pub struct EchoServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let seen = Arc::clone(&seen);
                        async move { Ok::<_, Infallible>(answer(&seen, req).await) }
                    });
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn answer(seen: &Mutex<Vec<Seen>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        headers
            .entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = super::body_bytes(req.into_body()).await.to_vec();
    seen.lock().unwrap_or_else(|p| p.into_inner()).push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers,
        body,
    });
    let (status, body) = if let Some(code) = path.strip_prefix("/status/") {
        (
            code.parse().unwrap_or(400),
            json!({"path": path, "method": method}),
        )
    } else if path == "/api/v1/template.execute" {
        (
            200,
            json!({"node": {"phase": "Succeeded", "message": "done by plugin", "outputs": {"result": "plugged"}}}),
        )
    } else {
        (404, json!({}))
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-echo", "yes")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}
