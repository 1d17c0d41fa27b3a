//! `argoexec resource <action>`: the main container of a resource template
//! (docs/contract.md#commands), through the Kubernetes API instead of kubectl.
//!
//! As Argo's: create the empty WorkflowTaskResult; stage the manifest (`/tmp/manifest.yaml`,
//! or the `manifestFrom` input artifact's path); run the action (`get`, `create`, `apply`,
//! `delete`, `patch`, `replace`) on the one object of the manifest; unless deleting, poll the
//! live object until `successCondition` holds or `failureCondition` does (every
//! `RESOURCE_STATE_CHECK_INTERVAL`, default 5 s); read the output parameters from
//! it and report them; label the result complete (unless logs are archived: then the wait
//! container reports). The first failure is the container's message, exit 64.
//!
//! Differences from kubectl, on purpose: `apply` is a server-side apply (field manager
//! `argoexec`, conflicts forced) rather than kubectl's client-side three-way merge; only the
//! kubectl flags listed in [`Flags`] are understood, any other is refused by name.
//! Output parameters: `jsonPath` (kubectl's templates) and `jqFilter` (jq, through jaq).

use std::time::{Duration, SystemTime};

use http::Method;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

use super::pod::{required_env, template_from_env_or_file, write_atomic};
use super::{CommandError, Pod};
use crate::report::{ApiOptions, ErrorKind, KubeClient, TaskResultIdentity, TaskResults};
use crate::resource::api::{self, ResourceApi, ResourceType, kubectl_message};
use crate::resource::{jq, jsonpath, selector};
use argoexec::contract::{self, env, parse_go_duration};
use argoexec::model::{NodeResult, Outputs, Template};

/// Poll period of the conditions (Go duration; Argo's variable and default).
pub const ENV_CHECK_INTERVAL: &str = "RESOURCE_STATE_CHECK_INTERVAL";
/// The field manager of `apply`.
pub const FIELD_MANAGER: &str = "argoexec";
const MANIFEST_PATH: &str = "/tmp/manifest.yaml";
/// How often a deleted object is checked for being gone (kubectl's `--wait`).
const DELETE_POLL: Duration = Duration::from_secs(1);

/// The `resource` part of the template.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceTemplate {
    #[serde(default)]
    merge_strategy: String,
    #[serde(default)]
    manifest: String,
    #[serde(default)]
    manifest_from: Option<ManifestFrom>,
    #[serde(default)]
    set_owner_reference: bool,
    #[serde(default)]
    success_condition: String,
    #[serde(default)]
    failure_condition: String,
    #[serde(default)]
    flags: Vec<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ManifestFrom {
    #[serde(default)]
    artifact: Option<ArtifactRef>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ArtifactRef {
    #[serde(default)]
    name: String,
}

pub async fn run(pod: &Pod, api: &ApiOptions, action: &str) -> Result<(), CommandError> {
    required_env(env::POD_NAME)?;
    let template = template_from_env_or_file(&pod.roots)?.template;
    let results = TaskResults::connect(api, TaskResultIdentity::from_env())
        .await
        .map_err(CommandError::failed)?;
    let mut errors: Vec<String> = Vec::new();
    if let Err(e) = results.initialize().await {
        errors.push(e.to_string());
    }
    // SIGTERM (the pod stopping) ends the action, as a cancelled context ends Argo's; the
    // result is still labelled complete.
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| CommandError::failed(format!("cannot handle SIGTERM: {e}")))?;
    let outcome = tokio::select! {
        outcome = execute(pod, api, &template, action, &results) => outcome,
        _ = sigterm.recv() => Err("context canceled: SIGTERM received".to_string()),
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "executor error");
        errors.push(e);
    }
    // The wait container reports (and labels) when logs are archived.
    if !template.archive_logs()
        && let Err(e) = results.finalize().await
    {
        errors.push(e.to_string());
    }
    match errors.into_iter().next() {
        Some(first) => Err(CommandError::failed(first)),
        None => Ok(()),
    }
}

async fn execute(
    pod: &Pod,
    api_options: &ApiOptions,
    template: &Template,
    action: &str,
    results: &TaskResults,
) -> Result<(), String> {
    let resource: ResourceTemplate = serde_json::from_value(
        template
            .resource
            .clone()
            .ok_or("the template has no resource")?,
    )
    .map_err(|e| format!("the resource template is malformed: {e}"))?;
    let manifest_path = stage_manifest(pod, template, &resource)?;
    let is_delete = action == "delete";
    if is_delete
        && (!resource.success_condition.is_empty()
            || !resource.failure_condition.is_empty()
            || !template.outputs.parameters.is_empty())
    {
        return Err(
            "successCondition, failureCondition and outputs are not supported for delete action"
                .to_string(),
        );
    }
    let client = KubeClient::connect(api_options)
        .await
        .map_err(|e| e.to_string())?
        .ok_or(
            "resource templates need the Kubernetes API (in-cluster configuration or --kubeconfig)",
        )?;
    let api = ResourceApi::new(client);
    let manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("open {}: {e}", manifest_path.display()))?;
    let flags = Flags::parse(&resource.flags)?;
    if manifest.trim().is_empty() && resource.flags.is_empty() {
        return Err("Must provide at least one of flags or manifest.".to_string());
    }
    let request = Request::build(&api, action, &resource, &manifest, &flags).await?;
    let Some(object) = request.send(&api, &flags).await? else {
        return Ok(());
    };
    let live = Live::of(&request, &object)?;
    tracing::info!(
        namespace = live.namespace.as_deref().unwrap_or_default(),
        resource = live.full_name,
        self_link = live.path,
        "Resource"
    );
    wait_for_conditions(&api, &resource, &live).await?;
    save_parameters(&api, template, &live, results).await
}

/// Writes the manifest where Argo does (`/tmp/manifest.yaml`), or finds the `manifestFrom`
/// input artifact's path. Returns the file to read.
fn stage_manifest(
    pod: &Pod,
    template: &Template,
    resource: &ResourceTemplate,
) -> Result<std::path::PathBuf, String> {
    if let Some(from) = resource
        .manifest_from
        .as_ref()
        .and_then(|m| m.artifact.as_ref())
    {
        tracing::info!(name = from.name, "manifest already staged");
        let path = template
            .inputs
            .artifacts
            .iter()
            .find(|a| a.name == from.name)
            .map_or(MANIFEST_PATH, |a| a.path.as_str());
        return Ok(pod.roots.path(path));
    }
    let path = pod.roots.path(MANIFEST_PATH);
    tracing::info!(path = %path.display(), "Loading manifest");
    write_atomic(&path, resource.manifest.as_bytes(), 0o644)
        .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
    Ok(path)
}

/// The kubectl flags a resource template may carry that mean something without kubectl.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flags {
    /// `-n`, `--namespace`.
    pub namespace: Option<String>,
    /// `TYPE NAME` or `TYPE/NAME`.
    pub target: Option<(String, String)>,
    /// `--field-manager` (apply).
    pub field_manager: Option<String>,
    /// `--wait=false` (delete): do not wait for the object to be gone.
    pub no_wait: bool,
    /// `--cascade=background|foreground|orphan` (delete).
    pub propagation: Option<String>,
    /// `--grace-period=N` (delete).
    pub grace_period: Option<i64>,
}

impl Flags {
    pub fn parse(flags: &[String]) -> Result<Self, String> {
        let mut out = Self::default();
        let mut positional = Vec::new();
        let mut iter = flags.iter().flat_map(|f| f.split_whitespace()).peekable();
        while let Some(flag) = iter.next() {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) if n.starts_with('-') => (n, Some(v.to_string())),
                _ => (flag, None),
            };
            let mut value = |what: &str| -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| iter.next().map(str::to_string))
                    .ok_or_else(|| format!("flag {what} needs a value"))
            };
            match name {
                "-n" | "--namespace" => out.namespace = Some(value(name)?),
                "--field-manager" => out.field_manager = Some(value(name)?),
                "--wait" => out.no_wait = inline.as_deref() == Some("false"),
                "--cascade" => {
                    out.propagation = Some(match inline.as_deref().unwrap_or("background") {
                        "background" | "true" => "Background".to_string(),
                        "foreground" => "Foreground".to_string(),
                        "orphan" | "false" => "Orphan".to_string(),
                        other => return Err(format!("invalid --cascade value {other:?}")),
                    });
                }
                "--grace-period" => {
                    let v = value(name)?;
                    out.grace_period = Some(
                        v.parse()
                            .map_err(|_| format!("invalid --grace-period {v:?}"))?,
                    );
                }
                // Validation is the server's job; server-side apply is what apply does here.
                "--validate" | "--server-side" | "--force-conflicts" | "--ignore-not-found" => {
                    tracing::info!(flag, "flag accepted: it has no effect without kubectl");
                }
                other if other.starts_with('-') => {
                    return Err(format!(
                        "flag {other} is not supported by argoexec-rs, which calls the Kubernetes API without kubectl (supported: -n/--namespace, --field-manager, --wait, --cascade, --grace-period, --validate, --server-side, --force-conflicts, --ignore-not-found)"
                    ));
                }
                other => positional.push(other.to_string()),
            }
        }
        out.target = match positional.as_slice() {
            [] => None,
            [one] => match one.split_once('/') {
                Some((t, n)) => Some((t.to_string(), n.to_string())),
                None => {
                    return Err(format!(
                        "resource {one:?} needs a name: TYPE NAME or TYPE/NAME"
                    ));
                }
            },
            [t, n] => Some((t.clone(), n.clone())),
            more => return Err(format!("too many resource arguments: {}", more.join(" "))),
        };
        Ok(out)
    }
}

/// One API request an action comes down to.
#[derive(Debug)]
struct Request {
    action: String,
    resource: ResourceType,
    namespace: Option<String>,
    name: String,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
}

impl Request {
    async fn build(
        api: &ResourceApi,
        action: &str,
        resource: &ResourceTemplate,
        manifest: &str,
        flags: &Flags,
    ) -> Result<Self, String> {
        let strategy = if resource.merge_strategy.is_empty() {
            "strategic"
        } else {
            resource.merge_strategy.as_str()
        };
        let mut document: Value = if manifest.trim().is_empty() {
            Value::Null
        } else {
            serde_saphyr::from_str(manifest)
                .map_err(|e| format!("the manifest is not one YAML or JSON document: {e}"))?
        };
        // The controller adds the owner reference to an inline `manifest` only; a
        // `manifestFrom` artifact gets it here (Argo drops it silently).
        if resource.set_owner_reference
            && resource.manifest_from.is_some()
            && matches!(action, "create" | "apply" | "replace")
        {
            add_owner_reference(&mut document);
        }
        // `kubectl patch TYPE NAME --patch-file`: the target from the flags when the manifest
        // is a JSON patch or names no kind.
        let from_flags = match action {
            "patch" => strategy == "json" || document.get("kind").is_none(),
            _ => document.is_null(),
        };
        let (resource_type, mut namespace, name) = if from_flags {
            let (type_name, name) = flags.target.clone().ok_or_else(|| {
                format!("{action} needs the resource in the flags (TYPE NAME) when the manifest does not name it")
            })?;
            let t = api
                .discover_type(&type_name)
                .await
                .map_err(|e| e.to_string())?;
            (t, None, name)
        } else {
            if flags.target.is_some() {
                return Err(format!(
                    "{action}: give the resource either in the manifest or in the flags, not both"
                ));
            }
            let text = |field: &str| document[field].as_str().unwrap_or_default().to_string();
            let (api_version, kind) = (text("apiVersion"), text("kind"));
            if api_version.is_empty() || kind.is_empty() {
                return Err(
                    "Kind and name are both required but at least one of them is missing from the manifest"
                        .to_string(),
                );
            }
            let t = api
                .discover_kind(&api_version, &kind)
                .await
                .map_err(|e| e.to_string())?;
            let meta = &document["metadata"];
            let namespace = meta["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_string);
            (
                t,
                namespace,
                meta["name"].as_str().unwrap_or_default().to_string(),
            )
        };
        if let (Some(from_manifest), Some(flag)) = (&namespace, &flags.namespace)
            && from_manifest != flag
        {
            return Err(format!(
                "the namespace from the provided object \"{from_manifest}\" does not match the namespace \"{flag}\". You must pass '--namespace={from_manifest}' to perform this operation."
            ));
        }
        if resource_type.namespaced {
            namespace = namespace
                .or_else(|| flags.namespace.clone())
                .or_else(|| Some(api.namespace().to_string()));
        } else {
            namespace = None;
        }
        let json_body = || serde_json::to_vec(&document).map_err(|e| e.to_string());
        let (content_type, body) = match action {
            "get" | "delete" => (None, None),
            "create" | "replace" => (Some(api::JSON), Some(json_body()?)),
            "apply" => (Some(api::APPLY_PATCH), Some(json_body()?)),
            "patch" => {
                let ct = match strategy {
                    "strategic" => api::STRATEGIC_MERGE_PATCH,
                    "merge" => api::MERGE_PATCH,
                    "json" => api::JSON_PATCH,
                    other => {
                        return Err(format!(
                            "unknown mergeStrategy {other:?}: strategic, merge or json"
                        ));
                    }
                };
                (Some(ct), Some(json_body()?))
            }
            other => {
                return Err(format!(
                    "unknown action {other:?}: get, create, apply, delete, patch or replace"
                ));
            }
        };
        if name.is_empty() && action != "create" {
            return Err("resource name may not be empty".to_string());
        }
        Ok(Self {
            action: action.to_string(),
            resource: resource_type,
            namespace,
            name,
            content_type,
            body,
        })
    }

    fn collection(&self) -> String {
        self.resource.collection(self.namespace.as_deref())
    }

    fn item(&self) -> String {
        format!("{}/{}", self.collection(), self.name)
    }

    /// Runs the request: the resulting object, or `None` for a delete.
    async fn send(&self, api: &ResourceApi, flags: &Flags) -> Result<Option<Value>, String> {
        let fail = |e: crate::report::Error| format!("no more retries {}", kubectl_message(&e));
        let ct = self.content_type;
        let object = match self.action.as_str() {
            "get" => api.request(Method::GET, &self.item(), None, None).await,
            "create" => {
                api.request(Method::POST, &self.collection(), ct, self.body.clone())
                    .await
            }
            "replace" => {
                api.request(Method::PUT, &self.item(), ct, self.body.clone())
                    .await
            }
            "patch" => {
                api.request(Method::PATCH, &self.item(), ct, self.body.clone())
                    .await
            }
            "apply" => {
                let manager = flags.field_manager.as_deref().unwrap_or(FIELD_MANAGER);
                let uri = format!("{}?fieldManager={manager}&force=true", self.item());
                api.request(Method::PATCH, &uri, ct, self.body.clone())
                    .await
            }
            _ => return self.delete(api, flags).await.map(|()| None),
        };
        object.map(Some).map_err(fail)
    }

    /// `kubectl delete --ignore-not-found`: a missing object is fine; then, unless
    /// `--wait=false`, polls until the object is gone (finalizers done), bounded by the
    /// step's deadline.
    async fn delete(&self, api: &ResourceApi, flags: &Flags) -> Result<(), String> {
        let mut options = json!({
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": flags.propagation.as_deref().unwrap_or("Background"),
        });
        if let Some(seconds) = flags.grace_period {
            options["gracePeriodSeconds"] = json!(seconds);
        }
        let body = serde_json::to_vec(&options).map_err(|e| e.to_string())?;
        match api
            .request(Method::DELETE, &self.item(), Some(api::JSON), Some(body))
            .await
        {
            Ok(_) => tracing::info!(resource = self.item(), "deleted"),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::info!(resource = self.item(), "not found: nothing to delete");
                return Ok(());
            }
            Err(e) => return Err(format!("no more retries {}", kubectl_message(&e))),
        }
        if flags.no_wait {
            return Ok(());
        }
        let deadline = contract::deadline_from_env();
        loop {
            match api.once(Method::GET, &self.item(), None, None).await {
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) if !e.kind().is_retried() => {
                    return Err(format!("waiting for the deletion: {}", kubectl_message(&e)));
                }
                _ => {}
            }
            if deadline.is_some_and(|d| SystemTime::now() >= d) {
                return Err(format!(
                    "timed out waiting for the deletion of {} at the step's deadline",
                    self.item()
                ));
            }
            tokio::time::sleep(DELETE_POLL).await;
        }
    }
}

/// Adds the workflow (`ARGO_WORKFLOW_NAME`, `ARGO_WORKFLOW_UID`) as the controlling owner,
/// unless it already is an owner.
fn add_owner_reference(document: &mut Value) {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (name, uid) = (var(env::WORKFLOW_NAME), var(env::WORKFLOW_UID));
    let Some(metadata) = document.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let owners = metadata
        .entry("ownerReferences")
        .or_insert_with(|| json!([]));
    let Some(owners) = owners.as_array_mut() else {
        return;
    };
    if uid.is_empty() || owners.iter().any(|o| o["uid"] == json!(uid)) {
        return;
    }
    owners.push(json!({
        "apiVersion": format!("{}/{}", argoexec::model::API_GROUP, argoexec::model::API_VERSION),
        "kind": "Workflow",
        "name": name,
        "uid": uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }));
}

/// The object the action left, as the rest of the command refers to it.
#[derive(Debug)]
struct Live {
    namespace: Option<String>,
    /// `kind.group/name`, as Argo logs it.
    full_name: String,
    /// Its REST path (Argo's inferred self link; here from discovery).
    path: String,
}

impl Live {
    fn of(request: &Request, object: &Value) -> Result<Self, String> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or(&request.resource.kind);
        if name.is_empty() || kind.is_empty() {
            return Err(
                "Kind and name are both required but at least one of them is missing from the manifest"
                    .to_string(),
            );
        }
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .or_else(|| request.namespace.clone());
        Ok(Self {
            full_name: format!(
                "{}.{}/{name}",
                kind.to_ascii_lowercase(),
                request.resource.group
            ),
            path: format!(
                "{}/{name}",
                request.resource.collection(namespace.as_deref())
            ),
            namespace,
        })
    }
}

/// Polls the object until the success condition holds (all its requirements) or the failure
/// condition does (any requirement), as Argo's `WaitResource`.
async fn wait_for_conditions(
    api: &ResourceApi,
    resource: &ResourceTemplate,
    live: &Live,
) -> Result<(), String> {
    if resource.success_condition.is_empty() && resource.failure_condition.is_empty() {
        return Ok(());
    }
    let success = selector::parse(&resource.success_condition).map_err(|e| {
        format!(
            "success condition '{}' failed to parse: {e}",
            resource.success_condition
        )
    })?;
    let failure = selector::parse(&resource.failure_condition).map_err(|e| {
        format!(
            "fail condition '{}' failed to parse: {e}",
            resource.failure_condition
        )
    })?;
    tracing::info!(success = %success, failure = %failure, "Waiting for conditions");
    let interval = std::env::var(ENV_CHECK_INTERVAL)
        .ok()
        .and_then(|v| parse_go_duration(&v))
        .unwrap_or(Duration::from_secs(5));
    let deadline = contract::deadline_from_env();
    loop {
        match api.once(Method::GET, &live.path, None, None).await {
            Ok(object) => {
                for requirement in &failure.0 {
                    let failed = requirement.matches(&object);
                    tracing::info!("failure condition '{requirement}' evaluated {failed}");
                    if failed {
                        return Err(format!("failure condition '{requirement}' evaluated true"));
                    }
                }
                let matched = success.0.iter().filter(|r| r.matches(&object)).count();
                tracing::info!(
                    matched,
                    total = success.0.len(),
                    "success conditions matched"
                );
                if matched == success.0.len() {
                    tracing::info!(
                        resource = live.full_name,
                        "Returning from successful wait for resource"
                    );
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(format!(
                    "The resource has been deleted while its status was still being checked. Will not be retried: {}",
                    kubectl_message(&e)
                ));
            }
            Err(e) if e.kind().is_retried() => {
                tracing::info!(error = %e, "Waiting for resource resulted in retryable error");
            }
            Err(e) => return Err(kubectl_message(&e)),
        }
        if deadline.is_some_and(|d| SystemTime::now() + interval >= d) {
            return Err(format!(
                "timed out waiting for the conditions of {} at the step's deadline",
                live.full_name
            ));
        }
        tokio::time::sleep(interval).await;
    }
}

/// Reads the output parameters from the live object and reports them, as Argo's
/// `SaveResourceParameters` (nothing is reported when there are none).
async fn save_parameters(
    api: &ResourceApi,
    template: &Template,
    live: &Live,
    results: &TaskResults,
) -> Result<(), String> {
    if template.outputs.parameters.is_empty() {
        tracing::info!("No output parameters");
        return Ok(());
    }
    let mut outputs = Outputs {
        artifacts: Vec::new(),
        ..template.outputs.clone()
    };
    for param in &mut outputs.parameters {
        let Some(value_from) = &param.value_from else {
            continue;
        };
        let text = |key: &str| {
            value_from
                .rest
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let (json_path, jq_filter) = (text("jsonPath"), text("jqFilter"));
        if json_path.is_none() && jq_filter.is_none() {
            continue;
        }
        let object = api
            .request(Method::GET, &live.path, None, None)
            .await
            .map_err(|e| kubectl_message(&e))?;
        let value = match (json_path, jq_filter) {
            (Some(path), _) => jsonpath::render(&path, &object).map_err(|e| {
                format!(
                    "error executing jsonpath {path:?} for output parameter '{}': {e}",
                    param.name
                )
            })?,
            (None, Some(filter)) => jq::filter(&object.to_string(), &filter)
                .map_err(|e| format!("output parameter '{}': {e}", param.name))?,
            (None, None) => continue,
        };
        tracing::info!(name = param.name, value, "Saved output parameter");
        param.value = Some(value);
    }
    results
        .report(&NodeResult {
            outputs: Some(outputs),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(list: &[&str]) -> Result<Flags, String> {
        Flags::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn kubectl_flags() {
        let f = flags(&["configmap", "my-cm", "-n", "other"]).expect("parse");
        assert_eq!(f.target, Some(("configmap".into(), "my-cm".into())));
        assert_eq!(f.namespace.as_deref(), Some("other"));
        let f = flags(&["deploy/web", "--namespace=x", "--validate=false"]).expect("parse");
        assert_eq!(f.target, Some(("deploy".into(), "web".into())));
        assert_eq!(f.namespace.as_deref(), Some("x"));
        let f = flags(&["--cascade=orphan", "--wait=false", "--grace-period", "0"]).expect("parse");
        assert_eq!(f.propagation.as_deref(), Some("Orphan"));
        assert!(f.no_wait);
        assert_eq!(f.grace_period, Some(0));
        let e = flags(&["--dry-run=client"]).expect_err("an error");
        assert!(e.contains("--dry-run is not supported"), "{e}");
        assert!(flags(&["just-a-type"]).is_err());
        assert!(flags(&["a", "b", "c"]).is_err());
    }
}
