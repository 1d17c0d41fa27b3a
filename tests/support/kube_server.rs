//! A small Kubernetes API server on 127.0.0.1 for tests: the real REST paths, content types,
//! object and `Status` shapes for namespaced custom resources, with every request recorded.
//!
//! Served, for any `/apis/<group>/<version>/namespaces/<ns>/<plural>`:
//! * `POST` the collection (`application/json`): create; 409 `AlreadyExists` if the name is taken.
//! * `GET` the collection, with an optional `labelSelector` of `key=value` terms: list, paged
//!   by name with `limit` and `continue` (the token is the last name of the previous page;
//!   [`KubeServer::expire_continue_tokens`] makes tokens answer 410 `Expired`).
//! * `GET`, `PATCH` (`application/merge-patch+json`, RFC 7386) one object, and `PATCH` its
//!   `/status` subresource (only the patch's `status` is applied); 404 `NotFound` if absent.
//!
//! Wrong content types get 415, other methods 405. Failures can be injected per method (N
//! times a given status, then normal service) to exercise a client's retries.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use serde_json::{Value, json};

pub const JSON: &str = "application/json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const TOKEN: &str = "argoexec-test-token";

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub authorization: String,
    /// The body parsed as JSON (`None` when empty).
    pub body: Option<Value>,
}

/// Answer the next `times` requests with this `method` (any when `None`) with `status`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<Method>,
    pub status: u16,
    pub times: usize,
}

impl Fault {
    /// `times` answers of `status` to `method` requests.
    pub fn on(method: Method, status: u16, times: usize) -> Self {
        Self {
            method: Some(method),
            status,
            times,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Collection path (`<group>/<version>/namespaces/<ns>/<plural>`) -> name -> object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
    resource_version: u64,
    /// Continue tokens still to refuse with 410 Expired.
    expired_tokens: usize,
}

pub struct KubeServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KubeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the API server");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
                    });
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The stored object, e.g. `object("argoproj.io/v1alpha1", "argo", "workflowtaskresults", n)`.
    pub fn object(&self, group_version: &str, ns: &str, plural: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&collection(group_version, ns, plural))
            .and_then(|c| c.get(name))
            .cloned()
    }

    /// Stores an object directly (how a test plays the controller, e.g. for GC tasks).
    pub fn insert(&self, group_version: &str, ns: &str, plural: &str, object: Value) {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let mut state = self.lock();
        let stored = stamp(&mut state, object, ns);
        state
            .objects
            .entry(collection(group_version, ns, plural))
            .or_default()
            .insert(name, stored);
    }

    /// Deletes an object behind the client's back (as a controller or a user might).
    pub fn remove(&self, group_version: &str, ns: &str, plural: &str, name: &str) {
        if let Some(c) = self
            .lock()
            .objects
            .get_mut(&collection(group_version, ns, plural))
        {
            c.remove(name);
        }
    }

    /// The next `times` requests carrying a continue token get 410 `Expired`, as an API server
    /// answers a token older than its compaction window.
    pub fn expire_continue_tokens(&self, times: usize) {
        self.lock().expired_tokens = times;
    }

    /// Queues a failure (after any already queued).
    pub fn fail(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// A kubeconfig (JSON is YAML) for this server with a bearer token and `namespace`.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": format!("http://{}", self.addr)}}],
            "users": [{"name": "test", "user": {"token": TOKEN}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}],
            "current-context": "test",
        });
        let path = dir.join("kubeconfig");
        std::fs::write(&path, config.to_string()).expect("write kubeconfig");
        path
    }
}

/// A test pod with an API server, and a kubeconfig for it (in the pod's root) whose context
/// namespace is `namespace`.
pub struct PodWithApi {
    pub pod: super::TestPod,
    pub kube: KubeServer,
    pub kubeconfig: String,
}

impl PodWithApi {
    pub async fn start(namespace: &str) -> Self {
        let pod = super::TestPod::new().await;
        let kube = KubeServer::start().await;
        let kubeconfig = kube
            .kubeconfig(pod.root.path(), namespace)
            .to_string_lossy()
            .into_owned();
        Self {
            pod,
            kube,
            kubeconfig,
        }
    }
}

fn collection(group_version: &str, ns: &str, plural: &str) -> String {
    format!("{group_version}/namespaces/{ns}/{plural}")
}

/// What the API server adds on create: namespace, uid, resourceVersion, creationTimestamp.
fn stamp(state: &mut State, mut object: Value, ns: &str) -> Value {
    state.resource_version += 1;
    let meta = &mut object["metadata"];
    meta["namespace"] = json!(ns);
    meta["uid"] = json!(format!(
        "00000000-0000-4000-8000-{:012}",
        state.resource_version
    ));
    meta["resourceVersion"] = json!(state.resource_version.to_string());
    meta["creationTimestamp"] = json!("2026-11-23T10:00:00Z");
    object
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in fields {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The parts of `/apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>[/<sub>]]`.
struct Route {
    group_version: String,
    ns: String,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["apis", group, version, "namespaces", ns, plural, rest @ ..] if rest.len() <= 2 => {
            Some(Route {
                group_version: format!("{group}/{version}"),
                ns: (*ns).to_string(),
                plural: (*plural).to_string(),
                name: rest.first().map(|s| (*s).to_string()),
                subresource: rest.get(1).map(|s| (*s).to_string()),
            })
        }
        _ => None,
    }
}

fn status(code: u16, reason: &str, message: String, details: Value) -> Response<Full<Bytes>> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    });
    respond(code, &body)
}

fn respond(code: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("status code"))
        .header("content-type", JSON)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn reason_of(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = header("content-type");
    let authorization = header("authorization");
    let raw = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return status(
                400,
                "BadRequest",
                format!("reading the body: {e}"),
                json!({}),
            );
        }
    };
    let body: Option<Value> = if raw.is_empty() {
        None
    } else {
        match serde_json::from_slice(&raw) {
            Ok(v) => Some(v),
            Err(e) => return status(400, "BadRequest", format!("invalid JSON: {e}"), json!({})),
        }
    };
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    state.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        authorization,
        body: body.clone(),
    });

    let Some(r) = route(&path) else {
        return status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            json!({}),
        );
    };
    let group = r
        .group_version
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let details = |name: &str| json!({"name": name, "group": group, "kind": r.plural});
    let resource = format!("{}.{group}", r.plural);

    if let Some(fault) = state
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && f.method.as_ref().is_none_or(|m| *m == method))
    {
        fault.times -= 1;
        let code = fault.status;
        let name = r.name.clone().unwrap_or_default();
        let message = match code {
            403 => {
                let verb = match (&method, r.name.is_some()) {
                    (&Method::POST, _) => "create",
                    (&Method::PATCH, _) => "patch",
                    (&Method::GET, true) => "get",
                    (&Method::GET, false) => "list",
                    _ => "access",
                };
                let object = match &r.name {
                    Some(name) => format!("{resource} \"{name}\""),
                    None => resource.clone(),
                };
                format!(
                    "{object} is forbidden: User \"system:serviceaccount:{ns}:default\" cannot {verb} resource \"{plural}\" in API group \"{group}\" in the namespace \"{ns}\"",
                    ns = r.ns,
                    plural = r.plural,
                )
            }
            _ => format!("injected failure {code}"),
        };
        return status(code, reason_of(code), message, details(&name));
    }

    let key = collection(&r.group_version, &r.ns, &r.plural);
    match (&method, r.name.as_deref(), r.subresource.as_deref()) {
        (&Method::POST, None, None) => {
            if !content_type.starts_with(JSON) {
                return status(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: {JSON}"
                    ),
                    json!({}),
                );
            }
            let Some(object) = body else {
                return status(400, "BadRequest", "empty body".into(), json!({}));
            };
            let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
                return status(
                    422,
                    "Invalid",
                    format!("{resource} is invalid: metadata.name: Required value"),
                    json!({}),
                );
            };
            if state
                .objects
                .get(&key)
                .is_some_and(|c| c.contains_key(&name))
            {
                return status(
                    409,
                    "AlreadyExists",
                    format!("{resource} \"{name}\" already exists"),
                    details(&name),
                );
            }
            let stored = stamp(&mut state, object, &r.ns);
            state
                .objects
                .entry(key)
                .or_default()
                .insert(name, stored.clone());
            respond(201, &stored)
        }
        (&Method::GET, None, None) => {
            let param = |name: &str| {
                url::form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
                    .filter(|v| !v.is_empty())
            };
            let selector = param("labelSelector").unwrap_or_default();
            let after = param("continue");
            if after.is_some() && state.expired_tokens > 0 {
                state.expired_tokens -= 1;
                return status(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result."
                        .into(),
                    json!({}),
                );
            }
            let limit = param("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            let mut matching = state
                .objects
                .get(&key)
                .into_iter()
                .flat_map(|c| c.iter())
                .filter(|(name, _)| after.as_deref().is_none_or(|a| name.as_str() > a))
                .filter(|(_, o)| matches_selector(o, &selector));
            let items: Vec<(String, Value)> = matching
                .by_ref()
                .take(limit)
                .map(|(n, o)| (n.clone(), o.clone()))
                .collect();
            let more = matching.next().is_some();
            let kind = items
                .first()
                .and_then(|(_, o)| o["kind"].as_str())
                .map_or_else(|| "List".to_string(), |k| format!("{k}List"));
            let mut metadata = json!({"resourceVersion": state.resource_version.to_string()});
            if more && let Some((last, _)) = items.last() {
                metadata["continue"] = json!(last);
            }
            respond(
                200,
                &json!({
                    "apiVersion": r.group_version,
                    "kind": kind,
                    "metadata": metadata,
                    "items": items.into_iter().map(|(_, o)| o).collect::<Vec<_>>(),
                }),
            )
        }
        (&Method::GET, Some(name), None) => match state.objects.get(&key).and_then(|c| c.get(name))
        {
            Some(object) => respond(200, object),
            None => status(
                404,
                "NotFound",
                format!("{resource} \"{name}\" not found"),
                details(name),
            ),
        },
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            if content_type != MERGE_PATCH {
                return status(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: {MERGE_PATCH}"
                    ),
                    json!({}),
                );
            }
            let patch = body.unwrap_or(Value::Null);
            let patch = match sub {
                Some(_) => json!({"status": patch.get("status").cloned().unwrap_or(Value::Null)}),
                None => patch,
            };
            state.resource_version += 1;
            let version = state.resource_version.to_string();
            match state.objects.get_mut(&key).and_then(|c| c.get_mut(name)) {
                Some(object) => {
                    merge_patch(object, &patch);
                    object["metadata"]["resourceVersion"] = json!(version);
                    respond(200, object)
                }
                None => status(
                    404,
                    "NotFound",
                    format!("{resource} \"{name}\" not found"),
                    details(name),
                ),
            }
        }
        _ => status(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            ),
            json!({}),
        ),
    }
}

/// Equality-based label selectors (`a=b,c=d`), the only kind the executor sends.
fn matches_selector(object: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|term| !term.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => {
                let v = v.trim_start_matches('='); // `a==b` is equality too
                object["metadata"]["labels"][k.trim()].as_str() == Some(v.trim())
            }
            None => false,
        })
}
