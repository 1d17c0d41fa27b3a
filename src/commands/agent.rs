//! `argoexec agent init` and `argoexec agent main`: the agent pod that runs a workflow's HTTP
//! and executor-plugin templates (Argo's `workflow/executor/agent.go`).
//!
//! `init` writes a random token per plugin (`/var/run/argo/<plugin>/token`) for the plugin
//! sidecars to check. `main` watches the workflow's WorkflowTaskSet (field selector
//! `metadata.name=<workflow>`), runs every task it has not run yet (at most
//! `ARGO_AGENT_TASK_WORKERS` at once, default 16), and every `ARGO_AGENT_PATCH_RATE` (default
//! 10 s) merge-patches the results gathered since into the set's status subresource:
//! `{"status":{"nodes":{<node id>: <result>}}}`. It stops when the set is deleted, labelled
//! `workflows.argoproj.io/completed=true`, or on SIGTERM.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::TryStreamExt;
use http::Method;
use kube::core::WatchEvent;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use super::{CommandError, Pod};
use crate::agent::http::{Clients, HttpTemplate, SecretSource};
use crate::agent::plugin::{Outcome, Plugin};
use crate::agent::{self, ERROR, NodeResult, SUCCEEDED};
use crate::pod::{create_dir_all_with_mode, write_atomic};
use crate::report::{ApiOptions, ErrorKind, KubeClient};
use crate::resource::api::{MERGE_PATCH, ResourceApi};
use argoexec::contract::{env, parse_go_duration};
use argoexec::model::{API_GROUP, API_VERSION};

pub const ENV_PLUGIN_NAMES: &str = "ARGO_PLUGIN_NAMES";
pub const ENV_PLUGIN_ADDRESSES: &str = "ARGO_PLUGIN_ADDRESSES";
pub const ENV_TASK_WORKERS: &str = "ARGO_AGENT_TASK_WORKERS";
pub const ENV_PATCH_RATE: &str = "ARGO_AGENT_PATCH_RATE";
const LABEL_COMPLETED: &str = "workflows.argoproj.io/completed";
/// Pause before watching again after the watch failed.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// The JSON string list in `name` (Argo fails when it is not one).
fn json_list(name: &str, what: &str) -> Result<Vec<String>, CommandError> {
    let raw = std::env::var(name).unwrap_or_default();
    serde_json::from_str(&raw)
        .map_err(|e| CommandError::failed(format!("Failed to unmarshal {what}: {e}")))
}

fn token_file(pod: &Pod, plugin: &str) -> std::path::PathBuf {
    pod.roots.var_run_argo().join(plugin).join("token")
}

/// `agent init`: one random token per plugin.
pub fn init(pod: &Pod) -> Result<(), CommandError> {
    for name in json_list(ENV_PLUGIN_NAMES, "plugin names")? {
        let file = token_file(pod, &name);
        tracing::info!(plugin = name, filename = %file.display(), "creating token file for plugin");
        let dir = file.parent().unwrap_or(&file);
        create_dir_all_with_mode(dir, 0o770)
            .map_err(|e| CommandError::failed(format!("mkdir {}: {e}", dir.display())))?;
        write_atomic(&file, random_token()?.as_bytes(), 0o440)
            .map_err(|e| CommandError::failed(format!("write {}: {e}", file.display())))?;
    }
    Ok(())
}

/// 32 characters from Kubernetes' `rand.String` alphabet (about 2^150 values).
fn random_token() -> Result<String, CommandError> {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom")
            .map_err(|e| CommandError::failed(format!("/dev/urandom: {e}")))?,
        &mut bytes,
    )
    .map_err(|e| CommandError::failed(format!("/dev/urandom: {e}")))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// Header values from the workflow's namespace's secrets.
struct ApiSecrets(ResourceApi);

#[async_trait::async_trait]
impl SecretSource for ApiSecrets {
    async fn secret(&self, name: &str, key: &str) -> Result<Vec<u8>, String> {
        let uri = format!("/api/v1/namespaces/{}/secrets/{name}", self.0.namespace());
        let secret = self
            .0
            .request(Method::GET, &uri, None, None)
            .await
            .map_err(|e| crate::resource::api::status_message(&e))?;
        let value = secret["data"][key]
            .as_str()
            .ok_or_else(|| format!("secret '{name}' does not have the key '{key}'"))?;
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| format!("secret '{name}' key '{key}' is not base64: {e}"))
    }
}

/// Everything a task needs, shared by the workers.
struct Runner {
    clients: Clients,
    secrets: ApiSecrets,
    plugins: Vec<Plugin>,
    workflow: (String, String, String),
}

/// A task done: its node, result, when to run it again (plugins), and its template.
struct Done {
    node: String,
    result: NodeResult,
    requeue: Duration,
    template: Value,
}

impl Runner {
    async fn process(&self, template: &Value) -> (NodeResult, Duration) {
        if let Some(http) = template.get("http") {
            let http: HttpTemplate = match serde_json::from_value(http.clone()) {
                Ok(h) => h,
                Err(e) => {
                    return (
                        agent::failed(format!("invalid http template: {e}")),
                        Duration::ZERO,
                    );
                }
            };
            return (
                agent::http::execute(&http, &self.clients, &self.secrets).await,
                Duration::ZERO,
            );
        }
        if template.get("plugin").is_some() {
            let (name, namespace, uid) = &self.workflow;
            for plugin in &self.plugins {
                match plugin.execute((name, namespace, uid), template).await {
                    Ok(Outcome::Declined) => continue,
                    Ok(Outcome::Node(node, requeue)) => {
                        let requeue = if node.phase == SUCCEEDED {
                            Duration::ZERO
                        } else {
                            requeue
                        };
                        return (node, requeue);
                    }
                    Err(e) => return (agent::failed(e), Duration::ZERO),
                }
            }
            return (
                agent::failed("no plugin executed the template"),
                Duration::ZERO,
            );
        }
        let kind = [
            "container",
            "containerSet",
            "steps",
            "dag",
            "script",
            "resource",
            "data",
            "suspend",
        ]
        .into_iter()
        .find(|k| template.get(*k).is_some())
        .map_or("Unknown".to_string(), |k| match k {
            "dag" => "DAG".to_string(),
            "containerSet" => "ContainerSet".to_string(),
            other => {
                let mut c = other.chars();
                c.next().map_or_else(String::new, |f| {
                    f.to_ascii_uppercase().to_string() + c.as_str()
                })
            }
        });
        (
            NodeResult {
                phase: ERROR.to_string(),
                message: format!(
                    "error processing task: agent cannot execute: unknown task type: {kind}"
                ),
                ..Default::default()
            },
            Duration::ZERO,
        )
    }
}

/// `agent main`.
pub async fn main(pod: &Pod, api: &ApiOptions) -> Result<(), CommandError> {
    let workflow_name = std::env::var(env::WORKFLOW_NAME).map_err(|_| {
        CommandError::failed(format!(
            "Unable to determine workflow name from environment variable {}",
            env::WORKFLOW_NAME
        ))
    })?;
    let workflow_uid = std::env::var(env::WORKFLOW_UID).map_err(|_| {
        CommandError::failed(format!(
            "Unable to determine workflow Uid from environment variable {}",
            env::WORKFLOW_UID
        ))
    })?;
    let client = KubeClient::connect(api)
        .await
        .map_err(CommandError::failed)?
        .ok_or_else(|| {
            CommandError::failed(
                "the agent needs the Kubernetes API (in-cluster configuration or --kubeconfig)",
            )
        })?;
    let names = json_list(ENV_PLUGIN_NAMES, "plugin names")?;
    let addresses = json_list(ENV_PLUGIN_ADDRESSES, "plugin addresses")?;
    let mut plugins = Vec::new();
    for (name, address) in names.into_iter().zip(addresses) {
        let file = token_file(pod, &name);
        let token = std::fs::read_to_string(&file).map_err(|e| {
            CommandError::failed(format!("Failed to read token file {}: {e}", file.display()))
        })?;
        plugins.push(Plugin::new(name, address, token).map_err(CommandError::failed)?);
    }
    let workers = std::env::var(ENV_TASK_WORKERS)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|w| *w > 0)
        .unwrap_or(16);
    let patch_rate = std::env::var(ENV_PATCH_RATE)
        .ok()
        .and_then(|v| parse_go_duration(&v))
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(10));
    let api = ResourceApi::new(client.clone());
    let runner = Arc::new(Runner {
        clients: Clients::new().map_err(CommandError::failed)?,
        secrets: ApiSecrets(api.clone()),
        plugins,
        workflow: (
            workflow_name.clone(),
            client.namespace().to_string(),
            workflow_uid,
        ),
    });
    tracing::info!(task_workers = workers, requeue_time = ?patch_rate, "Starting Agent");
    Agent {
        client,
        api,
        runner,
        workflow_name,
        workers,
        slots: Arc::new(Semaphore::new(workers)),
        considered: HashSet::new(),
        ready: VecDeque::new(),
        requeued: Vec::new(),
        pending: BTreeMap::new(),
    }
    .run(patch_rate)
    .await
}

struct Agent {
    client: KubeClient,
    api: ResourceApi,
    runner: Arc<Runner>,
    workflow_name: String,
    /// `ARGO_AGENT_TASK_WORKERS`: the bound on node tasks alive at once, and on results in
    /// the channel (each task sends one).
    workers: usize,
    /// One permit per running node task: a task is spawned only with one.
    slots: Arc<Semaphore>,
    /// Nodes already run (or running): a task is never sent twice by accident.
    considered: HashSet<String>,
    /// Nodes waiting for a worker. Bounded by the task set itself, which the API server caps
    /// (an object is at most about 1.5 MiB).
    ready: VecDeque<Queued>,
    /// Plugin nodes to run again at their time (a subset of the task set's nodes).
    requeued: Vec<(Instant, Queued)>,
    /// Results not patched yet.
    pending: BTreeMap<String, NodeResult>,
}

/// A node's task waiting for a worker.
struct Queued {
    node: String,
    template: Value,
}

impl Agent {
    fn collection(&self) -> String {
        format!(
            "/apis/{API_GROUP}/{API_VERSION}/namespaces/{}/workflowtasksets",
            self.client.namespace()
        )
    }

    async fn run(mut self, patch_rate: Duration) -> Result<(), CommandError> {
        let mut sigterm = signal(SignalKind::terminate())
            .map_err(|e| CommandError::failed(format!("cannot handle SIGTERM: {e}")))?;
        let (done_tx, mut done_rx) = mpsc::channel::<Done>(self.workers);
        let mut tick = tokio::time::interval(patch_rate);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let uri = format!(
                "{}?fieldSelector={}&watch=true",
                self.collection(),
                percent_encoding::utf8_percent_encode(
                    &format!("metadata.name={}", self.workflow_name),
                    percent_encoding::NON_ALPHANUMERIC
                )
            );
            let request = http::Request::get(&uri)
                .body(Vec::new())
                .map_err(|e| CommandError::failed(format!("invalid watch request: {e}")))?;
            let events = match self.client.raw().request_events::<Value>(request).await {
                Ok(events) => events,
                Err(e) => {
                    let e = crate::report::Error::from(e);
                    if !e.kind().is_retried() {
                        return Err(CommandError::failed(format!("watching the task set: {e}")));
                    }
                    tracing::warn!(error = %e, "cannot watch the task set, retrying");
                    tokio::time::sleep(REWATCH_DELAY).await;
                    continue;
                }
            };
            let mut events = std::pin::pin!(events);
            loop {
                tokio::select! {
                    event = events.try_next() => match event {
                        Ok(Some(WatchEvent::Added(set) | WatchEvent::Modified(set))) => {
                            tracing::info!("TaskSet Event");
                            if set["metadata"]["labels"][LABEL_COMPLETED] == "true" {
                                tracing::info!("Workflow completed... stopping agent");
                                return Ok(());
                            }
                            self.start_tasks(&set, &done_tx);
                        }
                        Ok(Some(WatchEvent::Deleted(_))) => return Ok(()),
                        Ok(Some(WatchEvent::Bookmark(_))) => {}
                        Ok(Some(WatchEvent::Error(status))) => {
                            return Err(CommandError::failed(format!("watching the task set: {}", status.message)));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "the task set watch failed, watching again");
                            tokio::time::sleep(REWATCH_DELAY).await;
                            break;
                        }
                    },
                    Some(done) = done_rx.recv() => self.finished(done, &done_tx),
                    _ = sleep_until_first(&self.requeued), if !self.requeued.is_empty() => {
                        self.requeue_due(&done_tx);
                    }
                    _ = tick.tick() => self.patch().await,
                    _ = sigterm.recv() => {
                        tracing::info!("SIGTERM: stopping the agent");
                        return Ok(());
                    }
                }
            }
        }
    }

    fn start_tasks(&mut self, set: &Value, done: &mpsc::Sender<Done>) {
        let Some(tasks) = set["spec"]["tasks"].as_object() else {
            return;
        };
        for (node, template) in tasks {
            if !self.considered.insert(node.clone()) {
                continue;
            }
            tracing::info!(node_id = node, "Processing task");
            self.ready.push_back(Queued {
                node: node.clone(),
                template: template.clone(),
            });
        }
        self.start_ready(done);
    }

    /// Spawns waiting nodes while a worker is free.
    fn start_ready(&mut self, done: &mpsc::Sender<Done>) {
        while !self.ready.is_empty() {
            let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                return;
            };
            if let Some(queued) = self.ready.pop_front() {
                self.spawn(queued, slot, done.clone());
            }
        }
    }

    fn spawn(&self, queued: Queued, slot: OwnedSemaphorePermit, done: mpsc::Sender<Done>) {
        let runner = Arc::clone(&self.runner);
        tokio::spawn(async move {
            let (result, requeue) = runner.process(&queued.template).await;
            // The worker is free before its result arrives, so the next node can start.
            drop(slot);
            let _ = done
                .send(Done {
                    node: queued.node,
                    result,
                    requeue,
                    template: queued.template,
                })
                .await;
        });
    }

    /// Moves the requeued nodes whose time has come to the ready queue.
    fn requeue_due(&mut self, done: &mpsc::Sender<Done>) {
        let now = Instant::now();
        let (due, later) = std::mem::take(&mut self.requeued)
            .into_iter()
            .partition::<Vec<_>, _>(|(at, _)| *at <= now);
        self.requeued = later;
        self.ready.extend(due.into_iter().map(|(_, queued)| queued));
        self.start_ready(done);
    }

    fn finished(&mut self, done: Done, tx: &mpsc::Sender<Done>) {
        tracing::info!(
            node_id = done.node,
            phase = done.result.phase,
            message = done.result.message,
            requeue = ?done.requeue,
            "Sending result"
        );
        if !done.requeue.is_zero() {
            let queued = Queued {
                node: done.node.clone(),
                template: done.template,
            };
            self.requeued.push((Instant::now() + done.requeue, queued));
        }
        if !done.result.phase.is_empty() {
            self.pending.insert(done.node, done.result);
        }
        self.start_ready(tx);
    }

    /// Patches the pending results into the set's status. A refused patch turns them into
    /// errors saying so (patched at the next tick), so the workflow cannot wait forever.
    async fn patch(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let body = json!({"status": {"nodes": self.pending}});
        let uri = format!("{}/{}/status", self.collection(), self.workflow_name);
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        tracing::info!(nodes = self.pending.len(), "Processing Patch");
        match self
            .api
            .request(Method::PATCH, &uri, Some(MERGE_PATCH), Some(bytes))
            .await
        {
            Ok(_) => {
                tracing::info!("Patched TaskSet");
                self.pending.clear();
            }
            Err(e) if e.kind() == ErrorKind::Transient => {
                tracing::warn!(error = %e, "TaskSet patch failed, retrying at the next tick");
            }
            Err(e) => {
                tracing::error!(error = %e, "TaskSet Patch Failed");
                for result in self.pending.values_mut() {
                    *result = NodeResult {
                        phase: ERROR.to_string(),
                        message: format!(
                            "HTTP request completed successfully but an error occurred when patching its result: {e}"
                        ),
                        ..Default::default()
                    };
                }
            }
        }
    }
}

/// Sleeps until the earliest requeued node is due.
async fn sleep_until_first(requeued: &[(Instant, Queued)]) {
    if let Some(first) = requeued.iter().map(|(at, _)| *at).min() {
        tokio::time::sleep_until(first).await;
    }
}
