//! The one API request a resource template's action comes down to: the template's `resource`
//! part, the kubectl flags that mean something without kubectl, and the request built from the
//! manifest (owner reference, content type per merge strategy, server-side apply, delete and
//! its wait).

use std::time::{Duration, SystemTime};

use http::Method;
use serde_json::{Value, json};

use super::api::{self, ResourceApi, ResourceType, kubectl_message};
use crate::report::ErrorKind;
use argoexec::contract::env;

/// The field manager of `apply`.
pub const FIELD_MANAGER: &str = "argoexec";
/// How often a deleted object is checked for being gone (kubectl's `--wait`).
const DELETE_POLL: Duration = Duration::from_secs(1);

/// The `resource` part of the template.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceTemplate {
    #[serde(default)]
    pub(crate) merge_strategy: String,
    #[serde(default)]
    pub(crate) manifest: String,
    #[serde(default)]
    pub(crate) manifest_from: Option<ManifestFrom>,
    #[serde(default)]
    pub(crate) set_owner_reference: bool,
    #[serde(default)]
    pub(crate) success_condition: String,
    #[serde(default)]
    pub(crate) failure_condition: String,
    #[serde(default)]
    pub(crate) flags: Vec<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ManifestFrom {
    #[serde(default)]
    pub(crate) artifact: Option<ArtifactRef>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ArtifactRef {
    #[serde(default)]
    pub(crate) name: String,
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
pub(crate) struct Request {
    pub(crate) action: String,
    pub(crate) resource: ResourceType,
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) body: Option<Vec<u8>>,
}

impl Request {
    pub(crate) async fn build(
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
    pub(crate) async fn send(
        &self,
        api: &ResourceApi,
        flags: &Flags,
    ) -> Result<Option<Value>, String> {
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
        let deadline = crate::pod::deadline_from_env();
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
