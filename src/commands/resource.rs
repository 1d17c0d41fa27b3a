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
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};

use super::{CommandError, Pod};
use crate::pod::{required_env, template_from_env_or_file, write_atomic};
use crate::report::{ApiOptions, ErrorKind, KubeClient, TaskResultIdentity, TaskResults};
use crate::resource::api::{ResourceApi, kubectl_message};
use crate::resource::request::{Flags, Request, ResourceTemplate};
use crate::resource::{jq, jsonpath, selector};
use argoexec::contract::{env, parse_go_duration};
use argoexec::model::{NodeResult, Outputs, Template};

/// Poll period of the conditions (Go duration; Argo's variable and default).
pub const ENV_CHECK_INTERVAL: &str = "RESOURCE_STATE_CHECK_INTERVAL";
const MANIFEST_PATH: &str = "/tmp/manifest.yaml";

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
    let deadline = crate::pod::deadline_from_env();
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
