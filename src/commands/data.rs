//! `argoexec data <json>`: the main container of a data template (docs/contract.md#commands).
//!
//! As Argo's: the template comes from `ARGO_TEMPLATE` (the JSON argument is ignored); the
//! source `artifactPaths` is listed through the storage driver (every key below the artifact's
//! key, as a directory), each `transformation` expression is applied in order to `data`, and
//! the JSON of the result becomes `outputs.result`, reported through the WorkflowTaskResult
//! (created with the outputs, then labelled complete; there is no empty result first).

use std::sync::Arc;

use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::Value;

use super::{CommandError, Pod};
use crate::expr::Program;
use crate::pod::{required_env, template_from_env_or_file};
use crate::report::{ApiOptions, TaskResultIdentity, TaskResults};
use argoexec::model::{Artifact, ArtifactLocation, NodeResult, Template};
use argoexec::storage;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataTemplate {
    #[serde(default)]
    source: DataSource,
    #[serde(default)]
    transformation: Vec<TransformationStep>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataSource {
    #[serde(default)]
    artifact_paths: Option<Artifact>,
}

#[derive(Debug, Default, Deserialize)]
struct TransformationStep {
    #[serde(default)]
    expression: String,
}

pub async fn run(pod: &Pod, api: &ApiOptions) -> Result<(), CommandError> {
    required_env(argoexec::contract::env::POD_NAME)?;
    let template = template_from_env_or_file(&pod.roots)?.template;
    let results = TaskResults::connect(api, TaskResultIdentity::from_env())
        .await
        .map_err(CommandError::failed)?;
    let outcome = produce(pod, &template, &results).await;
    // Argo labels the result complete whatever happened (a deferred FinalizeOutput).
    let finalized = results.finalize().await.map_err(CommandError::failed);
    outcome.and(finalized)
}

async fn produce(
    pod: &Pod,
    template: &Template,
    results: &TaskResults,
) -> Result<(), CommandError> {
    let result = process(pod, template)
        .await
        .map_err(|e| CommandError::failed(format!("unable to process data template: {e}")))?;
    let mut outputs = template.outputs.clone();
    outputs.artifacts.clear();
    outputs.result = Some(result);
    results
        .report(&NodeResult {
            outputs: Some(outputs),
            ..Default::default()
        })
        .await
        .map_err(CommandError::failed)
}

/// The JSON text of the transformed data.
async fn process(pod: &Pod, template: &Template) -> Result<String, String> {
    let data: DataTemplate = match &template.data {
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|e| format!("the data template is malformed: {e}"))?,
        None => return Err("no data template found".to_string()),
    };
    let Some(artifact) = &data.source.artifact_paths else {
        return Err(
            "unable to process data source: no valid source is used for data template".to_string(),
        );
    };
    let keys = list_artifact_paths(pod, template, artifact)
        .await
        .map_err(|e| {
            format!("unable to process data source: unable to source artifact paths: {e}")
        })?;
    // Go marshals the empty list it starts from as `null`.
    let mut value = if keys.is_empty() && data.transformation.is_empty() {
        Value::Null
    } else {
        Value::Array(keys.into_iter().map(Value::String).collect())
    };
    for (i, step) in data.transformation.iter().enumerate() {
        if step.expression.is_empty() {
            continue;
        }
        value = transform(&step.expression, value).map_err(|e| {
            format!("unable to process data transformation: error processing data step {i}: {e}")
        })?;
    }
    serde_json::to_string(&value).map_err(|e| e.to_string())
}

fn transform(expression: &str, data: Value) -> Result<Value, crate::expr::Error> {
    let program = Program::compile(expression)?;
    let mut env = serde_json::Map::new();
    env.insert("data".to_string(), data);
    program.run(&env)
}

/// Every key below the artifact's key, read as a directory (`dir` lists `dir/...`), as
/// Argo's `ListObjects`. The artifact's own location is used when it names its bucket (or
/// container) and endpoint; otherwise it is relocated against the archive location.
async fn list_artifact_paths(
    pod: &Pod,
    template: &Template,
    artifact: &Artifact,
) -> Result<Vec<String>, String> {
    let location = listing_location(template, artifact)?;
    let key = location.key().unwrap_or_default();
    let prefix = directory_prefix(&key);
    let driver = storage::open(&location, &pod.secrets, &pod.transfer.storage)
        .await
        .map_err(|e| logged(&artifact.name, e))?;
    tracing::info!(artifact = %artifact.name, prefix, "listing artifact paths");
    let objects: Vec<_> = storage::list_all(Arc::clone(&driver), prefix)
        .try_collect()
        .await
        .map_err(|e| {
            logged(
                &artifact.name,
                e.in_s3_step(driver.name(), "failed to list directory"),
            )
        })?;
    if objects.is_empty() && driver.name() == "s3" {
        // Argo's S3 driver then asks whether the key itself exists.
        match driver.head(&key).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Err(format!("no key found of name {key}")),
            Err(e) => {
                let bucket = location
                    .s3
                    .as_ref()
                    .map(|s| s.bucket.as_str())
                    .unwrap_or_default();
                return Err(logged(
                    &artifact.name,
                    e.context(format!(
                        "failed to check if key {key} exists from bucket {bucket}"
                    )),
                ));
            }
        }
    }
    Ok(objects
        .into_iter()
        .map(|o| o.key)
        .filter(|k| !k.ends_with('/'))
        .collect())
}

/// Argo's text of a storage failure; ours, with the context, goes to the log.
fn logged(artifact: &str, e: storage::Error) -> String {
    tracing::error!(artifact, error = %e, "listing the artifact paths failed");
    e.termination_message()
}

fn listing_location(template: &Template, artifact: &Artifact) -> Result<ArtifactLocation, String> {
    let mut keyed = artifact.location.clone();
    if keyed.set_key("probe".to_string()) && keyed.has_location() {
        return Ok(artifact.location.clone());
    }
    artifact.relocated(template.archive_location.as_ref())
}

/// Argo's `ListDirectory` prefix: the key cleaned, with one trailing `/`; the whole store for
/// an empty key.
fn directory_prefix(key: &str) -> String {
    let trimmed = key.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{}/", argoexec::keys::clean(trimmed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_read_keys_as_directories() {
        assert_eq!(directory_prefix(""), "");
        assert_eq!(directory_prefix("/"), "");
        assert_eq!(directory_prefix("logs"), "logs/");
        assert_eq!(directory_prefix("logs/"), "logs/");
        assert_eq!(directory_prefix("a/./b//c"), "a/b/c/");
    }
}
