//! A small Kubernetes API server on 127.0.0.1 for tests: the real REST paths, content types,
//! object and `Status` shapes, with every request recorded.
//!
//! Served, for any namespaced `/apis/<group>/<version>/namespaces/<ns>/<plural>` or
//! `/api/v1/namespaces/<ns>/<plural>`, and for cluster-scoped `/apis/<g>/<v>/<plural>` and
//! `/api/v1/<plural>`:
//! * `POST` the collection (`application/json`): create; 409 `AlreadyExists` if the name is
//!   taken; `metadata.generateName` gets a suffix.
//! * `GET` the collection, with an optional `labelSelector` of `key=value` terms and a
//!   `fieldSelector` of `metadata.name=...`: list, paged by name with `limit` and `continue` (the
//!   token is the last name of the previous page; [`KubeServer::expire_continue_tokens`] makes
//!   tokens answer 410 `Expired`). With `watch=true`: a watch stream (one JSON event per line,
//!   `ADDED` for what exists, then `ADDED`/`MODIFIED`/`DELETED` as objects change).
//! * `GET`, `PUT` (replace), `DELETE` one object; `PATCH` it with a merge patch
//!   (`application/merge-patch+json`, RFC 7386), a JSON patch (`application/json-patch+json`,
//!   RFC 6902), a strategic merge patch (built-in groups only, applied as a merge patch: enough
//!   for maps; 415 for custom resources, as a real server) or a server-side apply
//!   (`application/apply-patch+yaml`, `fieldManager` required; creates when absent, else
//!   merges); `PATCH` its `/status` subresource (only the patch's `status` is applied). 404
//!   `NotFound` if absent.
//! * Discovery: `/api/v1`, `/apis`, `/apis/<group>/<version>` for the resources of
//!   [`RESOURCES`].
//!
//! Wrong content types get 415, other methods 405. Failures can be injected per method (N
//! times a given status, then normal service) to exercise a client's retries.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use serde_json::{Value, json};

pub const JSON: &str = "application/json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const JSON_PATCH: &str = "application/json-patch+json";
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

type Body = BoxBody<Bytes, std::convert::Infallible>;

/// A resource the discovery endpoints list.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
}

const fn served(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Served {
    Served {
        group,
        version,
        plural,
        kind,
        namespaced,
        short_names,
    }
}

pub const RESOURCES: &[Served] = &[
    served("", "v1", "configmaps", "ConfigMap", true, &["cm"]),
    served("", "v1", "secrets", "Secret", true, &[]),
    served("", "v1", "pods", "Pod", true, &["po"]),
    served("", "v1", "namespaces", "Namespace", false, &["ns"]),
    served("batch", "v1", "jobs", "Job", true, &[]),
    served("apps", "v1", "deployments", "Deployment", true, &["deploy"]),
    served(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
    ),
    served(
        "argoproj.io",
        "v1alpha1",
        "workflows",
        "Workflow",
        true,
        &["wf"],
    ),
    served(
        "argoproj.io",
        "v1alpha1",
        "workflowtaskresults",
        "WorkflowTaskResult",
        true,
        &[],
    ),
    served(
        "argoproj.io",
        "v1alpha1",
        "workflowtasksets",
        "WorkflowTaskSet",
        true,
        &["wfts"],
    ),
    served(
        "argoproj.io",
        "v1alpha1",
        "workflowartifactgctasks",
        "WorkflowArtifactGCTask",
        true,
        &["wfat"],
    ),
];

/// One change of an object, as a watch reports it.
#[derive(Debug, Clone)]
struct Event {
    collection: String,
    kind: &'static str,
    object: Value,
}
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

/// `(method, path, content type)` of each request: the sequence tests compare with Argo's.
pub fn summary(requests: &[Recorded]) -> Vec<(String, String, String)> {
    requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.content_type.clone()))
        .collect()
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
    /// Every change, for the watches open at the time.
    events: Option<tokio::sync::broadcast::Sender<Event>>,
}

impl State {
    fn emit(&self, collection: &str, kind: &'static str, object: &Value) {
        if let Some(events) = &self.events {
            let _ = events.send(Event {
                collection: collection.to_string(),
                kind,
                object: object.clone(),
            });
        }
    }
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
        let state = Arc::new(Mutex::new(State {
            events: Some(tokio::sync::broadcast::channel(1024).0),
            ..State::default()
        }));
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
        let key = collection(group_version, ns, plural);
        let previous = state
            .objects
            .entry(key.clone())
            .or_default()
            .insert(name, stored.clone());
        state.emit(
            &key,
            if previous.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            },
            &stored,
        );
    }

    /// Merge-patches a stored object (how a test plays the controller changing it).
    pub fn update(&self, group_version: &str, ns: &str, plural: &str, name: &str, patch: &Value) {
        let mut state = self.lock();
        let key = collection(group_version, ns, plural);
        state.resource_version += 1;
        let version = state.resource_version.to_string();
        let object = state
            .objects
            .get_mut(&key)
            .and_then(|c| c.get_mut(name))
            .expect("the object to update exists");
        merge_patch(object, patch);
        object["metadata"]["resourceVersion"] = json!(version);
        let updated = object.clone();
        state.emit(&key, "MODIFIED", &updated);
    }

    /// Deletes an object behind the client's back (as a controller or a user might).
    pub fn remove(&self, group_version: &str, ns: &str, plural: &str, name: &str) {
        let mut state = self.lock();
        let key = collection(group_version, ns, plural);
        let removed = state.objects.get_mut(&key).and_then(|c| c.remove(name));
        if let Some(object) = removed {
            state.emit(&key, "DELETED", &object);
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

/// The storage key of a collection; `ns` is empty for cluster-scoped resources.
fn collection(group_version: &str, ns: &str, plural: &str) -> String {
    if ns.is_empty() {
        format!("{group_version}/{plural}")
    } else {
        format!("{group_version}/namespaces/{ns}/{plural}")
    }
}

/// What the API server adds on create: namespace, uid, resourceVersion, creationTimestamp.
fn stamp(state: &mut State, mut object: Value, ns: &str) -> Value {
    state.resource_version += 1;
    let meta = &mut object["metadata"];
    if !ns.is_empty() {
        meta["namespace"] = json!(ns);
    }
    if meta["name"].as_str().is_none_or(str::is_empty)
        && let Some(prefix) = meta["generateName"].as_str()
    {
        meta["name"] = json!(format!("{prefix}{:05}", state.resource_version));
    }
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

/// The parts of a resource path: `/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>[/<sub>]]`
/// or `/api/v1[/namespaces/<ns>]/<plural>[/<name>[/<sub>]]`.
struct Route {
    group_version: String,
    ns: String,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

enum Target {
    Resource(Route),
    /// `/api/v1` or `/apis/<group>/<version>`: the resources of one group version.
    Discovery(String, String),
    /// `/apis`: the groups.
    Groups,
}

fn route(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["apis"] => return Some(Target::Groups),
        ["api", "v1"] => return Some(Target::Discovery(String::new(), "v1".into())),
        ["apis", g, v] => return Some(Target::Discovery((*g).into(), (*v).into())),
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, more @ ..] => (*ns, [&[*plural][..], more].concat()),
        other => ("", other.to_vec()),
    };
    match rest.as_slice() {
        [plural, more @ ..] if more.len() <= 2 => Some(Target::Resource(Route {
            group_version,
            ns: ns.to_string(),
            plural: (*plural).to_string(),
            name: more.first().map(|s| (*s).to_string()),
            subresource: more.get(1).map(|s| (*s).to_string()),
        })),
        _ => None,
    }
}

/// `APIResourceList` of one group version, or `None` if it serves nothing.
fn discovery(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            // Every singular name served here is the kind in lower case.
            let singular = r.kind.to_ascii_lowercase();
            json!({"name": r.plural, "singularName": singular, "namespaced": r.namespaced,
                   "kind": r.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                   "shortNames": r.short_names})
        })
        .collect();
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    (!resources.is_empty()).then(|| {
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
    })
}

fn groups() -> Value {
    let mut names: Vec<(&str, &str)> = RESOURCES
        .iter()
        .filter(|r| !r.group.is_empty())
        .map(|r| (r.group, r.version))
        .collect();
    names.dedup();
    let groups: Vec<Value> = names
        .iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Whether the group is served by the API server itself (strategic merge patch works there).
fn is_builtin_group(group_version: &str) -> bool {
    match group_version.split_once('/') {
        None => true,
        Some((group, _)) => !group.contains('.') || group.ends_with(".k8s.io"),
    }
}

/// RFC 6902 `add`, `replace`, `remove` and `test` (what tests send).
fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("a JSON patch is an array")? {
        let path = op["path"].as_str().ok_or("op without path")?;
        let tokens: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        let (last, parents) = tokens.split_last().ok_or("empty path")?;
        let mut parent = &mut *target;
        for t in parents {
            parent = match parent {
                Value::Object(m) => m.get_mut(t).ok_or(format!("{path}: missing {t}"))?,
                Value::Array(a) => {
                    let i: usize = t.parse().map_err(|_| format!("{path}: bad index"))?;
                    a.get_mut(i).ok_or(format!("{path}: index out of range"))?
                }
                _ => return Err(format!("{path}: not a container")),
            };
        }
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        match (op["op"].as_str(), parent) {
            (Some("add" | "replace"), Value::Object(m)) => {
                m.insert(last.clone(), value);
            }
            (Some("add"), Value::Array(a)) if last == "-" => a.push(value),
            (Some("add"), Value::Array(a)) => {
                a.insert(last.parse().map_err(|_| "bad index")?, value);
            }
            (Some("remove"), Value::Object(m)) => {
                m.remove(last).ok_or(format!("{path}: nothing to remove"))?;
            }
            (Some("test"), Value::Object(m)) if m.get(last) == Some(&value) => {}
            (other, _) => return Err(format!("unsupported or failed op {other:?} at {path}")),
        }
    }
    Ok(())
}

fn status(code: u16, reason: &str, message: String, details: Value) -> Response<Body> {
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

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("status code"))
        .header("content-type", JSON)
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("response")
}

fn unsupported_media(accepted: &str) -> Response<Body> {
    status(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: {accepted}"
        ),
        json!({}),
    )
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

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// `metadata.name=x` (the only field selector the executor sends).
fn matches_fields(object: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .all(|term| match term.split_once('=') {
            Some(("metadata.name", v)) => {
                object["metadata"]["name"].as_str() == Some(v.trim_start_matches('='))
            }
            Some(("metadata.namespace", v)) => {
                object["metadata"]["namespace"].as_str() == Some(v.trim_start_matches('='))
            }
            _ => false,
        })
}

/// A watch response: `ADDED` for each matching object now, then every later change, one JSON
/// event per line, until the client goes away or the server stops.
fn watch_stream(
    initial: Vec<Value>,
    changes: tokio::sync::broadcast::Receiver<Event>,
    key: String,
    labels: String,
    fields: String,
) -> Response<Body> {
    let line = |kind: &str, object: &Value| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(format!(
            "{}\n",
            json!({"type": kind, "object": object})
        ))))
    };
    let first = futures::stream::iter(initial.into_iter().map(move |o| line("ADDED", &o)));
    let later = futures::stream::unfold(changes, move |mut changes| {
        let (key, labels, fields) = (key.clone(), labels.clone(), fields.clone());
        async move {
            loop {
                match changes.recv().await {
                    Ok(e)
                        if e.collection == key
                            && matches_selector(&e.object, &labels)
                            && matches_fields(&e.object, &fields) =>
                    {
                        return Some((line(e.kind, &e.object), changes));
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let body = StreamBody::new(futures::StreamExt::chain(first, later));
    Response::builder()
        .status(200)
        .header("content-type", JSON)
        .body(BodyExt::boxed(body))
        .expect("response")
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Response<Body> {
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

    let not_found = || {
        status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            json!({}),
        )
    };
    let r = match route(&path) {
        Some(Target::Resource(r)) => r,
        Some(Target::Groups) if method == Method::GET => return respond(200, &groups()),
        Some(Target::Discovery(g, v)) if method == Method::GET => {
            return discovery(&g, &v).map_or_else(not_found, |list| respond(200, &list));
        }
        _ => return not_found(),
    };
    let group = r
        .group_version
        .split_once('/')
        .map_or("", |(g, _)| g)
        .to_string();
    let details = |name: &str| json!({"name": name, "group": group, "kind": r.plural});
    let resource = if group.is_empty() {
        r.plural.clone()
    } else {
        format!("{}.{group}", r.plural)
    };
    let absent = |name: &str| {
        status(
            404,
            "NotFound",
            format!("{resource} \"{name}\" not found"),
            details(name),
        )
    };

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
    let ns = r.ns.clone();
    match (&method, r.name.as_deref(), r.subresource.as_deref()) {
        (&Method::POST, None, None) => {
            if !content_type.starts_with(JSON) {
                return unsupported_media(JSON);
            }
            let Some(object) = body else {
                return status(400, "BadRequest", "empty body".into(), json!({}));
            };
            let has_name = object["metadata"]["name"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
                || object["metadata"]["generateName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty());
            if !has_name {
                return status(
                    422,
                    "Invalid",
                    format!("{resource} is invalid: metadata.name: Required value"),
                    json!({}),
                );
            }
            if let Some(name) = object["metadata"]["name"].as_str()
                && state
                    .objects
                    .get(&key)
                    .is_some_and(|c| c.contains_key(name))
            {
                return status(
                    409,
                    "AlreadyExists",
                    format!("{resource} \"{name}\" already exists"),
                    details(name),
                );
            }
            let stored = stamp(&mut state, object, &ns);
            let name = stored["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            state
                .objects
                .entry(key.clone())
                .or_default()
                .insert(name, stored.clone());
            state.emit(&key, "ADDED", &stored);
            respond(201, &stored)
        }
        (&Method::GET, None, None) => {
            let selector = query_param(&query, "labelSelector").unwrap_or_default();
            let fields = query_param(&query, "fieldSelector").unwrap_or_default();
            if matches!(query_param(&query, "watch").as_deref(), Some("true" | "1")) {
                let initial: Vec<Value> = state
                    .objects
                    .get(&key)
                    .into_iter()
                    .flat_map(|c| c.values())
                    .filter(|o| matches_selector(o, &selector) && matches_fields(o, &fields))
                    .cloned()
                    .collect();
                let changes = state.events.as_ref().expect("events").subscribe();
                return watch_stream(initial, changes, key, selector, fields);
            }
            let after = query_param(&query, "continue");
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
            let limit = query_param(&query, "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            let mut matching = state
                .objects
                .get(&key)
                .into_iter()
                .flat_map(|c| c.iter())
                .filter(|(name, _)| after.as_deref().is_none_or(|a| name.as_str() > a))
                .filter(|(_, o)| matches_selector(o, &selector) && matches_fields(o, &fields));
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
            None => absent(name),
        },
        (&Method::PUT, Some(name), None) => {
            if !content_type.starts_with(JSON) {
                return unsupported_media(JSON);
            }
            let Some(mut object) = body else {
                return status(400, "BadRequest", "empty body".into(), json!({}));
            };
            let Some(existing) = state.objects.get(&key).and_then(|c| c.get(name)).cloned() else {
                return absent(name);
            };
            state.resource_version += 1;
            object["metadata"]["namespace"] = existing["metadata"]["namespace"].clone();
            object["metadata"]["uid"] = existing["metadata"]["uid"].clone();
            object["metadata"]["creationTimestamp"] =
                existing["metadata"]["creationTimestamp"].clone();
            object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
            state
                .objects
                .entry(key.clone())
                .or_default()
                .insert(name.to_string(), object.clone());
            state.emit(&key, "MODIFIED", &object);
            respond(200, &object)
        }
        (&Method::DELETE, Some(name), None) => {
            match state.objects.get_mut(&key).and_then(|c| c.remove(name)) {
                Some(object) => {
                    state.emit(&key, "DELETED", &object);
                    respond(
                        200,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details(name)}),
                    )
                }
                None => absent(name),
            }
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let patch = body.unwrap_or(Value::Null);
            let exists = state
                .objects
                .get(&key)
                .is_some_and(|c| c.contains_key(name));
            match content_type.as_str() {
                MERGE_PATCH | JSON_PATCH => {}
                STRATEGIC_MERGE_PATCH if is_builtin_group(&r.group_version) => {}
                STRATEGIC_MERGE_PATCH => {
                    return unsupported_media(
                        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    );
                }
                APPLY_PATCH if sub.is_none() => {
                    if query_param(&query, "fieldManager").is_none() {
                        return status(
                            400,
                            "BadRequest",
                            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
                            json!({}),
                        );
                    }
                    if !exists {
                        let stored = stamp(&mut state, patch, &ns);
                        state
                            .objects
                            .entry(key.clone())
                            .or_default()
                            .insert(name.to_string(), stored.clone());
                        state.emit(&key, "ADDED", &stored);
                        return respond(201, &stored);
                    }
                }
                _ => {
                    return unsupported_media(
                        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    );
                }
            }
            if !exists {
                return absent(name);
            }
            let patch = match sub {
                Some(_) if content_type != JSON_PATCH => {
                    json!({"status": patch.get("status").cloned().unwrap_or(Value::Null)})
                }
                _ => patch,
            };
            state.resource_version += 1;
            let version = state.resource_version.to_string();
            let Some(object) = state.objects.get_mut(&key).and_then(|c| c.get_mut(name)) else {
                return absent(name);
            };
            if content_type == JSON_PATCH {
                let mut patched = object.clone();
                if let Err(e) = json_patch(&mut patched, &patch) {
                    return status(
                        422,
                        "Invalid",
                        format!("the JSON patch failed: {e}"),
                        details(name),
                    );
                }
                *object = patched;
            } else {
                merge_patch(object, &patch);
            }
            object["metadata"]["resourceVersion"] = json!(version);
            let updated = object.clone();
            state.emit(&key, "MODIFIED", &updated);
            respond(200, &updated)
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
