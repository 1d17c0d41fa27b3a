//! An HTTP artifact server on loopback, for the HTTP and Artifactory drivers: files in memory,
//! GET with or without byte ranges, PUT, credential and header checks, an OAuth2
//! client-credentials token endpoint, and a TLS mode that requires a client certificate
//! signed by a throwaway CA made with rcgen. Every request is recorded for assertions.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;

/// The path of the OAuth2 token endpoint.
pub const TOKEN_PATH: &str = "/oauth/token";

/// What the OAuth2 token endpoint accepts and hands out.
#[derive(Debug, Clone)]
pub struct OAuth2Rules {
    pub client_id: String,
    pub client_secret: String,
    /// The `scope` form value required (space-separated scopes).
    pub scope: String,
    /// An extra form parameter required (`endpointParams`).
    pub param: (String, String),
    /// The access token issued.
    pub token: String,
}

/// What the server requires and how it behaves.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// The exact `Authorization` value every file request must carry.
    pub authorization: Option<String>,
    /// A header every file request must carry (name, value).
    pub header: Option<(String, String)>,
    /// Whether byte ranges are served.
    pub ranges: bool,
    pub oauth2: Option<OAuth2Rules>,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
    pub content_length: Option<String>,
    pub chunked: bool,
    /// Values of the custom header named in [`Rules::header`].
    pub header_values: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    rules: Rules,
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    /// Paths answered with a fixed status instead.
    forced: Mutex<BTreeMap<String, u16>>,
    /// Paths answered with `307 Temporary Redirect` to another path.
    redirects: Mutex<BTreeMap<String, String>>,
    seen: Mutex<Vec<Seen>>,
}

/// A running server; stops when dropped.
pub struct HttpServer {
    pub addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpServer {
    /// Plain HTTP on 127.0.0.1.
    pub async fn start(rules: Rules) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            rules,
            ..Default::default()
        });
        let served = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                serve_connection(TokioIo::new(socket), Arc::clone(&served));
            }
        });
        Self {
            addr,
            scheme: "http",
            state,
            task,
        }
    }

    /// HTTPS on 127.0.0.1 with the PKI's server certificate, requiring a client certificate
    /// signed by the PKI's CA.
    pub async fn start_mtls(rules: Rules, pki: &TestPki) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_der()).expect("ca root");
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .expect("client verifier");
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![pki.server_der()], pki.server_key_der())
            .expect("server tls config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            rules,
            ..Default::default()
        });
        let served = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let served = Arc::clone(&served);
                tokio::spawn(async move {
                    // A client without a valid certificate fails the handshake here.
                    if let Ok(tls) = acceptor.accept(socket).await {
                        serve_connection(TokioIo::new(tls), served);
                    }
                });
            }
        });
        Self {
            addr,
            scheme: "https",
            state,
            task,
        }
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn put_file(&self, path: &str, data: Vec<u8>) {
        self.state
            .files
            .lock()
            .expect("files")
            .insert(path.to_string(), data);
    }

    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.state.files.lock().expect("files").get(path).cloned()
    }

    /// Answers every request for `path` with `status`.
    pub fn force_status(&self, path: &str, status: u16) {
        self.state
            .forced
            .lock()
            .expect("forced")
            .insert(path.to_string(), status);
    }

    /// Answers every request for `from` with a `307` to `to`.
    pub fn redirect(&self, from: &str, to: &str) {
        self.state
            .redirects
            .lock()
            .expect("redirects")
            .insert(from.to_string(), to.to_string());
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen").clone()
    }
}

fn serve_connection<I>(io: I, state: Arc<State>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(handle(&state, req).await) }
        });
        let _ = ConnBuilder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await;
    });
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let rules = &state.rules;
    let seen = Seen {
        method: req.method().to_string(),
        path: path.clone(),
        range: header(&req, "range"),
        authorization: header(&req, "authorization"),
        content_length: header(&req, "content-length"),
        chunked: header(&req, "transfer-encoding").is_some_and(|v| v.contains("chunked")),
        header_values: rules
            .header
            .as_ref()
            .map(|(name, _)| {
                req.headers()
                    .get_all(name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    };
    state.seen.lock().expect("seen").push(seen.clone());

    if path == TOKEN_PATH {
        return token(rules, &seen, req).await;
    }
    if let Some(want) = &rules.authorization
        && seen.authorization.as_ref() != Some(want)
    {
        return reply(StatusCode::UNAUTHORIZED, "bad credentials");
    }
    if let Some((_, value)) = &rules.header
        && !seen.header_values.contains(value)
    {
        return reply(StatusCode::BAD_REQUEST, "missing header");
    }
    let redirect = state
        .redirects
        .lock()
        .expect("redirects")
        .get(&path)
        .cloned();
    if let Some(to) = redirect {
        // Read the upload first: hyper's client may lose an answer sent before the body is.
        let _ = req.into_body().collect().await;
        let mut res = reply(StatusCode::TEMPORARY_REDIRECT, "");
        res.headers_mut()
            .insert("location", to.parse().expect("header"));
        return res;
    }
    let forced = state.forced.lock().expect("forced").get(&path).copied();
    if let Some(status) = forced {
        // Read the upload first, as an application answering after it would.
        let _ = req.into_body().collect().await;
        return reply(StatusCode::from_u16(status).expect("status"), "forced");
    }
    match req.method().as_str() {
        "GET" => get(state, &path, seen.range.as_deref()),
        "PUT" => match req.into_body().collect().await {
            Ok(body) => {
                state
                    .files
                    .lock()
                    .expect("files")
                    .insert(path, body.to_bytes().to_vec());
                reply(StatusCode::CREATED, "")
            }
            // A body that broke off (the client aborted the upload) stores nothing.
            Err(_) => reply(StatusCode::BAD_REQUEST, "truncated body"),
        },
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, ""),
    }
}

fn get(state: &State, path: &str, range: Option<&str>) -> Response<Full<Bytes>> {
    let Some(data) = state.files.lock().expect("files").get(path).cloned() else {
        return reply(StatusCode::NOT_FOUND, "no such file");
    };
    let len = data.len() as u64;
    let wanted = range
        .filter(|_| state.rules.ranges)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    let mut res = match wanted {
        Some((start, _)) if start >= len => {
            let mut res = reply(StatusCode::RANGE_NOT_SATISFIABLE, "");
            res.headers_mut().insert(
                "content-range",
                format!("bytes */{len}").parse().expect("header"),
            );
            res
        }
        Some((start, end)) => {
            let end = end.min(len - 1);
            let mut res = reply(
                StatusCode::PARTIAL_CONTENT,
                data[start as usize..=end as usize].to_vec(),
            );
            res.headers_mut().insert(
                "content-range",
                format!("bytes {start}-{end}/{len}")
                    .parse()
                    .expect("header"),
            );
            res
        }
        None => reply(StatusCode::OK, data),
    };
    if state.rules.ranges {
        res.headers_mut()
            .insert("accept-ranges", "bytes".parse().expect("header"));
    }
    res
}

/// The token endpoint: client credentials in a basic-auth header (form-encoded, RFC 6749
/// section 2.3.1), `grant_type=client_credentials`, and the required scope and parameter.
async fn token(rules: &Rules, seen: &Seen, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(o) = &rules.oauth2 else {
        return reply(StatusCode::NOT_FOUND, "");
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form(&o.client_id),
            form(&o.client_secret)
        ))
    );
    if seen.authorization.as_ref() != Some(&expected) {
        return reply(StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#);
    }
    let body = super::body_bytes(req.into_body()).await;
    let params: BTreeMap<String, String> =
        url::form_urlencoded::parse(&body).into_owned().collect();
    let ok = params.get("grant_type").map(String::as_str) == Some("client_credentials")
        && params.get("scope") == Some(&o.scope)
        && params.get(&o.param.0) == Some(&o.param.1);
    if !ok {
        return reply(StatusCode::BAD_REQUEST, r#"{"error":"invalid_request"}"#);
    }
    let mut res = reply(
        StatusCode::OK,
        format!(
            r#"{{"access_token":"{}","token_type":"bearer","expires_in":3600}}"#,
            o.token
        ),
    );
    res.headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    res
}

fn form(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A throwaway CA with a server certificate for 127.0.0.1 and a client certificate.
pub struct TestPki {
    pub ca_pem: String,
    ca_der: Vec<u8>,
    server_der: Vec<u8>,
    server_key_der: Vec<u8>,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl TestPki {
    pub fn new() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "argoexec test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca cert");

        let server_key = KeyPair::generate().expect("server key");
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server_params
            .signed_by(&server_key, &ca)
            .expect("server cert");

        let client_key = KeyPair::generate().expect("client key");
        let mut client_params =
            CertificateParams::new(Vec::<String>::new()).expect("client params");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "argoexec test client");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params
            .signed_by(&client_key, &ca)
            .expect("client cert");

        Self {
            ca_pem: ca.pem(),
            ca_der: ca.der().to_vec(),
            server_der: server.der().to_vec(),
            server_key_der: server_key.serialize_der(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    fn ca_der(&self) -> rustls::pki_types::CertificateDer<'static> {
        rustls::pki_types::CertificateDer::from(self.ca_der.clone())
    }

    pub fn server_der(&self) -> rustls::pki_types::CertificateDer<'static> {
        rustls::pki_types::CertificateDer::from(self.server_der.clone())
    }

    pub fn server_key_der(&self) -> rustls::pki_types::PrivateKeyDer<'static> {
        rustls::pki_types::PrivateKeyDer::Pkcs8(self.server_key_der.clone().into())
    }
}
