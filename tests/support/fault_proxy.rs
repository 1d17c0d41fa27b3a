//! A fault-injecting HTTP proxy on 127.0.0.1, between the executor and a test server.
//!
//! Every request is forwarded with `Connection: close`, so each TCP connection carries exactly
//! one request and faults map to requests one to one. Rules pick requests by method and path
//! and apply a fault a bounded number of times; [`FaultProxy::chaos`] adds random faults to
//! the requests no rule picked; every request is recorded.
//!
//! Also here: [`BlackHole`], a listener whose connections never complete (connect timeouts),
//! and [`TlsFront`], a TLS terminator in front of a plain server (TLS trust failures).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Forward the head and this many body bytes, then reset both connections.
    ResetMidBody { after: usize },
    /// Flip the bits of the body byte at this offset.
    CorruptBody { offset: usize },
    /// Answer with this status and S3 error code without forwarding.
    Respond { status: u16, code: &'static str },
    /// Forward the request, then hold the response this long before passing it on.
    DelayResponse(Duration),
    /// Forward the request, then pass on only this many bytes of the response and close.
    TruncateResponse { after: usize },
    /// Forward nothing and answer nothing for this long, then close.
    Stall(Duration),
    /// Forward the request, then pass the response on `chunk` bytes at a time, one chunk
    /// every `every` (a slow link).
    SlowResponse { chunk: usize, every: Duration },
    /// Forward the request, pass on the response head and `after` body bytes, then say
    /// nothing for `hold` before closing (a connection that stalls mid-body).
    StallResponse { after: usize, hold: Duration },
    /// Forward the request, then flip the bits of the response body byte at this offset.
    CorruptResponse { offset: usize },
    /// Forward the request, let the upstream act on it, then reset the connection without
    /// passing on a byte of its answer (a success whose answer is lost).
    DropResponse,
    /// Forward the request, and pass the answer on with an ETag that is not an MD5 and no
    /// checksum headers: what a store with SSE-KMS, or a gateway that checks nothing, answers.
    OpaqueEtag,
}

/// Requests a rule applies to: method, and a substring of the path and query.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub path_contains: String,
    pub fault: Fault,
    /// Matching requests to let through untouched before the fault starts.
    pub skip: usize,
    /// How many more requests this rule applies to.
    pub times: usize,
}

/// One request seen by the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub fault: Option<Fault>,
    /// The upstream answered with this status (None when faulted before an answer).
    pub status: Option<u16>,
    /// Requests being served when it arrived, itself included.
    pub concurrent: usize,
}

impl Seen {
    /// The `partNumber` of an UploadPart request.
    pub fn part_number(&self) -> Option<u32> {
        if self.method != "PUT" {
            return None;
        }
        let q = self.target.split_once('?')?.1;
        q.split('&')
            .find_map(|kv| kv.strip_prefix("partNumber="))
            .and_then(|n| n.parse().ok())
    }
}

/// Random faults for the requests no rule picked: each request is faulted with probability
/// `percent` / 100, with a fault drawn from those that fit its method (see [`Chaos::draw`]).
#[derive(Debug, Clone)]
pub struct Chaos {
    pub percent: u64,
    state: u64,
}

impl Chaos {
    /// A fault for one request, or none; `body_len` is the request body's length.
    ///
    /// Every method may be answered 503/500 without being forwarded, or reset while its
    /// request is sent. Uploads of object data (PUT) may also be corrupted in flight, and
    /// reads (GET) truncated or corrupted on their way back. Answers of other requests are
    /// never damaged after the upstream acted on them: a lost CompleteMultipartUpload answer
    /// is another failure mode (see docs/reliability.md).
    fn draw(&mut self, method: &str, body_len: usize) -> Option<Fault> {
        if self.next() % 100 >= self.percent {
            return None;
        }
        let common = [
            Fault::Respond {
                status: 503,
                code: "SlowDown",
            },
            Fault::Respond {
                status: 500,
                code: "InternalError",
            },
            Fault::ResetMidBody {
                after: body_len / 2,
            },
        ];
        let pick = self.next() as usize;
        let offset = (self.next() % 4096) as usize;
        let fault = match method {
            "PUT" if body_len > 0 && pick % 4 == 3 => Fault::CorruptBody {
                offset: offset % body_len,
            },
            "GET" if pick % 5 == 3 => Fault::TruncateResponse { after: offset },
            "GET" if pick % 5 == 4 => Fault::CorruptResponse { offset },
            _ => common[pick % common.len()].clone(),
        };
        Some(fault)
    }

    /// xorshift64*: deterministic for a seed, good enough to spread faults.
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    limits: Limits,
    rules: Arc<Mutex<Vec<Rule>>>,
    chaos: Arc<Mutex<Option<Chaos>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    parts: Arc<PartsInFlight>,
    task: tokio::task::JoinHandle<()>,
}

/// UploadPart requests between their head arriving and their answer passed on: now, and the
/// most at once.
#[derive(Debug, Default)]
struct PartsInFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// Counts one UploadPart request in flight until dropped.
struct PartInFlight(Arc<PartsInFlight>);

impl PartInFlight {
    fn start(parts: &Arc<PartsInFlight>) -> Self {
        let now = parts.now.fetch_add(1, Ordering::SeqCst) + 1;
        parts.most.fetch_max(now, Ordering::SeqCst);
        Self(Arc::clone(parts))
    }
}

impl Drop for PartInFlight {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Proxies to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let chaos: Arc<Mutex<Option<Chaos>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let parts: Arc<PartsInFlight> = Arc::default();
        let limits = Limits::default();
        let faults = Faults {
            rules: Arc::clone(&rules),
            chaos: Arc::clone(&chaos),
            parts: Arc::clone(&parts),
            limits: limits.clone(),
        };
        let s = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (f, s) = (faults.clone(), Arc::clone(&s));
                tokio::spawn(async move {
                    let _ = handle(client, upstream, f, s).await;
                });
            }
        });
        Self {
            addr,
            limits,
            rules,
            chaos,
            seen,
            parts,
            task,
        }
    }

    /// The most UploadPart requests that were in flight at once.
    pub fn most_parts_in_flight(&self) -> usize {
        self.parts.most.load(Ordering::SeqCst)
    }

    /// Answers 503 SlowDown to every request that arrives while `n` others are being served:
    /// a store that throttles above a request rate.
    pub fn throttle_above(&self, n: usize) {
        self.limits.throttle_above.store(n, Ordering::SeqCst);
    }

    /// The most requests served at once so far.
    pub fn max_concurrent(&self) -> usize {
        let seen = self.seen();
        let served = seen.iter().filter(|s| !is_throttled(s));
        served.map(|s| s.concurrent).max().unwrap_or(0)
    }

    /// Faults `percent` % of the requests no rule picks, at random (deterministic per `seed`).
    pub fn chaos(&self, percent: u64, seed: u64) {
        *self.chaos.lock().expect("chaos") = Some(Chaos {
            percent,
            state: seed.max(1),
        });
    }

    pub fn add(&self, method: &'static str, path_contains: &str, fault: Fault, times: usize) {
        self.add_after(method, path_contains, 0, fault, times);
    }

    /// Like [`FaultProxy::add`], after letting `skip` matching requests through.
    pub fn add_after(
        &self,
        method: &'static str,
        path_contains: &str,
        skip: usize,
        fault: Fault,
        times: usize,
    ) {
        self.rules.lock().expect("rules").push(Rule {
            method,
            path_contains: path_contains.to_string(),
            fault,
            skip,
            times,
        });
    }

    pub fn clear_rules(&self) {
        self.rules.lock().expect("rules").clear();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    pub fn clear_seen(&self) {
        self.seen.lock().expect("seen").clear();
    }

    /// Part numbers of UploadPart requests the upstream answered 200.
    pub fn stored_parts(&self) -> Vec<u32> {
        self.seen()
            .iter()
            .filter(|s| s.status == Some(200))
            .filter_map(Seen::part_number)
            .collect()
    }

    /// Part numbers of every UploadPart request, answered or not.
    pub fn sent_parts(&self) -> Vec<u32> {
        self.seen().iter().filter_map(Seen::part_number).collect()
    }
}

const MAX_HEAD: usize = 64 * 1024;

/// Makes closing `stream` send a TCP reset instead of a clean close.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the head ended"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the proxy answered this request 503 SlowDown itself.
pub fn is_throttled(seen: &Seen) -> bool {
    matches!(
        seen.fault,
        Some(Fault::Respond {
            status: 503,
            code: "SlowDown"
        })
    )
}

/// Requests being served, and the count above which they are throttled (0: never).
#[derive(Clone, Default)]
struct Limits {
    serving: Arc<AtomicUsize>,
    throttle_above: Arc<AtomicUsize>,
}

/// One request being served; leaves the count when dropped.
struct Serving(Arc<AtomicUsize>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where a request's fault comes from: the throttle, else the first matching rule, else chaos.
#[derive(Clone)]
struct Faults {
    rules: Arc<Mutex<Vec<Rule>>>,
    chaos: Arc<Mutex<Option<Chaos>>>,
    parts: Arc<PartsInFlight>,
    limits: Limits,
}

impl Faults {
    fn pick(&self, method: &str, target: &str, body_len: usize) -> Option<Fault> {
        let mut rules = self.rules.lock().expect("rules");
        let ruled = rules
            .iter_mut()
            .find(|r| r.times > 0 && r.method == method && target.contains(&r.path_contains));
        match ruled {
            Some(r) if r.skip > 0 => {
                r.skip -= 1;
                None
            }
            Some(r) => {
                r.times -= 1;
                Some(r.fault.clone())
            }
            None => self
                .chaos
                .lock()
                .expect("chaos")
                .as_mut()
                .and_then(|c| c.draw(method, body_len)),
        }
    }
}

async fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: Faults,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    let (head, mut body_start) = read_head(&mut client).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut content_length = 0usize;
    let mut new_head = format!("{request_line}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        new_head.push_str(line);
        new_head.push_str("\r\n");
    }
    new_head.push_str("Connection: close\r\n\r\n");

    let is_part = method == "PUT" && target.contains("partNumber=");
    let in_flight = is_part.then(|| PartInFlight::start(&faults.parts));
    let concurrent = faults.limits.serving.fetch_add(1, Ordering::SeqCst) + 1;
    let mut serving = Some(Serving(Arc::clone(&faults.limits.serving)));
    let limit = faults.limits.throttle_above.load(Ordering::SeqCst);
    let fault = if limit > 0 && concurrent > limit {
        serving = None;
        Some(Fault::Respond {
            status: 503,
            code: "SlowDown",
        })
    } else {
        faults.pick(&method, &target, content_length)
    };
    let record = |status: Option<u16>| {
        seen.lock().expect("seen").push(Seen {
            method: method.clone(),
            target: target.clone(),
            fault: fault.clone(),
            status,
            concurrent,
        });
    };

    // The whole request body (bounded by its Content-Length).
    while body_start.len() < content_length {
        let mut chunk = vec![0u8; (content_length - body_start.len()).min(1 << 20)];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body_start.extend_from_slice(&chunk[..n]);
    }
    let mut body = body_start;

    match &fault {
        Some(Fault::Respond { status, code }) => {
            record(None);
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>"
            );
            let reason = if *status == 503 {
                "Service Unavailable"
            } else {
                "Error"
            };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            );
            client.write_all(resp.as_bytes()).await?;
            return client.shutdown().await;
        }
        Some(Fault::Stall(d)) => {
            record(None);
            tokio::time::sleep(*d).await;
            return Ok(());
        }
        Some(Fault::CorruptBody { offset }) if *offset < body.len() => {
            body[*offset] ^= 0xff;
        }
        _ => {}
    }

    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(new_head.as_bytes()).await?;
    if let Some(Fault::ResetMidBody { after }) = &fault {
        up.write_all(&body[..(*after).min(body.len())]).await?;
        record(None);
        reset(&client);
        reset(&up);
        return Ok(());
    }
    up.write_all(&body).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    let status = String::from_utf8_lossy(&response[..response.len().min(16)])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok());
    record(status);
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| p + 4);
    match &fault {
        Some(Fault::DropResponse) => {
            reset(&client);
            return Ok(());
        }
        Some(Fault::OpaqueEtag) => {
            response = opaque_etags(&response[..head_end], &response[head_end..])
        }
        Some(Fault::DelayResponse(d)) => tokio::time::sleep(*d).await,
        Some(Fault::TruncateResponse { after }) => {
            response.truncate((head_end + after).min(response.len()));
            reset(&client);
        }
        Some(Fault::CorruptResponse { offset }) if head_end + offset < response.len() => {
            response[head_end + offset] ^= 0xff;
        }
        Some(Fault::SlowResponse { chunk, every }) => {
            for piece in response.chunks((*chunk).max(1)) {
                client.write_all(piece).await?;
                tokio::time::sleep(*every).await;
            }
            return client.shutdown().await;
        }
        Some(Fault::StallResponse { after, hold }) => {
            let end = (head_end + after).min(response.len());
            client.write_all(&response[..end]).await?;
            tokio::time::sleep(*hold).await;
            reset(&client);
            return Ok(());
        }
        _ => {}
    }
    // Served: the client may send its next request as soon as the answer is written, so the
    // counts end before it is.
    drop(serving);
    drop(in_flight);
    client.write_all(&response).await?;
    client.shutdown().await
}

/// The response with its head's ETag replaced by an opaque one (not hex, so no MD5) and its
/// `x-amz-checksum-*` headers left out.
fn opaque_etags(head: &[u8], body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("etag:") {
            out.push_str("ETag: \"opaque-kms-etag\"\r\n");
        } else if !lower.starts_with("x-amz-checksum-") {
            out.push_str(line);
        }
    }
    let mut response = out.into_bytes();
    response.extend_from_slice(body);
    response
}

/// A loopback listener whose accept queue is full: connections to it never complete (the
/// kernel drops their SYNs), so a client's connect timeout fires. Closed when dropped.
pub struct BlackHole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _filler: std::net::TcpStream,
}

impl BlackHole {
    pub fn start() -> Self {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let bind: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        listener.bind(&bind.into()).expect("bind");
        // A backlog of 0 holds one connection; the filler takes it and is never accepted.
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .expect("addr")
            .as_socket()
            .expect("inet");
        let filler = std::net::TcpStream::connect(addr).expect("filler");
        Self {
            addr,
            _listener: listener,
            _filler: filler,
        }
    }
}

/// TLS on 127.0.0.1 in front of a plain server: terminates with the server certificate of
/// `pki` and forwards the bytes both ways; counts the connections it accepted (one per
/// attempt of a client that does not reuse them). Stops when dropped.
pub struct TlsFront {
    pub addr: SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    pub async fn start(upstream: SocketAddr, pki: &super::http_server::TestPki) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![pki.server_der()], pki.server_key_der())
            .expect("server tls config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tls");
        let addr = listener.local_addr().expect("addr");
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that does not trust the certificate fails the handshake here.
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let Ok(mut up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}
