//! `argoexec serve`: a small read-only HTTP server streaming the artifacts of one repository,
//! for local inspection (docs/library.md).
//!
//! * `GET|HEAD /artifacts/<key>`: the object, with `Content-Length`, `ETag`, single byte ranges
//!   (206, 416), `If-None-Match` (304) and `If-Range`. Streamed from storage through a shared
//!   memory budget: no temporary files, memory flat whatever the object size.
//! * `GET /list/<prefix>[?continue=<token>]`: one page of the objects below a prefix, as JSON.
//! * `GET /`: what is served.
//!
//! Keys are checked before anything reaches storage: `.`/`..` segments, absolute keys, empty
//! segments and NUL bytes are refused with 400; keys outside the served prefix (the literal
//! start of the repository's key format, or `--prefix` below it) with 403. Logs name the
//! request line and status only: no headers, no credentials.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::cli::ServeArgs;
use super::{CommandError, Pod};
use crate::keys::template::KeyTemplate;
use crate::model::{ArtifactRepository, ArtifactRepositoryRef};
use crate::repository::{ConfigMapData, ConfigMaps, Resolver};
use crate::storage::{self, Driver, ObjectMeta};
use crate::stream::{ByteRange, StreamError, Streamer};

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

type Body = UnsyncBoxBody<Bytes, io::Error>;

struct Server {
    driver: Arc<dyn Driver>,
    streamer: Streamer,
    /// Every key served starts with this.
    prefix: String,
}

pub async fn run(pod: &Pod, args: &ServeArgs) -> Result<(), CommandError> {
    let repository = load_repository(args)?;
    let location = repository.to_location().ok_or_else(|| {
        CommandError::failed(format!(
            "{}: no repository kind (s3, gcs, azure, ...) is set",
            args.repository.display()
        ))
    })?;
    let pattern = repository.key_pattern().unwrap_or_default();
    let repository_prefix = KeyTemplate::parse(&pattern)
        .map_err(|e| CommandError::failed(format!("{}: {e}", args.repository.display())))?
        .literal_prefix()
        .to_string();
    let prefix = match &args.prefix {
        Some(p) if p.starts_with(&repository_prefix) && valid_key(p).is_ok() => p.clone(),
        Some(p) => {
            return Err(CommandError::failed(format!(
                "--prefix {p:?} is not a key prefix below the repository's {repository_prefix:?}"
            )));
        }
        None => repository_prefix,
    };
    let driver = storage::open(&location, &pod.secrets)
        .await
        .map_err(|e| CommandError::failed(format!("cannot open the repository: {e}")))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| CommandError::failed(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CommandError::failed(format!("listening address: {e}")))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving artifacts without authentication on a non-loopback address");
    }
    // The first line of stdout tells scripts (and tests) where to connect.
    println!(
        "serving {}/{prefix} on http://{addr}",
        driver.describe().trim_end_matches('/')
    );
    tracing::info!(repository = driver.describe(), prefix, %addr, "serving artifacts");
    let server = Arc::new(Server {
        driver,
        streamer: Streamer::new(pod.transfer.clone()),
        prefix,
    });
    accept_until_stopped(listener, server).await
}

/// Reads `--repository`: one repository, or a ConfigMap manifest whose entry is chosen by
/// `--key` (default: its annotated default key).
fn load_repository(args: &ServeArgs) -> Result<ArtifactRepository, CommandError> {
    let path = &args.repository;
    let text = std::fs::read_to_string(path)
        .map_err(|e| CommandError::failed(format!("cannot read {}: {e}", path.display())))?;
    let bad = |e: &dyn std::fmt::Display| CommandError::failed(format!("{}: {e}", path.display()));
    let value: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| bad(&e))?;
    if value.get("kind").and_then(|k| k.as_str()) != Some("ConfigMap") {
        return ArtifactRepository::from_yaml(&text).map_err(|e| bad(&e));
    }
    let strings = |v: Option<&serde_json::Value>, what: &str| match v {
        None | Some(serde_json::Value::Null) => Ok(Default::default()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| bad(&format!("the ConfigMap's {what}: {e}"))),
    };
    let name = value["metadata"]["name"].as_str().unwrap_or_default();
    let mut config_maps = ConfigMaps::default();
    config_maps.insert(
        "",
        name,
        ConfigMapData {
            data: strings(value.get("data"), "data")?,
            annotations: strings(value["metadata"].get("annotations"), "annotations")?,
        },
    );
    let reference = ArtifactRepositoryRef {
        config_map: name.to_string(),
        key: args.key.clone().unwrap_or_default(),
    };
    Resolver::default()
        .resolve(Some(&reference), "", &config_maps)
        .map_err(|e| bad(&e))?
        .artifact_repository
        .ok_or_else(|| bad(&"the ConfigMap entry holds no repository"))
}

async fn accept_until_stopped(
    listener: TcpListener,
    server: Arc<Server>,
) -> Result<(), CommandError> {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| CommandError::failed(format!("cannot watch SIGTERM: {e}")))?;
    loop {
        let permit = tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            permit = Arc::clone(&connections).acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let server = Arc::clone(&server);
                async move { Ok::<_, Infallible>(handle(&server, peer, req).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    tracing::info!("stopped");
    Ok(())
}

async fn handle(server: &Server, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = route(server, &req).await;
    tracing::info!(%peer, %method, path, status = response.status().as_u16(), "request");
    response
}

async fn route(server: &Server, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    if path == "/" {
        return json_response(
            StatusCode::OK,
            &json!({
                "repository": server.driver.describe(),
                "prefix": server.prefix,
                "endpoints": ["/artifacts/<key>", "/list/<prefix>"],
            }),
        );
    }
    if let Some(raw) = path.strip_prefix("/artifacts/") {
        return match server.checked(raw, false) {
            Ok(key) => object(server, req, &key).await,
            Err((status, why)) => error(status, why),
        };
    }
    if let Some(raw) = path
        .strip_prefix("/list/")
        .or((path == "/list").then_some(""))
    {
        return match server.checked(raw, true) {
            Ok(prefix) => list(server, req, prefix).await,
            Err((status, why)) => error(status, why),
        };
    }
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

impl Server {
    /// The key a request path names, or the refusal: 400 for keys that are not plain relative
    /// keys, 403 for keys outside the served prefix. An empty list prefix lists the served one.
    fn checked(&self, raw: &str, listing: bool) -> Result<String, (StatusCode, &'static str)> {
        let key = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| (StatusCode::BAD_REQUEST, "the key is not valid UTF-8"))?
            .into_owned();
        if listing && key.is_empty() {
            return Ok(self.prefix.clone());
        }
        valid_key(&key).map_err(|why| (StatusCode::BAD_REQUEST, why))?;
        if !key.starts_with(&self.prefix) {
            return Err((
                StatusCode::FORBIDDEN,
                "the key is outside the served repository prefix",
            ));
        }
        Ok(key)
    }
}

/// A plain relative key: no empty, `.` or `..` segment, not absolute, no NUL.
fn valid_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("the key is empty");
    }
    if key.starts_with('/') {
        return Err("absolute keys are refused");
    }
    if key.contains('\0') {
        return Err("keys with NUL bytes are refused");
    }
    let segments: Vec<&str> = key.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.into_iter().enumerate() {
        match segment {
            "." | ".." => return Err("keys with '.' or '..' segments are refused"),
            // A trailing `/` names a directory-like prefix; empty segments elsewhere are not keys.
            "" if i != last => return Err("keys with empty segments ('//') are refused"),
            _ => {}
        }
    }
    Ok(())
}

fn header_str(req: &Request<Incoming>, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn object(server: &Server, req: &Request<Incoming>, key: &str) -> Response<Body> {
    let meta = match server.driver.head(key).await {
        Ok(meta) => meta,
        Err(e) => return storage_error(&StreamError::Storage(e)),
    };
    let etag = meta.etag.as_ref().map(|e| format!("\"{e}\""));
    if let (Some(tag), Some(wanted)) = (&etag, header_str(req, header::IF_NONE_MATCH)) {
        let matches = wanted.trim() == "*"
            || wanted
                .split(',')
                .any(|t| t.trim().trim_start_matches("W/") == tag);
        if matches {
            let mut r = empty(StatusCode::NOT_MODIFIED);
            set(&mut r, header::ETAG, tag);
            return r;
        }
    }
    let mut range = header_str(req, header::RANGE).and_then(ByteRange::from_http);
    if let Some(condition) = header_str(req, header::IF_RANGE)
        && etag.as_deref() != Some(condition.trim())
    {
        range = None;
    }
    let size = meta.size;
    let offsets = match range.map(|r| r.resolve(size)) {
        None => 0..size,
        Some(Some(offsets)) => offsets,
        Some(None) => return unsatisfiable(size),
    };
    let partial = range.is_some();
    let mut response = if req.method() == Method::HEAD {
        empty(status_for(partial))
    } else {
        match server
            .streamer
            .open_known(Arc::clone(&server.driver), key, meta.clone(), range)
            .await
        {
            Ok(stream) => {
                let key = key.to_string();
                let frames = stream.map(move |item| {
                    item.map(Frame::data).map_err(|e| {
                        tracing::warn!(key, error = %e, "the object stream failed");
                        io::Error::other(e)
                    })
                });
                let mut r = Response::new(StreamBody::new(frames).boxed_unsync());
                *r.status_mut() = status_for(partial);
                r
            }
            Err(StreamError::Unsatisfiable { size, .. }) => return unsatisfiable(size),
            Err(e) => return storage_error(&e),
        }
    };
    set(
        &mut response,
        header::CONTENT_LENGTH,
        &(offsets.end - offsets.start).to_string(),
    );
    set(&mut response, header::ACCEPT_RANGES, "bytes");
    set(
        &mut response,
        header::CONTENT_TYPE,
        "application/octet-stream",
    );
    if let Some(tag) = &etag {
        set(&mut response, header::ETAG, tag);
    }
    if partial {
        set(
            &mut response,
            header::CONTENT_RANGE,
            &format!(
                "bytes {}-{}/{size}",
                offsets.start,
                offsets.end.saturating_sub(1)
            ),
        );
    }
    response
}

fn status_for(partial: bool) -> StatusCode {
    if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    }
}

fn unsatisfiable(size: u64) -> Response<Body> {
    let mut r = error(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "the range is outside the object",
    );
    set(&mut r, header::CONTENT_RANGE, &format!("bytes */{size}"));
    r
}

async fn list(server: &Server, req: &Request<Incoming>, prefix: String) -> Response<Body> {
    let token = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "continue")
            .map(|(_, v)| v.into_owned())
    });
    match server.driver.list(&prefix, token).await {
        Ok(page) => json_response(
            StatusCode::OK,
            &json!({
                "prefix": prefix,
                "objects": page.objects.iter().map(listed).collect::<Vec<_>>(),
                "continue": page.next,
            }),
        ),
        Err(e) => storage_error(&StreamError::Storage(e)),
    }
}

fn listed(o: &ObjectMeta) -> serde_json::Value {
    json!({"key": o.key, "size": o.size, "etag": o.etag})
}

/// Storage failures: 404 for absent keys, 502 for everything else (the storage's own message,
/// which never carries credentials).
fn storage_error(e: &StreamError) -> Response<Body> {
    if e.is_not_found() {
        return error(StatusCode::NOT_FOUND, "no such object");
    }
    tracing::warn!(error = %e, "storage request failed");
    error(StatusCode::BAD_GATEWAY, &e.to_string())
}

fn set(r: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    set(&mut r, header::CONTENT_TYPE, "application/json");
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_keys_are_valid() {
        for ok in ["a", "art/wf/pod/out.tgz", "dir/", "a.b/c..d/.e"] {
            assert_eq!(valid_key(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a/./b",
            "a//b",
            "a\0b",
            "./a",
        ] {
            assert!(valid_key(bad).is_err(), "{bad:?}");
        }
    }
}
