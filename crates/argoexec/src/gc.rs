//! Artifact garbage collection (docs/contract.md#artifact-gc), for controllers and for the GC pod.
//!
//! * Planning, the controller's half: which output artifacts a workflow event makes due
//!   ([`strategies_due`], [`effective_strategy`]), grouped into one GC pod per identity
//!   (service account and pod metadata), named and labelled with Argo's fnv32a rules
//!   ([`GcPlanner::plan`], [`pod_name`], [`pod_label`]).
//! * Deleting, the GC pod's half: [`Deleter`] deletes one artifact relocated against its
//!   node's archive location, with the storage driver's retries, and reports the outcome as an
//!   [`ArtifactResult`]. `argoexec artifact delete` streams a pod's tasks through it.
//!
//! ```
//! use argoexec::gc::{GcNode, GcPlanner, GcStrategy};
//! use argoexec::model::{Artifact, ArtifactLocation, WorkflowLevelArtifactGc};
//!
//! let workflow_gc: WorkflowLevelArtifactGc =
//!     serde_json::from_str(r#"{"strategy": "OnWorkflowCompletion", "serviceAccountName": "gc"}"#)?;
//! let outputs: Vec<Artifact> = serde_json::from_str(r#"[
//!     {"name": "model", "s3": {"key": "wf/wf-main-1/model.tgz"}},
//!     {"name": "keep", "s3": {"key": "wf/wf-main-1/keep.tgz"}, "artifactGC": {"strategy": "Never"}},
//!     {"name": "logs", "s3": {"key": "wf/wf-main-1/main.log"},
//!      "artifactGC": {"strategy": "OnWorkflowDeletion"}}
//! ]"#)?;
//! let nodes = [GcNode { id: "wf-123", archive_location: None, outputs: &outputs }];
//! let planner = GcPlanner { workflow_name: "wf", workflow_gc: Some(&workflow_gc), ..Default::default() };
//!
//! let pods = planner.plan(GcStrategy::OnWorkflowCompletion, nodes)?;
//! assert_eq!(pods.len(), 1);
//! assert!(pods[0].name.starts_with("wf-artgc-wfcomp-"));
//! let task = &pods[0].tasks[0];
//! assert_eq!(task.metadata.name, format!("{}-0", pods[0].name));
//! let due: Vec<&String> = task.spec.artifacts_by_node["wf-123"].artifacts.keys().collect();
//! assert_eq!(due, ["model"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tokio::sync::{Mutex, OnceCell};

use crate::contract::parse_go_duration;
use crate::keys;
use crate::model::{
    API_GROUP, API_VERSION, Artifact, ArtifactLocation, ArtifactNodeSpec, ArtifactResult,
    GC_TASK_KIND, LABEL_ARTIFACT_GC_POD, LocationKind, PodMetadata, TaskResultMetadata,
    WorkflowArtifactGcTask, WorkflowLevelArtifactGc,
};
use crate::storage::{self, Driver, Secrets, StorageConfig, retry::Backoff};

/// Argo's error for storage kinds that cannot delete (HTTP, Artifactory, Git, raw).
pub const DELETE_NOT_SUPPORTED: &str = "delete not supported for this artifact storage, please check the following issue for details: https://github.com/argoproj/argo-workflows/issues/3102";

/// When an artifact is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GcStrategy {
    OnWorkflowCompletion,
    OnWorkflowDeletion,
    Never,
}

impl GcStrategy {
    /// The strategy a field names; `None` for the empty string (inherit).
    pub fn from_field(field: &str) -> Result<Option<Self>, GcError> {
        match field {
            "" => Ok(None),
            "OnWorkflowCompletion" => Ok(Some(Self::OnWorkflowCompletion)),
            "OnWorkflowDeletion" => Ok(Some(Self::OnWorkflowDeletion)),
            "Never" => Ok(Some(Self::Never)),
            other => Err(GcError::UnknownStrategy(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnWorkflowCompletion => "OnWorkflowCompletion",
            Self::OnWorkflowDeletion => "OnWorkflowDeletion",
            Self::Never => "Never",
        }
    }

    /// The part of GC pod names that tells the strategy (`wfcomp`, `wfdel`); none for Never.
    fn abbreviation(self) -> Option<&'static str> {
        match self {
            Self::OnWorkflowCompletion => Some("wfcomp"),
            Self::OnWorkflowDeletion => Some("wfdel"),
            Self::Never => None,
        }
    }
}

impl std::fmt::Display for GcStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why GC could not be planned or an artifact could not be handled at all.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("unknown artifact GC strategy {0:?}")]
    UnknownStrategy(String),
    /// `Never` has no GC pod.
    #[error("ArtifactGCStrategy \"{0}\" not valid")]
    NoPod(GcStrategy),
    /// The artifact has no full location and its node no archive location.
    #[error("artifact {artifact:?} of node {node:?}: template artifact location not set")]
    Relocate { node: String, artifact: String },
    /// The storage of the artifact's location cannot be opened (bad secret, bad endpoint...).
    #[error("artifact {artifact:?} of node {node:?}: {source}")]
    Driver {
        node: String,
        artifact: String,
        #[source]
        source: storage::Error,
    },
}

/// The strategy in effect for an artifact: its own, else the workflow's, else `Never`.
pub fn effective_strategy(
    workflow: Option<&WorkflowLevelArtifactGc>,
    artifact: &Artifact,
) -> Result<GcStrategy, GcError> {
    let own = GcStrategy::from_field(
        artifact
            .artifact_gc
            .as_ref()
            .map_or("", |g| g.strategy.as_str()),
    )?;
    let inherited =
        GcStrategy::from_field(workflow.map_or("", |w| w.artifact_gc.strategy.as_str()))?;
    Ok(own.or(inherited).unwrap_or(GcStrategy::Never))
}

/// The strategies a workflow event makes due and that were not processed yet: completion (or
/// a deletion before completion) makes `OnWorkflowCompletion` due, deletion makes
/// `OnWorkflowDeletion` due.
pub fn strategies_due(
    completed: bool,
    being_deleted: bool,
    processed: &[GcStrategy],
) -> Vec<GcStrategy> {
    let mut due = Vec::new();
    if completed || being_deleted {
        due.push(GcStrategy::OnWorkflowCompletion);
    }
    if being_deleted {
        due.push(GcStrategy::OnWorkflowDeletion);
    }
    due.retain(|s| !processed.contains(s));
    due
}

/// What makes two GC pods different: the service account and the pod's labels and annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GcPodIdentity {
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl GcPodIdentity {
    /// The workflow's settings, overridden key by key by the artifact's own `artifactGC`.
    pub fn of(workflow: Option<&WorkflowLevelArtifactGc>, artifact: &Artifact) -> Self {
        let mut identity = Self::default();
        let layers = workflow
            .map(|w| &w.artifact_gc)
            .into_iter()
            .chain(artifact.artifact_gc.as_ref());
        for gc in layers {
            if !gc.service_account_name.is_empty() {
                identity
                    .service_account
                    .clone_from(&gc.service_account_name);
            }
            if let Some(PodMetadata {
                labels,
                annotations,
            }) = &gc.pod_metadata
            {
                identity.labels.extend(labels.clone());
                identity.annotations.extend(annotations.clone());
            }
        }
        identity
    }

    /// Argo's hash of the identity: fnv32a over the service account, then each label's name
    /// and value, then each annotation's, in sorted order.
    pub fn hash(&self) -> u32 {
        let mut h = Fnv32a::new();
        h.write(self.service_account.as_bytes());
        for (k, v) in self.labels.iter().chain(&self.annotations) {
            h.write(k.as_bytes());
            h.write(v.as_bytes());
        }
        h.finish()
    }
}

/// 32-bit FNV-1a, the hash Go's `hash/fnv.New32a` computes.
#[derive(Debug, Clone, Copy)]
struct Fnv32a(u32);

impl Fnv32a {
    fn new() -> Self {
        Self(0x811c_9dc5)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    fn finish(self) -> u32 {
        self.0
    }
}

/// The GC pod's name: `<workflow>-artgc-<wfcomp|wfdel>-<identity hash>`.
pub fn pod_name(
    workflow_name: &str,
    strategy: GcStrategy,
    identity: &GcPodIdentity,
) -> Result<String, GcError> {
    let abbreviation = strategy.abbreviation().ok_or(GcError::NoPod(strategy))?;
    Ok(format!(
        "{workflow_name}-artgc-{abbreviation}-{}",
        identity.hash()
    ))
}

/// The value of the `workflows.argoproj.io/artifact-gc-pod` label of a GC pod's tasks, and of
/// its `ARGO_ARTIFACT_POD_NAME`: the decimal fnv32a hash of the pod's name.
pub fn pod_label(pod_name: &str) -> String {
    let mut h = Fnv32a::new();
    h.write(pod_name.as_bytes());
    h.finish().to_string()
}

/// The name of a GC pod's `index`-th task.
pub fn task_name(pod_name: &str, index: usize) -> String {
    format!("{pod_name}-{index}")
}

/// One Pod node of a workflow, as GC planning reads it.
#[derive(Debug, Clone, Copy)]
pub struct GcNode<'a> {
    /// The node id (the key of `status.nodes`).
    pub id: &'a str,
    /// The archive location of the node's template as written in the workflow; `None` or a
    /// partial location means the default repository's.
    pub archive_location: Option<&'a ArtifactLocation>,
    /// The node's output artifacts (`status.nodes[id].outputs.artifacts`).
    pub outputs: &'a [Artifact],
}

/// A GC pod to create, with its tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct GcPod {
    pub name: String,
    /// The label value selecting its tasks (and its `ARGO_ARTIFACT_POD_NAME`).
    pub label: String,
    pub strategy: GcStrategy,
    pub identity: GcPodIdentity,
    /// The workflow's `artifactGC.podSpecPatch`, to apply to the pod spec.
    pub pod_spec_patch: String,
    /// `<name>-0`, `<name>-1`, ...; owner references are the caller's to add.
    pub tasks: Vec<WorkflowArtifactGcTask>,
}

/// The controller's GC planning for one workflow.
#[derive(Debug, Clone, Copy)]
pub struct GcPlanner<'a> {
    pub workflow_name: &'a str,
    pub workflow_gc: Option<&'a WorkflowLevelArtifactGc>,
    /// The default repository's location (for nodes whose template has no full one).
    pub default_location: Option<&'a ArtifactLocation>,
    /// Artifacts per task at most. Argo puts every artifact of a pod in one task, which the
    /// API server refuses beyond its object size limit (about 1.5 MiB, some thousands of
    /// artifacts); a bound spreads them over `<pod>-0`, `<pod>-1`, ...
    pub max_artifacts_per_task: usize,
}

impl Default for GcPlanner<'_> {
    fn default() -> Self {
        Self {
            workflow_name: "",
            workflow_gc: None,
            default_location: None,
            max_artifacts_per_task: usize::MAX,
        }
    }
}

impl GcPlanner<'_> {
    /// The GC pods and tasks for `strategy`: every output artifact of the given Pod nodes whose
    /// effective strategy is `strategy` and that is not deleted yet, grouped by pod identity,
    /// then by node (each node with its archive location). Sorted by pod name.
    pub fn plan<'n>(
        &self,
        strategy: GcStrategy,
        nodes: impl IntoIterator<Item = GcNode<'n>>,
    ) -> Result<Vec<GcPod>, GcError> {
        // Each pod with the number of artifacts in its last task.
        let mut pods: BTreeMap<String, (GcPod, usize)> = BTreeMap::new();
        let per_task = self.max_artifacts_per_task.max(1);
        for node in nodes {
            let archive = node
                .archive_location
                .filter(|l| l.has_location())
                .or(self.default_location);
            for artifact in node.outputs {
                if artifact.deleted || effective_strategy(self.workflow_gc, artifact)? != strategy {
                    continue;
                }
                let identity = GcPodIdentity::of(self.workflow_gc, artifact);
                let name = pod_name(self.workflow_name, strategy, &identity)?;
                let (pod, in_last) = pods.entry(name.clone()).or_insert_with(|| {
                    let label = pod_label(&name);
                    let first = new_task(&name, &label, 0);
                    let pod = GcPod {
                        label,
                        name,
                        strategy,
                        identity,
                        pod_spec_patch: self
                            .workflow_gc
                            .map(|w| w.pod_spec_patch.clone())
                            .unwrap_or_default(),
                        tasks: vec![first],
                    };
                    (pod, 0)
                });
                if *in_last == per_task {
                    pod.tasks
                        .push(new_task(&pod.name, &pod.label, pod.tasks.len()));
                    *in_last = 0;
                }
                *in_last += 1;
                let Some(task) = pod.tasks.last_mut() else {
                    continue;
                };
                task.spec
                    .artifacts_by_node
                    .entry(node.id.to_string())
                    .or_insert_with(|| ArtifactNodeSpec {
                        archive_location: archive.cloned(),
                        artifacts: BTreeMap::new(),
                    })
                    .artifacts
                    .insert(artifact.name.clone(), artifact.clone());
            }
        }
        Ok(pods.into_values().map(|(pod, _)| pod).collect())
    }
}

fn new_task(pod: &str, label: &str, index: usize) -> WorkflowArtifactGcTask {
    WorkflowArtifactGcTask {
        api_version: format!("{API_GROUP}/{API_VERSION}"),
        kind: GC_TASK_KIND.to_string(),
        metadata: TaskResultMetadata {
            name: task_name(pod, index),
            labels: [(LABEL_ARTIFACT_GC_POD.to_string(), label.to_string())].into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Argo's retry policy for GC deletes: `RETRY_BACKOFF_STEPS` (5), `RETRY_BACKOFF_DURATION`
/// (10ms), `RETRY_BACKOFF_FACTOR` (2.0), no jitter, read through `get`. No deadline: the GC
/// pod's `ARGO_DEADLINE` is its creation time, which would forbid every retry.
pub fn delete_backoff_from_lookup(get: impl Fn(&str) -> Option<String>) -> Backoff {
    let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    Backoff {
        steps: var("RETRY_BACKOFF_STEPS")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(5),
        initial: var("RETRY_BACKOFF_DURATION")
            .and_then(|v| parse_go_duration(&v))
            .unwrap_or(Duration::from_millis(10)),
        factor: var("RETRY_BACKOFF_FACTOR")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(2.0),
        jitter: 0.0,
        cap: Duration::from_secs(60),
        deadline: None,
    }
}

/// Drivers opened so far, at most this many kept (one per bucket and credentials, normally 1).
const DRIVER_CACHE: usize = 64;

/// A driver being opened or opened, shared by every artifact of its location.
type DriverSlot = Arc<OnceCell<Arc<dyn Driver>>>;

/// Deletes artifacts; drivers are opened once per distinct location and shared.
#[derive(Debug)]
pub struct Deleter {
    secrets: Secrets,
    storage_config: StorageConfig,
    /// Objects under one prefix deleted at once (S3 keys ending in `/`, Azure directories).
    prefix_concurrency: usize,
    drivers: Mutex<HashMap<String, DriverSlot>>,
}

impl Deleter {
    /// A deleter opening drivers with `secrets` and `storage_config` (whose deadline, if any,
    /// bounds the retries: leave it unset for Argo's GC, see [`delete_backoff_from_lookup`]).
    pub fn new(secrets: Secrets, storage_config: StorageConfig) -> Self {
        Self {
            secrets,
            storage_config,
            prefix_concurrency: 8,
            drivers: Mutex::new(HashMap::new()),
        }
    }

    /// Deletes one artifact of `node`, relocated against the node's archive location.
    ///
    /// A deletion that fails is an unsuccessful [`ArtifactResult`] carrying the error's text
    /// (as Argo records it); an artifact that cannot be located, or whose storage cannot be
    /// opened, is a [`GcError`], which stops Argo's GC command.
    pub async fn delete(
        &self,
        node: &str,
        archive: Option<&ArtifactLocation>,
        artifact: &Artifact,
    ) -> Result<ArtifactResult, GcError> {
        let failed = |message: String| ArtifactResult {
            name: artifact.name.clone(),
            success: false,
            error: Some(message),
        };
        let location = match archive {
            Some(a) => artifact.relocated(Some(a)),
            None if artifact.location.has_location() => Ok(artifact.location.clone()),
            None => Err(String::new()),
        }
        .map_err(|_| GcError::Relocate {
            node: node.to_string(),
            artifact: artifact.name.clone(),
        })?;
        let kind = location.kind();
        if matches!(
            kind,
            Some(
                LocationKind::Http
                    | LocationKind::Artifactory
                    | LocationKind::Git
                    | LocationKind::Raw
            )
        ) {
            return Ok(failed(DELETE_NOT_SUPPORTED.to_string()));
        }
        let driver = match self.driver(&location).await {
            Ok(d) => d,
            // A kind this build cannot reach yet fails this artifact, not the whole pod.
            Err(e @ storage::Error::NotSupported { .. }) => return Ok(failed(e.to_string())),
            Err(source) => {
                return Err(GcError::Driver {
                    node: node.to_string(),
                    artifact: artifact.name.clone(),
                    source,
                });
            }
        };
        let key = location.key().unwrap_or_default();
        let outcome = match kind {
            Some(LocationKind::S3) if key.ends_with('/') => {
                self.delete_prefix(&driver, key.clone()).await
            }
            Some(LocationKind::Azure) => {
                let below = format!("{}/", keys::clean(&key));
                match self.delete_prefix(&driver, below).await {
                    Ok(()) => driver.delete(&key).await,
                    Err(e) => Err(e),
                }
            }
            _ => driver.delete(&key).await,
        };
        Ok(match outcome {
            Ok(()) => ArtifactResult {
                name: artifact.name.clone(),
                success: true,
                error: None,
            },
            Err(e) => {
                tracing::warn!(node, artifact = %artifact.name, key, error = %e, "artifact not deleted");
                failed(e.termination_message())
            }
        })
    }

    /// Deletes every object whose key starts with `prefix`, listing page by page.
    async fn delete_prefix(&self, driver: &Arc<dyn Driver>, prefix: String) -> storage::Result<()> {
        storage::list_all(Arc::clone(driver), prefix)
            .try_for_each_concurrent(self.prefix_concurrency, |object| {
                let driver = Arc::clone(driver);
                async move { driver.delete(&object.key).await }
            })
            .await
    }

    /// The driver for a location, opened on first use (concurrent first uses open it once).
    async fn driver(&self, location: &ArtifactLocation) -> storage::Result<Arc<dyn Driver>> {
        let mut bucket = location.clone();
        bucket.set_key(String::new());
        let identity = serde_json::to_string(&bucket).map_err(storage::Error::config)?;
        let cell = {
            let mut drivers = self.drivers.lock().await;
            if drivers.len() >= DRIVER_CACHE && !drivers.contains_key(&identity) {
                drivers.clear();
            }
            Arc::clone(drivers.entry(identity).or_default())
        };
        cell.get_or_try_init(|| storage::open(location, &self.secrets, &self.storage_config))
            .await
            .map(Arc::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ArtifactGcSpec;

    fn count(spec: &ArtifactGcSpec) -> usize {
        spec.artifacts_by_node
            .values()
            .map(|n| n.artifacts.len())
            .sum()
    }

    fn artifact(json: serde_json::Value) -> Artifact {
        serde_json::from_value(json).expect("artifact")
    }

    #[test]
    fn fnv32a_matches_go() {
        // Go: fnv.New32a() of nothing is the offset basis; known vectors of the FNV spec.
        assert_eq!(Fnv32a::new().finish(), 2_166_136_261);
        let mut h = Fnv32a::new();
        h.write(b"a");
        assert_eq!(h.finish(), 0xe40c_292c);
        let mut h = Fnv32a::new();
        h.write(b"foobar");
        assert_eq!(h.finish(), 0xbf9c_f968);
    }

    #[test]
    fn pod_names_match_argos_controller() {
        // Argo's own controller test: workflow `two-artgc-8tcvt`, service account `default`,
        // workflow-level annotations, and one artifact overriding one annotation.
        let wf: WorkflowLevelArtifactGc = serde_json::from_value(serde_json::json!({
            "strategy": "OnWorkflowCompletion",
            "serviceAccountName": "default",
            "podMetadata": {"annotations": {"annotation-key-1": "annotation-value-1",
                                            "annotation-key-2": "annotation-value-2"}},
        }))
        .expect("gc");
        let plain = artifact(serde_json::json!({"name": "a", "s3": {"key": "k"}}));
        let overriding = artifact(serde_json::json!({
            "name": "b", "s3": {"key": "k2"},
            "artifactGC": {"podMetadata": {"annotations": {"annotation-key-1": "annotation-value-3"}}},
        }));
        let name = |a: &Artifact| {
            pod_name(
                "two-artgc-8tcvt",
                GcStrategy::OnWorkflowCompletion,
                &GcPodIdentity::of(Some(&wf), a),
            )
            .expect("name")
        };
        assert_eq!(name(&plain), "two-artgc-8tcvt-artgc-wfcomp-592587874");
        assert_eq!(name(&overriding), "two-artgc-8tcvt-artgc-wfcomp-3953780960");
        assert_eq!(
            pod_name(
                "two-artgc-8tcvt",
                GcStrategy::OnWorkflowCompletion,
                &GcPodIdentity::default()
            )
            .expect("name"),
            "two-artgc-8tcvt-artgc-wfcomp-2166136261"
        );
        assert!(matches!(
            pod_name("wf", GcStrategy::Never, &GcPodIdentity::default()),
            Err(GcError::NoPod(GcStrategy::Never))
        ));
    }

    #[test]
    fn strategy_precedence_and_due_events() {
        let wf: WorkflowLevelArtifactGc =
            serde_json::from_value(serde_json::json!({"strategy": "OnWorkflowDeletion"}))
                .expect("gc");
        let own = artifact(
            serde_json::json!({"name": "a", "artifactGC": {"strategy": "OnWorkflowCompletion"}}),
        );
        let inherits = artifact(serde_json::json!({"name": "b"}));
        assert_eq!(
            effective_strategy(Some(&wf), &own).expect("ok"),
            GcStrategy::OnWorkflowCompletion
        );
        assert_eq!(
            effective_strategy(Some(&wf), &inherits).expect("ok"),
            GcStrategy::OnWorkflowDeletion
        );
        assert_eq!(
            effective_strategy(None, &inherits).expect("ok"),
            GcStrategy::Never
        );
        let bad =
            artifact(serde_json::json!({"name": "c", "artifactGC": {"strategy": "Sometimes"}}));
        assert!(matches!(
            effective_strategy(None, &bad),
            Err(GcError::UnknownStrategy(s)) if s == "Sometimes"
        ));

        use GcStrategy::*;
        assert_eq!(strategies_due(true, false, &[]), [OnWorkflowCompletion]);
        assert_eq!(
            strategies_due(false, true, &[]),
            [OnWorkflowCompletion, OnWorkflowDeletion]
        );
        assert_eq!(
            strategies_due(true, true, &[OnWorkflowCompletion]),
            [OnWorkflowDeletion]
        );
        assert!(strategies_due(false, false, &[]).is_empty());
    }

    #[test]
    fn plan_groups_by_identity_and_node_and_splits_tasks() {
        let wf: WorkflowLevelArtifactGc = serde_json::from_value(
            serde_json::json!({"strategy": "OnWorkflowCompletion", "podSpecPatch": "x"}),
        )
        .expect("gc");
        let default_loc: ArtifactLocation = serde_json::from_value(
            serde_json::json!({"s3": {"bucket": "default", "endpoint": "e", "key": "{{workflow.name}}/{{pod.name}}"}}),
        )
        .expect("loc");
        let own_loc: ArtifactLocation = serde_json::from_value(
            serde_json::json!({"s3": {"bucket": "own", "endpoint": "e", "key": "k"}}),
        )
        .expect("loc");
        let n1: Vec<Artifact> = (0..3)
            .map(|i| {
                artifact(
                    serde_json::json!({"name": format!("a{i}"), "s3": {"key": format!("n1/a{i}")}}),
                )
            })
            .chain([
                artifact(serde_json::json!({"name": "gone", "deleted": true, "s3": {"key": "x"}})),
                artifact(serde_json::json!({"name": "special", "s3": {"key": "s"},
                    "artifactGC": {"serviceAccountName": "privileged"}})),
            ])
            .collect();
        let n2 = vec![artifact(
            serde_json::json!({"name": "b", "s3": {"key": "n2/b"}}),
        )];
        let planner = GcPlanner {
            workflow_name: "wf",
            workflow_gc: Some(&wf),
            default_location: Some(&default_loc),
            max_artifacts_per_task: 2,
        };
        let pods = planner
            .plan(
                GcStrategy::OnWorkflowCompletion,
                [
                    GcNode {
                        id: "wf-1",
                        archive_location: None,
                        outputs: &n1,
                    },
                    GcNode {
                        id: "wf-2",
                        archive_location: Some(&own_loc),
                        outputs: &n2,
                    },
                ],
            )
            .expect("plan");
        assert_eq!(pods.len(), 2, "one pod per identity");
        let main = pods
            .iter()
            .find(|p| p.identity.service_account.is_empty())
            .expect("default identity");
        assert_eq!(main.pod_spec_patch, "x");
        let names: Vec<&str> = main
            .tasks
            .iter()
            .map(|t| t.metadata.name.as_str())
            .collect();
        assert_eq!(
            names,
            [format!("{}-0", main.name), format!("{}-1", main.name)]
        );
        for t in &main.tasks {
            assert_eq!(
                t.metadata.labels[LABEL_ARTIFACT_GC_POD],
                pod_label(&main.name)
            );
            assert_eq!(t.kind, "WorkflowArtifactGCTask");
        }
        assert_eq!(
            main.tasks[0].spec.artifacts_by_node["wf-1"]
                .archive_location
                .as_ref()
                .and_then(|l| l.s3.as_ref())
                .map(|s| s.bucket.as_str()),
            Some("default")
        );
        assert_eq!(
            main.tasks[1].spec.artifacts_by_node["wf-2"]
                .archive_location
                .as_ref()
                .and_then(|l| l.s3.as_ref())
                .map(|s| s.bucket.as_str()),
            Some("own")
        );
        let all: usize = main.tasks.iter().map(|t| count(&t.spec)).sum();
        assert_eq!(all, 4, "a0..a2 and b; `gone` is already deleted");
        let special = pods
            .iter()
            .find(|p| p.identity.service_account == "privileged")
            .expect("own pod");
        assert_eq!(count(&special.tasks[0].spec), 1);
    }

    #[test]
    fn gc_backoff_is_argos_and_ignores_the_deadline() {
        let b = delete_backoff_from_lookup(|_| None);
        assert_eq!(b.deadline, None);
        assert_eq!(b.jitter, 0.0);
    }
}
