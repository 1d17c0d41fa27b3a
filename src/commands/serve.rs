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
//!
//! Exposure: with `--token-file`/`--token-env` every request must carry the bearer token (else
//! 401); without one the server refuses to listen anywhere but on loopback. Each connection is
//! closed when nothing moves for `--idle-timeout` (a client that stops reading its response
//! holds its buffers until then) and after `--connection-timeout` in all; past
//! `--max-connections` clients are answered 503; and each connection holds at most its
//! `--connection-budget-mib` share of the download budget, so a few stalled clients cannot
//! starve the others.

use std::convert::Infallible;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
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
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::{CommandError, Pod};
use crate::cli::ServeArgs;
use argoexec::keys::template::KeyTemplate;
use argoexec::model::{ArtifactRepository, ArtifactRepositoryRef};
use argoexec::repository::{ConfigMapData, ConfigMaps, Resolver};
use argoexec::storage::{self, Driver, ObjectMeta};
use argoexec::stream::{ByteRange, StreamError, Streamer};
use argoexec::transfer::TransferConfig;

/// How long a client may take to send its request headers (or the idle timeout, if shorter).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

type Body = UnsyncBoxBody<Bytes, io::Error>;

struct Server {
    driver: Arc<dyn Driver>,
    /// The download budget of every connection together; each gets a share of it.
    streamer: Streamer,
    /// Every key served starts with this.
    prefix: String,
    /// Required of every request when set.
    token: Option<Token>,
}

/// How long connections live, how many are served, and how much memory each may hold.
#[derive(Debug, Clone, Copy)]
struct Limits {
    idle: Duration,
    lifetime: Duration,
    max_connections: usize,
    connection_budget: u64,
}

impl Limits {
    fn new(args: &ServeArgs, transfer: &TransferConfig) -> Self {
        Self {
            idle: args.idle_timeout,
            lifetime: args.connection_timeout,
            max_connections: args.max_connections as usize,
            connection_budget: args
                .connection_budget_mib
                .map_or(2 * transfer.download_chunk, |mib| {
                    mib.saturating_mul(1 << 20)
                }),
        }
    }
}

pub async fn run(pod: &Pod, args: &ServeArgs) -> Result<(), CommandError> {
    let token = bearer_token(args)?;
    check_exposure(args.listen, token.is_some())?;
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
    let driver = storage::open(&location, &pod.secrets, &pod.transfer.storage)
        .await
        .map_err(|e| CommandError::failed(format!("cannot open the repository: {e}")))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| CommandError::failed(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CommandError::failed(format!("listening address: {e}")))?;
    // The first line of stdout tells scripts (and tests) where to connect.
    println!(
        "serving {}/{prefix} on http://{addr}",
        driver.describe().trim_end_matches('/')
    );
    tracing::info!(
        repository = driver.describe(),
        prefix,
        %addr,
        bearer_token = token.is_some(),
        "serving artifacts"
    );
    let server = Arc::new(Server {
        driver,
        streamer: Streamer::new(pod.transfer.clone()),
        prefix,
        token,
    });
    accept_until_stopped(listener, server, Limits::new(args, &pod.transfer)).await
}

/// The token of `--token-file` or `--token-env`, when one is given.
fn bearer_token(args: &ServeArgs) -> Result<Option<Token>, CommandError> {
    let (text, source) = if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CommandError::failed(format!("cannot read --token-file {}: {e}", path.display()))
        })?;
        (text, format!("--token-file {}", path.display()))
    } else if let Some(name) = &args.token_env {
        let text = std::env::var(name).unwrap_or_default();
        (text, format!("--token-env {name}"))
    } else {
        return Ok(None);
    };
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CommandError::failed(format!(
            "{source}: the token must be non-empty printable ASCII without spaces"
        )));
    }
    Ok(Some(Token::new(token)))
}

/// Refuses to serve without authentication anywhere but on loopback, before anything listens.
fn check_exposure(listen: SocketAddr, authenticated: bool) -> Result<(), CommandError> {
    if authenticated || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(CommandError::failed(format!(
        "--listen {listen} is not a loopback address: set --token-file (or --token-env) so \
         that clients must send a bearer token, or listen on 127.0.0.1"
    )))
}

/// The bearer token, kept as its SHA-256 digest: compared in constant time whatever the length
/// of what a client sends, and never printable.
struct Token([u8; 32]);

impl Token {
    fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether an `Authorization` header carries this token (`Bearer` in any case, RFC 6750).
    fn admits(&self, authorization: Option<&str>) -> bool {
        let Some((scheme, credentials)) = authorization.and_then(|v| v.trim().split_once(' '))
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(credentials.trim().as_bytes()).into();
        scheme.eq_ignore_ascii_case("bearer") && bool::from(digest.ct_eq(&self.0))
    }
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
    limits: Limits,
) -> Result<(), CommandError> {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    // Refusing costs a little too: as many refusals in flight as connections, then the
    // connections beyond are closed unanswered.
    let refusals = Arc::new(Semaphore::new(limits.max_connections));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| CommandError::failed(format!("cannot watch SIGTERM: {e}")))?;
    loop {
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
        if let Ok(permit) = Arc::clone(&connections).try_acquire_owned() {
            let server = Arc::clone(&server);
            tokio::spawn(serve_connection(server, stream, peer, limits, permit));
        } else if let Ok(slot) = Arc::clone(&refusals).try_acquire_owned() {
            tokio::spawn(refuse_busy(stream, peer, limits, slot));
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// hyper's HTTP/1 server with the header timeout.
fn http1(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle.min(HEADER_TIMEOUT));
    builder
}

/// Serves one connection until the client is done with it, nothing moves on it for the idle
/// timeout, or it reaches the connection timeout; its streams share one slice of the budget.
async fn serve_connection(
    server: Arc<Server>,
    stream: TcpStream,
    peer: SocketAddr,
    limits: Limits,
    _permit: OwnedSemaphorePermit,
) {
    let streamer = server.streamer.share(limits.connection_budget);
    let service = service_fn(move |req| {
        let server = Arc::clone(&server);
        let streamer = streamer.clone();
        async move { Ok::<_, Infallible>(handle(&server, &streamer, peer, req).await) }
    });
    let activity = Arc::new(Activity::new());
    let socket = Watched {
        stream,
        activity: Arc::clone(&activity),
    };
    tokio::select! {
        served = http1(&limits).serve_connection(TokioIo::new(socket), service) => {
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        }
        () = activity.quiet_for(limits.idle) => {
            tracing::info!(%peer, "closed a connection idle for the whole --idle-timeout");
        }
        () = tokio::time::sleep(limits.lifetime) => {
            tracing::info!(%peer, "closed a connection open for the whole --connection-timeout");
        }
    }
}

/// Answers a connection beyond `--max-connections` with 503 and closes it.
async fn refuse_busy(
    stream: TcpStream,
    peer: SocketAddr,
    limits: Limits,
    _slot: OwnedSemaphorePermit,
) {
    tracing::debug!(%peer, "connection limit reached: answering 503");
    let service = service_fn(|_req| async {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections, try again later",
        );
        set(&mut r, header::RETRY_AFTER, "1");
        Ok::<_, Infallible>(r)
    });
    let refused = http1(&limits)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(limits.idle.min(HEADER_TIMEOUT), refused).await;
}

/// When bytes last moved on a connection.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last move.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `idle`.
    async fn quiet_for(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet = self.opened.elapsed().saturating_sub(last);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

/// A connection's socket noting when bytes move either way. hyper waits without end for a
/// client that stops reading its response (the body is only polled once the socket takes
/// more); this is what finds such a connection.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    fn noted(&self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        written
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.noted(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.noted(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

async fn handle(
    server: &Server,
    streamer: &Streamer,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = route(server, streamer, &req).await;
    tracing::info!(%peer, %method, path, status = response.status().as_u16(), "request");
    response
}

async fn route(server: &Server, streamer: &Streamer, req: &Request<Incoming>) -> Response<Body> {
    let authorization = header_str(req, header::AUTHORIZATION);
    if let Some(token) = &server.token
        && !token.admits(authorization)
    {
        return unauthorized(authorization.is_some());
    }
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
            Ok(key) => object(server, streamer, req, &key).await,
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

async fn object(
    server: &Server,
    streamer: &Streamer,
    req: &Request<Incoming>,
    key: &str,
) -> Response<Body> {
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
        match streamer
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

/// 401 with the challenge RFC 6750 describes; `invalid_token` when credentials were sent.
fn unauthorized(credentials_sent: bool) -> Response<Body> {
    let mut r = error(StatusCode::UNAUTHORIZED, "a bearer token is required");
    let challenge = if credentials_sent {
        "Bearer realm=\"argoexec serve\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"argoexec serve\""
    };
    set(&mut r, header::WWW_AUTHENTICATE, challenge);
    r
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

    #[test]
    fn only_loopback_may_listen_without_a_token() {
        for loopback in ["127.0.0.1:2747", "127.0.0.2:80", "[::1]:2747"] {
            let addr = loopback.parse().expect("address");
            assert!(check_exposure(addr, false).is_ok(), "{loopback}");
        }
        for exposed in ["0.0.0.0:2747", "[::]:2747", "10.1.2.3:2747"] {
            let addr = exposed.parse().expect("address");
            let refused = check_exposure(addr, false).expect_err(exposed).to_string();
            assert!(refused.contains("--token-file"), "{refused}");
            assert!(check_exposure(addr, true).is_ok(), "{exposed} with a token");
        }
    }

    #[test]
    fn a_token_admits_exactly_its_bearer() {
        let token = Token::new("s3cr3t-t0ken");
        assert!(token.admits(Some("Bearer s3cr3t-t0ken")));
        assert!(token.admits(Some("bearer  s3cr3t-t0ken ")));
        for refused in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer s3cr3t-t0ke"),
            Some("Bearer s3cr3t-t0ken2"),
            Some("Basic s3cr3t-t0ken"),
            Some("s3cr3t-t0ken"),
        ] {
            assert!(!token.admits(refused), "{refused:?}");
        }
    }
}
