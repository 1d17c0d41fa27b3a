//! The WorkflowTaskResult `wait` reports through (docs/contract.md#reporting): created empty first,
//! then merge-patched with progress and outputs, then labelled complete.
//!
//! With no API configured (a local run, the demo) the result is kept here and printed as JSON
//! on stdout when it is finalized, so the same code path runs everywhere.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use serde_json::json;

use super::client::{ApiOptions, Error, ErrorKind, KubeClient};
use argoexec::contract::env;
use argoexec::model::{
    API_GROUP, API_VERSION, KIND, LABEL_REPORT_OUTPUTS_COMPLETED, NodeResult, PLURAL,
    WorkflowTaskResult,
};

/// The `argoproj.io/v1alpha1` `workflowtaskresults` resource.
pub fn resource() -> ApiResource {
    ApiResource {
        group: API_GROUP.to_string(),
        version: API_VERSION.to_string(),
        api_version: format!("{API_GROUP}/{API_VERSION}"),
        kind: KIND.to_string(),
        plural: PLURAL.to_string(),
    }
}

/// Who the result belongs to: the node it is named after and the workflow that owns it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskResultIdentity {
    pub node_id: String,
    pub workflow_name: String,
    pub workflow_uid: String,
    pub instance_id: Option<String>,
}

impl TaskResultIdentity {
    /// `ARGO_NODE_ID`, `ARGO_WORKFLOW_NAME`, `ARGO_WORKFLOW_UID`, `ARGO_INSTANCE_ID`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        Self {
            node_id: var(env::NODE_ID),
            workflow_name: var(env::WORKFLOW_NAME),
            workflow_uid: var(env::WORKFLOW_UID),
            instance_id: std::env::var(env::INSTANCE_ID)
                .ok()
                .filter(|i| !i.is_empty()),
        }
    }

    /// The object as first created: labels and owner as Argo sets them, `result` inlined.
    fn object(&self, result: &NodeResult) -> WorkflowTaskResult {
        let mut object = WorkflowTaskResult::new(
            &self.node_id,
            &self.workflow_name,
            &self.workflow_uid,
            self.instance_id.as_deref(),
        );
        object.result = result.clone();
        object
    }
}

/// Where results go.
#[derive(Debug)]
pub struct TaskResults {
    identity: TaskResultIdentity,
    sink: Sink,
}

#[derive(Debug)]
enum Sink {
    Api {
        client: KubeClient,
        api: Api<DynamicObject>,
        /// Whether this process created (or found) the object: later upserts patch first.
        created: AtomicBool,
    },
    /// No API: the object as it would be stored.
    Print(Mutex<WorkflowTaskResult>),
}

impl TaskResults {
    /// Connects per `opts`; with no API configured, says so once and prints instead.
    pub async fn connect(opts: &ApiOptions, identity: TaskResultIdentity) -> Result<Self, Error> {
        let sink = match KubeClient::connect(opts).await? {
            Some(client) => {
                tracing::info!(
                    namespace = client.namespace(),
                    name = identity.node_id,
                    "reporting outputs through the WorkflowTaskResult"
                );
                Sink::Api {
                    api: client.api(&resource()),
                    client,
                    created: AtomicBool::new(false),
                }
            }
            None => {
                tracing::warn!(
                    "no Kubernetes API configured (no --kubeconfig or KUBECONFIG, not in a cluster): the task result will be printed on stdout instead of reported"
                );
                Sink::Print(Mutex::new(identity.object(&NodeResult::default())))
            }
        };
        Ok(Self { identity, sink })
    }

    /// `InitializeOutput`: the empty result, so the controller knows outputs are coming.
    pub async fn initialize(&self) -> Result<(), Error> {
        self.report(&NodeResult::default()).await
    }

    /// Upserts `result`: create, or merge-patch its non-empty fields (arrays are replaced, so
    /// outputs always carry the complete artifact list).
    pub async fn report(&self, result: &NodeResult) -> Result<(), Error> {
        match &self.sink {
            Sink::Api {
                client,
                api,
                created,
            } => {
                client
                    .call("upsert the task result", || {
                        self.upsert(api, created, result)
                    })
                    .await
            }
            Sink::Print(object) => {
                let mut object = object.lock().unwrap_or_else(|p| p.into_inner());
                merge_result(&mut object.result, result);
                Ok(())
            }
        }
    }

    /// `FinalizeOutput`: the label that tells the controller the outputs are complete.
    // The target is `telemetry::trace::TARGET` (the attribute takes a literal only).
    #[tracing::instrument(name = "patchTaskResultLabels", target = "argoexec::trace", skip_all)]
    pub async fn finalize(&self) -> Result<(), Error> {
        match &self.sink {
            Sink::Api { client, api, .. } => {
                let patch =
                    json!({"metadata": {"labels": {LABEL_REPORT_OUTPUTS_COMPLETED: "true"}}});
                client
                    .call("label the task result complete", || async {
                        api.patch(
                            &self.identity.node_id,
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                        .map(drop)
                        .map_err(Error::from)
                    })
                    .await
            }
            Sink::Print(object) => {
                let mut object = object.lock().unwrap_or_else(|p| p.into_inner());
                object.metadata.labels.insert(
                    LABEL_REPORT_OUTPUTS_COMPLETED.to_string(),
                    "true".to_string(),
                );
                println!("{}", serde_json::to_string(&*object)?);
                Ok(())
            }
        }
    }

    async fn upsert(
        &self,
        api: &Api<DynamicObject>,
        created: &AtomicBool,
        result: &NodeResult,
    ) -> Result<(), Error> {
        if created.load(Ordering::Acquire) {
            match self.patch(api, result).await {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    self.create(api, created, result).await
                }
                other => other,
            }
        } else {
            match self.create(api, created, result).await {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => self.patch(api, result).await,
                other => other,
            }
        }
    }

    #[tracing::instrument(name = "createTaskResult", target = "argoexec::trace", skip_all)]
    async fn create(
        &self,
        api: &Api<DynamicObject>,
        created: &AtomicBool,
        result: &NodeResult,
    ) -> Result<(), Error> {
        let object: DynamicObject =
            serde_json::from_value(serde_json::to_value(self.identity.object(result))?)?;
        let outcome = api
            .create(&PostParams::default(), &object)
            .await
            .map_err(Error::from);
        if outcome.is_ok()
            || outcome
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::AlreadyExists)
        {
            created.store(true, Ordering::Release);
        }
        outcome.map(drop)
    }

    #[tracing::instrument(name = "patchTaskResult", target = "argoexec::trace", skip_all)]
    async fn patch(&self, api: &Api<DynamicObject>, result: &NodeResult) -> Result<(), Error> {
        let body = serde_json::to_value(result)?;
        api.patch(
            &self.identity.node_id,
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
        .map(drop)
        .map_err(Error::from)
    }
}

/// What a merge patch of `patch` does to the top-level result fields: set fields replace.
fn merge_result(target: &mut NodeResult, patch: &NodeResult) {
    if !patch.phase.is_empty() {
        target.phase.clone_from(&patch.phase);
    }
    if !patch.message.is_empty() {
        target.message.clone_from(&patch.message);
    }
    if patch.outputs.is_some() {
        target.outputs.clone_from(&patch.outputs);
    }
    if !patch.progress.is_empty() {
        target.progress.clone_from(&patch.progress);
    }
}
