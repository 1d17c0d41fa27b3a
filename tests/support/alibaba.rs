//! Alibaba Cloud's credential services on loopback, for the OSS driver's `useSDKCreds`:
//! an STS that answers `AssumeRoleWithOIDC` (checking the request as STS does: action,
//! version, the role and provider ARNs, the pod's current OIDC token) and an ECS instance
//! metadata service (IMDSv2 token, then the RAM role's keys). Both issue short-lived keys
//! into [`TemporaryKeys`], which an S3 server uses as its authentication: a request signed
//! with an unknown or expired key is refused (`ExpiredToken`), as OSS does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use serde_json::json;

/// Keys issued by the stubs, by access key id: the secret and when it stops working.
#[derive(Debug, Default, Clone)]
pub struct TemporaryKeys(Arc<Mutex<HashMap<String, (String, SystemTime)>>>);

impl TemporaryKeys {
    /// Issues key number `n` (id, secret, expiration as STS writes it).
    pub fn issue(&self, n: usize, lifetime: Duration) -> (String, String, String) {
        let id = format!("STS.test-{n}");
        let secret = format!("temporary-secret-{n}");
        let expiry = SystemTime::now() + lifetime;
        self.0
            .lock()
            .expect("keys")
            .insert(id.clone(), (secret.clone(), expiry));
        let expiration = chrono::DateTime::<chrono::Utc>::from(expiry)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        (id, secret, expiration)
    }
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for TemporaryKeys {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        let keys = self.0.lock().expect("keys");
        match keys.get(access_key) {
            None => Err(s3s::s3_error!(InvalidAccessKeyId)),
            Some((_, expiry)) if *expiry <= SystemTime::now() => {
                Err(s3s::s3_error!(ExpiredToken, "key {access_key} expired"))
            }
            Some((secret, _)) => Ok(secret.clone().into()),
        }
    }
}

/// What the STS stub expects of an `AssumeRoleWithOIDC` call.
#[derive(Debug, Clone)]
pub struct OidcRole {
    pub role_arn: String,
    pub provider_arn: String,
    /// The token file the pod mounts; its content at the time of the call must be sent.
    pub token_file: std::path::PathBuf,
}

/// One request the stubs answered, and what they found wrong with it (empty = accepted).
#[derive(Debug, Clone)]
pub struct Call {
    pub path_and_query: String,
    pub problems: Vec<String>,
}

#[derive(Debug)]
pub struct CredentialServer {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CredentialServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Clone)]
enum Service {
    Sts(OidcRole),
    Metadata { role: String, token: String },
}

struct State {
    service: Service,
    keys: TemporaryKeys,
    lifetime: Duration,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl CredentialServer {
    /// An STS issuing keys that live `lifetime`.
    pub async fn sts(role: OidcRole, keys: TemporaryKeys, lifetime: Duration) -> Self {
        Self::start(Service::Sts(role), keys, lifetime).await
    }

    /// An ECS metadata service for the RAM role `role`, issuing keys that live `lifetime`.
    pub async fn metadata(role: &str, keys: TemporaryKeys, lifetime: Duration) -> Self {
        let service = Service::Metadata {
            role: role.into(),
            token: "imds-session-token".into(),
        };
        Self::start(service, keys, lifetime).await
    }

    async fn start(service: Service, keys: TemporaryKeys, lifetime: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            service,
            keys,
            lifetime,
            calls: Arc::clone(&calls),
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(state.answer(req).await) }
                    });
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, calls, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }
}

impl State {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path_and_query = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let headers = req.headers().clone();
        let body = super::body_bytes(req.into_body()).await;
        let mut problems = Vec::new();
        let n = self.calls.lock().expect("calls").len() + 1;
        let reply = match &self.service {
            Service::Sts(role) => {
                let query: HashMap<String, String> = url::form_urlencoded::parse(
                    path_and_query
                        .split_once('?')
                        .map_or("", |(_, q)| q)
                        .as_bytes(),
                )
                .into_owned()
                .collect();
                let form: HashMap<String, String> =
                    url::form_urlencoded::parse(&body).into_owned().collect();
                let want =
                    |map: &HashMap<String, String>, k: &str, v: &str, p: &mut Vec<String>| {
                        if map.get(k).map(String::as_str) != Some(v) {
                            p.push(format!("{k} is {:?}, want {v:?}", map.get(k)));
                        }
                    };
                let token = std::fs::read_to_string(&role.token_file).unwrap_or_default();
                if method != hyper::Method::POST {
                    problems.push(format!("method {method}"));
                }
                want(&query, "Action", "AssumeRoleWithOIDC", &mut problems);
                want(&query, "Version", "2015-04-01", &mut problems);
                want(&query, "Format", "JSON", &mut problems);
                if !query.contains_key("Timestamp") {
                    problems.push("no Timestamp".into());
                }
                want(&form, "RoleArn", &role.role_arn, &mut problems);
                want(&form, "OIDCProviderArn", &role.provider_arn, &mut problems);
                want(&form, "OIDCToken", token.trim(), &mut problems);
                if form.get("RoleSessionName").is_none_or(|s| s.is_empty()) {
                    problems.push("no RoleSessionName".into());
                }
                if problems.is_empty() {
                    let (id, secret, expiration) = self.keys.issue(n, self.lifetime);
                    ok(json!({"RequestId": format!("req-{n}"), "Credentials": {
                        "AccessKeyId": id, "AccessKeySecret": secret,
                        "SecurityToken": format!("sts-token-{n}"), "Expiration": expiration}}))
                } else {
                    status(
                        400,
                        json!({"Code": "InvalidParameter", "Message": problems.join("; ")}),
                    )
                }
            }
            Service::Metadata { role, token } => {
                if method == hyper::Method::PUT && path_and_query == "/latest/api/token" {
                    if headers
                        .get("x-aliyun-ecs-metadata-token-ttl-seconds")
                        .is_none()
                    {
                        problems.push("token request without a TTL".into());
                    }
                    Response::new(Full::new(Bytes::from(token.clone())))
                } else if path_and_query
                    == format!("/latest/meta-data/ram/security-credentials/{role}")
                {
                    let sent = headers
                        .get("x-aliyun-ecs-metadata-token")
                        .and_then(|v| v.to_str().ok());
                    if sent != Some(token.as_str()) {
                        problems.push(format!("session token {sent:?}"));
                        status(401, json!({"Code": "Unauthorized"}))
                    } else {
                        let (id, secret, expiration) = self.keys.issue(n, self.lifetime);
                        ok(json!({"Code": "Success", "AccessKeyId": id,
                            "AccessKeySecret": secret, "SecurityToken": format!("ecs-token-{n}"),
                            "Expiration": expiration, "LastUpdated": expiration}))
                    }
                } else {
                    problems.push(format!("unexpected {method} {path_and_query}"));
                    status(404, json!({"Code": "NotFound"}))
                }
            }
        };
        self.calls.lock().expect("calls").push(Call {
            path_and_query,
            problems,
        });
        reply
    }
}

fn ok(body: serde_json::Value) -> Response<Full<Bytes>> {
    status(200, body)
}

fn status(code: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}
