//! `argoexec artifact delete`: the artifact-GC pod's command (docs/contract.md#artifact-gc).
//!
//! Lists this pod's `WorkflowArtifactGCTask`s (label `workflows.argoproj.io/artifact-gc-pod =
//! $ARGO_ARTIFACT_POD_NAME`) one page at a time, deletes every artifact of each task with
//! bounded concurrency, and merge-patches the per-artifact results into the task's status.
//! Nothing is held beyond the current page of tasks and the results not yet patched, so the
//! pod fits Argo's 64 MiB limit whatever the number of artifacts.
//!
//! Exit: 0 when every artifact was handled (failed deletions are results, not failures); 64
//! when an artifact cannot be located or its storage cannot be opened, or the API refuses us.

use std::sync::Arc;

use futures::StreamExt;

use super::{CommandError, Pod};
use crate::report::ApiOptions;
use crate::report::KubeClient;
use crate::report::gc::{GcTask, GcTasks, ResultBatch, is_expired};
use argoexec::contract::env;
use argoexec::gc::{self, Deleter};
use argoexec::model::LABEL_ARTIFACT_GC_POD;
use argoexec::storage::StorageConfig;

/// Deletions in flight at once (default 16; about 60 KiB each: request and connection buffers).
pub const ENV_CONCURRENCY: &str = "ARGOEXEC_GC_CONCURRENCY";
/// Tasks per list page (default 1: a task can be as large as the API server's object limit,
/// about 1.5 MiB of JSON, and costs its text plus ~250 bytes per artifact while processed).
pub const ENV_LIST_LIMIT: &str = "ARGOEXEC_GC_LIST_LIMIT";
/// Results per status patch (default 1000; ~300 bytes per result held until patched).
pub const ENV_PATCH_BATCH: &str = "ARGOEXEC_GC_PATCH_BATCH";

/// How many times an expired listing is restarted from the beginning.
const MAX_LIST_RESTARTS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    concurrency: usize,
    list_limit: u32,
    patch_batch: usize,
}

impl Settings {
    fn from_env() -> Self {
        let num = |name: &str, default: u64, max: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(default)
                .clamp(1, max)
        };
        Self {
            concurrency: num(ENV_CONCURRENCY, 16, 1024) as usize,
            list_limit: num(ENV_LIST_LIMIT, 1, 500) as u32,
            patch_batch: num(ENV_PATCH_BATCH, 1000, 100_000) as usize,
        }
    }
}

#[derive(Debug, Default)]
struct Totals {
    tasks: u64,
    deleted: u64,
    failed: u64,
}

pub async fn run(pod: &Pod, api: &ApiOptions) -> Result<(), CommandError> {
    let deleted = delete_tasks(pod, api).await;
    // As Argo's GC command: its plugin sidecars are ended whatever happened.
    super::wait::end_plugin_sidecars(pod).await;
    deleted
}

async fn delete_tasks(pod: &Pod, api: &ApiOptions) -> Result<(), CommandError> {
    let Some(pod_hash) = std::env::var(env::ARTIFACT_POD_NAME)
        .ok()
        .filter(|v| !v.is_empty())
    else {
        tracing::warn!(
            "{} is not set: there are no artifact GC tasks to process",
            env::ARTIFACT_POD_NAME
        );
        return Ok(());
    };
    let client = KubeClient::connect(api)
        .await
        .map_err(CommandError::failed)?
        .ok_or_else(|| {
            CommandError::failed(
                "artifact delete needs the Kubernetes API (in-cluster configuration or --kubeconfig)",
            )
        })?;
    let tasks = GcTasks::new(client);
    let settings = Settings::from_env();
    // Argo's GC backoff, and no deadline: the GC pod's `ARGO_DEADLINE` is its creation time.
    let storage_config = StorageConfig {
        backoff: gc::delete_backoff_from_lookup(|k| std::env::var(k).ok()),
        deadline: None,
        ..pod.transfer.storage.clone()
    };
    let deleter = Deleter::new(pod.secrets.clone(), storage_config);
    let selector = format!("{LABEL_ARTIFACT_GC_POD}={pod_hash}");
    tracing::info!(
        namespace = tasks.namespace(),
        selector,
        ?settings,
        "deleting artifacts"
    );

    let mut totals = Totals::default();
    let mut token = None;
    let mut restarts = 0;
    loop {
        let page = match tasks
            .page(&selector, settings.list_limit, token.take())
            .await
        {
            Ok(page) => page,
            Err(e) if is_expired(&e) && restarts < MAX_LIST_RESTARTS => {
                // Deletes and result patches are idempotent: starting over is safe.
                restarts += 1;
                tracing::warn!(error = %e, "the task listing expired, listing again from the start");
                continue;
            }
            Err(e) => return Err(CommandError::failed(e)),
        };
        for task in page.tasks {
            process_task(&tasks, &deleter, task, settings, &mut totals).await?;
        }
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    tracing::info!(
        tasks = totals.tasks,
        deleted = totals.deleted,
        failed = totals.failed,
        "artifacts deleted"
    );
    Ok(())
}

/// Deletes the artifacts of one task and patches their results in batches. An artifact that
/// cannot be handled at all stops the command, after the results so far are patched.
async fn process_task(
    tasks: &GcTasks,
    deleter: &Deleter,
    task: GcTask,
    settings: Settings,
    totals: &mut Totals,
) -> Result<(), CommandError> {
    let GcTask {
        name,
        artifacts_by_node,
    } = task;
    totals.tasks += 1;
    let work = artifacts_by_node.into_iter().flat_map(|(node, node_spec)| {
        let node = Arc::<str>::from(node);
        let archive = Arc::new(node_spec.archive_location);
        node_spec
            .artifacts
            .into_iter()
            .map(move |(key, raw)| (Arc::clone(&node), Arc::clone(&archive), key, raw))
    });
    let mut outcomes = futures::stream::iter(work)
        .map(|(node, archive, key, raw)| async move {
            let outcome = match raw.decode() {
                Ok(artifact) => deleter
                    .delete(&node, archive.as_ref().as_ref(), &artifact)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!(
                    "artifact {key:?} of node {node:?} is not an artifact: {e}"
                )),
            };
            (node, outcome)
        })
        .buffer_unordered(settings.concurrency);
    let mut batch = ResultBatch::default();
    let mut stopped = None;
    while let Some((node, outcome)) = outcomes.next().await {
        match outcome {
            Ok(result) => {
                if result.success {
                    totals.deleted += 1;
                } else {
                    totals.failed += 1;
                }
                batch.add(node.to_string(), result);
                if batch.len() >= settings.patch_batch {
                    patch(tasks, &name, &mut batch).await?;
                }
            }
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
        let done = totals.deleted + totals.failed;
        if done.is_multiple_of(10_000) {
            tracing::info!(done, task = %name, "artifact GC progress");
        }
    }
    drop(outcomes);
    if !batch.is_empty() {
        patch(tasks, &name, &mut batch).await?;
    }
    match stopped {
        Some(e) => Err(CommandError::failed(format!("task {name}: {e}"))),
        None => Ok(()),
    }
}

async fn patch(tasks: &GcTasks, task: &str, batch: &mut ResultBatch) -> Result<(), CommandError> {
    let results = batch.take();
    tasks
        .patch_results(task, &results)
        .await
        .map_err(|e| CommandError::failed(format!("task {task}: {e}")))
}
